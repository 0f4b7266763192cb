//! A loom model of the controller's own synchronisation: the epoch/waiters futex protocol, the
//! pass counts that carry happens-before from one point to the next, abandonment and the
//! drain in `disarm`. `sync.rs` swaps in loom's atomics, a yielding "futex" and a clock that
//! never moves (deadlines never pass, so stuck runs are triggered by calling `go_stuck`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p racelab-hooks --features hooks --release --lib loom`
//!
//! The model is not vacuous: moving the `epoch` read in `State::wait_edges` after the edge
//! check (the classic lost wake-up) makes `loom_an_edge_...` fail with "deadlock". (A
//! `should_panic` test of that is not kept: loom aborts while unwinding out of a deadlock.)

use loom::sync::Arc;
use loom::thread;

use crate::points;
use crate::ring::pack;
use crate::state::{
    Caps, Compiled, EDGE_ABANDONED, EDGE_MET, STUCK_AT_FINISH, STUCK_DEADLINE, State,
};
use crate::sync::{AtomicU32, Ordering::Relaxed};

const A: usize = points::escalation::kill_sent.index as usize;
const B: usize = points::main::reaped.index as usize;

/// A small state; `trace` records kept (0 skips recording, which keeps big models fast).
fn armed(edges: Vec<((usize, u32), (usize, u32))>, trace: usize) -> Arc<State> {
    let st = State::new(Caps { edges: 2, slots: 2, trace });
    st.arm(&Compiled {
        edges,
        action_points: Vec::new(),
        deadline_ns: u64::MAX,
        trace_capacity: trace,
    })
    .expect("nothing in flight");
    Arc::new(st)
}

/// What `point!` does, with an explicit tid (loom threads share one OS thread).
fn hit(st: &State, point: usize, tid: u32) {
    if st.enter() {
        let occurrence = st.arrive(point, tid);
        st.pass(point, occurrence, tid);
        st.leave();
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

#[test]
fn loom_an_edge_makes_writes_before_the_earlier_point_visible_after_the_later() {
    model(|| {
        let st = armed(vec![((A, 1), (B, 1))], 2);
        let data = Arc::new(AtomicU32::new(0));
        let writer = {
            let (st, data) = (Arc::clone(&st), Arc::clone(&data));
            thread::spawn(move || {
                data.store(1, Relaxed);
                hit(&st, A, 1);
            })
        };
        hit(&st, B, 2);
        // Relaxed on purpose: only the controller's own ordering may make this visible.
        assert_eq!(data.load(Relaxed), 1);
        writer.join().unwrap();
        let snap = st.disarm(u64::MAX);
        assert_eq!(snap.edge_state, [EDGE_MET]);
        assert_eq!(snap.still_inside, 0);
        assert!(snap.stuck.is_none());
    });
}

#[test]
fn loom_the_second_occurrence_waits_for_the_second_pass() {
    model(|| {
        let st = armed(vec![((A, 2), (B, 1))], 0);
        let data = Arc::new(AtomicU32::new(0));
        let writer = {
            let (st, data) = (Arc::clone(&st), Arc::clone(&data));
            thread::spawn(move || {
                hit(&st, A, 1);
                data.store(1, Relaxed);
                hit(&st, A, 1);
            })
        };
        hit(&st, B, 2);
        assert_eq!(data.load(Relaxed), 1);
        writer.join().unwrap();
        st.disarm(u64::MAX);
    });
}

#[test]
fn loom_disarm_releases_a_parked_thread_and_waits_for_it_to_leave() {
    model(|| {
        let st = armed(vec![((A, 1), (B, 1))], 0);
        let waiter = {
            let st = Arc::clone(&st);
            thread::spawn(move || hit(&st, B, 2))
        };
        let snap = st.disarm(u64::MAX);
        // Whatever the interleaving, nobody is left inside and the edge was never enforced.
        assert_eq!(snap.still_inside, 0);
        assert_ne!(snap.edge_state, [EDGE_MET]);
        if let Some(stuck) = &snap.stuck {
            assert_eq!(stuck.reason, STUCK_AT_FINISH);
        }
        waiter.join().unwrap();
    });
}

#[test]
fn loom_abandoning_the_schedule_wakes_a_parked_thread() {
    model(|| {
        let st = armed(vec![((A, 1), (B, 1))], 0);
        let waiter = {
            let st = Arc::clone(&st);
            thread::spawn(move || hit(&st, B, 2))
        };
        // What a thread whose deadline passed does.
        st.go_stuck(STUCK_DEADLINE, 3, pack(B, 1));
        waiter.join().unwrap();
        let snap = st.disarm(u64::MAX);
        assert_eq!(snap.edge_state, [EDGE_ABANDONED]);
        assert_eq!(snap.stuck.map(|s| s.reason), Some(STUCK_DEADLINE));
    });
}
