//! The controller's core: every piece of state the hit path touches, as atomics allocated once
//! (at the first arm) and reset at each arm. Nothing here allocates, locks or formats after
//! construction, so [`State::enter`], [`State::arrive`] and [`State::pass`] are
//! async-signal-safe. Strings, schedules and reports live in `controller.rs`, off the hit path;
//! the trace records go to the ring of `ring.rs`.
//!
//! Parking protocol: a waiting thread reads the `epoch` word, re-checks its edges, then sleeps on
//! `epoch` with a futex; every pass bumps `epoch` after bumping the pass count and wakes sleepers
//! when `waiters` says there are any. `waiters`/`epoch` use SeqCst on both sides (a Dekker pair):
//! either the passer sees the waiter counted and wakes it, or the waiter sees the new epoch.

use crate::points;
use crate::ring::{Raw, Ring, pack, unpack};
use crate::sync::{AtomicU32, AtomicU64, Ordering::*, futex_wait, futex_wake_all, now_ns, zeroed};
use crate::trace::EventKind;

/// Nothing armed: points return after one load.
pub(crate) const IDLE: u32 = 0;
/// A schedule is enforced.
pub(crate) const ARMED: u32 = 1;
/// The run got stuck: every point passes at once and records that the schedule was abandoned.
pub(crate) const ABANDONED: u32 = 2;

const HAS_IN_EDGES: u32 = 1;
const HAS_ACTIONS: u32 = 2;

/// Edge states, written by the thread that reaches the edge's later point.
pub(crate) const EDGE_PENDING: u32 = 0;
pub(crate) const EDGE_MET: u32 = 1;
pub(crate) const EDGE_UNREALIZABLE: u32 = 2;
pub(crate) const EDGE_ABANDONED: u32 = 3;

/// Why the run got stuck (0 = it did not).
pub(crate) const STUCK_DEADLINE: u32 = 1;
pub(crate) const STUCK_AT_FINISH: u32 = 2;

/// Sizes fixed at construction.
pub(crate) struct Caps {
    pub edges: usize,
    pub slots: usize,
    pub trace: usize,
}

/// What `arm` installs: edges as (point index, occurrence) pairs, the points with actions.
pub(crate) struct Compiled {
    pub edges: Vec<((usize, u32), (usize, u32))>,
    pub action_points: Vec<usize>,
    pub deadline_ns: u64,
    pub trace_capacity: usize,
}

/// The stuck snapshot, taken by the thread that detected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StuckSnap {
    pub reason: u32,
    pub at_ns: u64,
    pub tid: u32,
    pub point: usize,
    pub occurrence: u32,
    pub unmet_mask: u64,
    pub parked: Vec<(u32, usize, u32)>,
    pub unlisted: u32,
}

/// Everything `disarm` hands back to build the report.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub records: Vec<Raw>,
    pub dropped: u64,
    pub edge_state: Vec<u32>,
    pub arrivals: Vec<u32>,
    pub passes: Vec<u32>,
    pub stuck: Option<StuckSnap>,
    pub still_inside: u32,
}

fn u32s(n: usize) -> Box<[AtomicU32]> {
    zeroed(n)
}

fn u64s(n: usize) -> Box<[AtomicU64]> {
    zeroed(n)
}

fn bits(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |b| mask & (1u64 << b) != 0)
}

/// The controller's atomics.
pub(crate) struct State {
    mode: AtomicU32,
    /// Futex word: bumped on every pass and every mode change.
    epoch: AtomicU32,
    /// Threads sleeping (or about to) on `epoch`.
    waiters: AtomicU32,
    /// Threads inside the hit path; futex word for `disarm`'s drain.
    inflight: AtomicU32,
    deadline_ns: AtomicU64,
    arrivals: Box<[AtomicU32]>,
    passes: Box<[AtomicU32]>,
    flags: Box<[AtomicU32]>,
    /// Per point: the tid bound to its actor (0 = none). Survives arming.
    bound: Box<[AtomicU32]>,
    n_edges: AtomicU32,
    edge_before: Box<[AtomicU64]>,
    edge_after: Box<[AtomicU64]>,
    edge_state: Box<[AtomicU32]>,
    slot_tid: Box<[AtomicU32]>,
    /// `pack(point, occurrence)`, 0 while the slot is being claimed or released.
    slot_at: Box<[AtomicU64]>,
    unslotted: AtomicU32,
    stuck_reason: AtomicU32,
    stuck_ns: AtomicU64,
    stuck_tid: AtomicU32,
    stuck_at: AtomicU64,
    stuck_unmet: AtomicU64,
    stuck_slot_tid: Box<[AtomicU32]>,
    stuck_slot_at: Box<[AtomicU64]>,
    stuck_unslotted: AtomicU32,
    ring: Ring,
}

impl State {
    /// Allocates everything; `caps.edges` is at most 64 (edge sets are `u64` masks).
    pub(crate) fn new(caps: Caps) -> State {
        assert!(caps.edges <= 64, "edge masks are u64");
        let n = points::ALL.len();
        State {
            mode: AtomicU32::new(IDLE),
            epoch: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            inflight: AtomicU32::new(0),
            deadline_ns: AtomicU64::new(0),
            arrivals: u32s(n),
            passes: u32s(n),
            flags: u32s(n),
            bound: u32s(n),
            n_edges: AtomicU32::new(0),
            edge_before: u64s(caps.edges),
            edge_after: u64s(caps.edges),
            edge_state: u32s(caps.edges),
            slot_tid: u32s(caps.slots),
            slot_at: u64s(caps.slots),
            unslotted: AtomicU32::new(0),
            stuck_reason: AtomicU32::new(0),
            stuck_ns: AtomicU64::new(0),
            stuck_tid: AtomicU32::new(0),
            stuck_at: AtomicU64::new(0),
            stuck_unmet: AtomicU64::new(0),
            stuck_slot_tid: u32s(caps.slots),
            stuck_slot_at: u64s(caps.slots),
            stuck_unslotted: AtomicU32::new(0),
            ring: Ring::new(caps.trace),
        }
    }

    /// Declares that thread `tid` plays exactly `actors` (and no other actor it played before).
    pub(crate) fn bind(&self, tid: u32, actors: &[&str]) {
        for (i, p) in points::ALL.iter().enumerate() {
            if actors.contains(&p.actor()) {
                self.bound[i].store(tid, Relaxed);
            } else if self.bound[i].load(Relaxed) == tid {
                self.bound[i].store(0, Relaxed);
            }
        }
    }

    /// Installs a schedule and arms. Fails with the number of threads still inside a point of
    /// the previous run, which would corrupt this one.
    pub(crate) fn arm(&self, c: &Compiled) -> Result<(), u32> {
        let inside = self.inflight.load(SeqCst);
        if inside != 0 {
            return Err(inside);
        }
        for a in self.arrivals.iter().chain(&*self.passes).chain(&*self.flags) {
            a.store(0, Relaxed);
        }
        for (e, &(before, after)) in c.edges.iter().enumerate() {
            self.edge_before[e].store(pack(before.0, before.1), Relaxed);
            self.edge_after[e].store(pack(after.0, after.1), Relaxed);
            self.flags[after.0].fetch_or(HAS_IN_EDGES, Relaxed);
        }
        for s in self.edge_state.iter().chain(&*self.slot_tid).chain(&*self.stuck_slot_tid) {
            s.store(0, Relaxed);
        }
        for s in self.slot_at.iter().chain(&*self.stuck_slot_at) {
            s.store(0, Relaxed);
        }
        for &i in &c.action_points {
            self.flags[i].fetch_or(HAS_ACTIONS, Relaxed);
        }
        self.n_edges.store(c.edges.len() as u32, Relaxed);
        self.unslotted.store(0, Relaxed);
        self.stuck_reason.store(0, Relaxed);
        self.stuck_unslotted.store(0, Relaxed);
        self.deadline_ns.store(c.deadline_ns, Relaxed);
        self.ring.reset(c.trace_capacity);
        // SeqCst publishes every store above to any thread whose `enter` sees ARMED.
        self.mode.store(ARMED, SeqCst);
        Ok(())
    }

    /// The unarmed fast path (one load), then registration as a thread inside the hit path.
    #[inline]
    pub(crate) fn enter(&self) -> bool {
        if self.mode.load(Acquire) == IDLE {
            return false;
        }
        self.inflight.fetch_add(1, SeqCst);
        // Re-check after counting ourselves: `disarm` stores IDLE then waits for `inflight` to
        // drain (both SeqCst), so either it waits for us or we see IDLE and leave.
        if self.mode.load(SeqCst) == IDLE {
            self.leave();
            return false;
        }
        true
    }

    /// Leaves the hit path; the last thread out wakes a draining `disarm`.
    pub(crate) fn leave(&self) {
        if self.inflight.fetch_sub(1, SeqCst) == 1 && self.mode.load(SeqCst) == IDLE {
            futex_wake_all(&self.inflight);
        }
    }

    /// Is the schedule still enforced (not idle, not abandoned)?
    pub(crate) fn is_armed(&self) -> bool {
        self.mode.load(Acquire) == ARMED
    }

    /// Does this point carry actions in the armed schedule?
    pub(crate) fn has_actions(&self, point: usize) -> bool {
        self.flags[point].load(Relaxed) & HAS_ACTIONS != 0
    }

    /// Records the arrival, then waits until every edge into this occurrence is met (or the
    /// edge is unrealizable, or the schedule is abandoned). Returns the occurrence number.
    pub(crate) fn arrive(&self, point: usize, tid: u32) -> u32 {
        let occurrence = self.arrivals[point].fetch_add(1, AcqRel).wrapping_add(1);
        self.record(EventKind::Arrive, point, occurrence, tid, 0);
        if self.flags[point].load(Relaxed) & HAS_IN_EDGES != 0 {
            self.wait_edges(point, occurrence, tid);
        }
        occurrence
    }

    /// Is edge `e` met (its earlier occurrence passed)? Returns the edge's earlier point too.
    fn edge_met(&self, e: usize) -> (bool, usize) {
        let (before, occurrence) = unpack(self.edge_before[e].load(Relaxed));
        // Acquire pairs with the Release increment in `pass`: what the earlier thread did
        // before its point is visible to us after ours.
        (self.passes[before].load(Acquire) >= occurrence, before)
    }

    fn wait_edges(&self, point: usize, occurrence: u32, tid: u32) {
        let me = pack(point, occurrence);
        let mut pending = 0u64;
        for e in 0..self.n_edges.load(Relaxed) as usize {
            if self.edge_after[e].load(Relaxed) != me {
                continue;
            }
            let (met, before) = self.edge_met(e);
            if met {
                self.edge_state[e].store(EDGE_MET, Relaxed);
            } else if self.bound[before].load(Relaxed) == tid {
                // The earlier point's actor is played by this very thread: waiting would wait
                // for ourselves. Deterministically let it pass and say so.
                self.edge_state[e].store(EDGE_UNREALIZABLE, Relaxed);
                self.record(EventKind::Unrealizable, point, occurrence, tid, e as u64);
            } else {
                pending |= 1 << e;
            }
        }
        if pending == 0 {
            return;
        }
        if self.mode.load(SeqCst) != ARMED {
            self.abandon(point, occurrence, tid, pending);
            return;
        }
        let slot = self.claim_slot(tid, me);
        for e in bits(pending) {
            self.record(EventKind::Park, point, occurrence, tid, e as u64);
        }
        self.waiters.fetch_add(1, SeqCst);
        self.bump(); // observers (`wait_until`) learn that a thread parked
        let deadline = now_ns().saturating_add(self.deadline_ns.load(Relaxed));
        loop {
            let seen = self.epoch.load(SeqCst);
            for e in bits(pending) {
                if self.edge_met(e).0 {
                    pending &= !(1 << e);
                    self.edge_state[e].store(EDGE_MET, Relaxed);
                    self.record(EventKind::Release, point, occurrence, tid, e as u64);
                }
            }
            if pending == 0 || self.mode.load(SeqCst) != ARMED {
                break;
            }
            let now = now_ns();
            if now >= deadline {
                self.go_stuck(STUCK_DEADLINE, tid, me);
                break;
            }
            futex_wait(&self.epoch, seen, deadline - now);
        }
        self.waiters.fetch_sub(1, SeqCst);
        if let Some(s) = slot {
            self.slot_at[s].store(0, Relaxed);
            self.slot_tid[s].store(0, Release);
        }
        if pending != 0 {
            self.abandon(point, occurrence, tid, pending);
        }
    }

    /// The schedule was abandoned: these edges pass unenforced.
    fn abandon(&self, point: usize, occurrence: u32, tid: u32, pending: u64) {
        for e in bits(pending) {
            self.edge_state[e].store(EDGE_ABANDONED, Relaxed);
        }
        self.record(EventKind::Abandoned, point, occurrence, tid, pending);
    }

    fn claim_slot(&self, tid: u32, at: u64) -> Option<usize> {
        for (s, slot) in self.slot_tid.iter().enumerate() {
            if slot.compare_exchange(0, tid, AcqRel, Relaxed).is_ok() {
                self.slot_at[s].store(at, Release);
                return Some(s);
            }
        }
        self.unslotted.fetch_add(1, Relaxed);
        None
    }

    /// Abandons the schedule (first caller wins), snapshots who is parked where and which edges
    /// are unmet, and wakes everyone.
    pub(crate) fn go_stuck(&self, reason: u32, tid: u32, at: u64) {
        if self.mode.compare_exchange(ARMED, ABANDONED, SeqCst, SeqCst).is_err() {
            return;
        }
        if reason == STUCK_DEADLINE {
            let (point, occurrence) = unpack(at);
            self.record(EventKind::Stuck, point, occurrence, tid, self.deadline_ns.load(Relaxed));
        }
        // Read after the Stuck record, so "the trace up to now" includes it.
        self.stuck_ns.store(now_ns(), Relaxed);
        self.stuck_tid.store(tid, Relaxed);
        self.stuck_at.store(at, Relaxed);
        let mut unmet = 0u64;
        for e in 0..self.n_edges.load(Relaxed) as usize {
            if self.edge_state[e].load(Relaxed) == EDGE_PENDING && !self.edge_met(e).0 {
                unmet |= 1 << e;
            }
        }
        self.stuck_unmet.store(unmet, Relaxed);
        for s in 0..self.slot_tid.len() {
            let t = self.slot_tid[s].load(Acquire);
            let a = self.slot_at[s].load(Acquire);
            if t != 0 && a != 0 {
                self.stuck_slot_tid[s].store(t, Relaxed);
                self.stuck_slot_at[s].store(a, Relaxed);
            }
        }
        self.stuck_unslotted.store(self.unslotted.load(Relaxed), Relaxed);
        self.stuck_reason.store(reason, Release);
        self.bump();
    }

    /// Counts the pass and wakes whoever waits for it.
    pub(crate) fn pass(&self, point: usize, occurrence: u32, tid: u32) {
        // Recorded before the count moves, so a released thread's records come later.
        self.record(EventKind::Pass, point, occurrence, tid, 0);
        self.passes[point].fetch_add(1, Release);
        self.bump();
    }

    /// Records that this point passed without its actions because the schedule was abandoned.
    pub(crate) fn skip_actions(&self, point: usize, occurrence: u32, tid: u32) {
        self.record(EventKind::Abandoned, point, occurrence, tid, 0);
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            futex_wake_all(&self.epoch);
        }
    }

    /// Appends a record to the trace ring (see [`Ring::record`]).
    pub(crate) fn record(
        &self,
        kind: EventKind,
        point: usize,
        occurrence: u32,
        tid: u32,
        extra: u64,
    ) {
        self.ring.record(kind, point, occurrence, tid, extra);
    }

    /// Waits (not on the hit path) until `cond` holds or `timeout_ns` passes.
    pub(crate) fn wait_until(&self, timeout_ns: u64, cond: impl Fn(&State) -> bool) -> bool {
        self.waiters.fetch_add(1, SeqCst);
        let deadline = now_ns().saturating_add(timeout_ns);
        let ok = loop {
            let seen = self.epoch.load(SeqCst);
            if cond(self) {
                break true;
            }
            let now = now_ns();
            if now >= deadline {
                break false;
            }
            futex_wait(&self.epoch, seen, deadline - now);
        };
        self.waiters.fetch_sub(1, SeqCst);
        ok
    }

    /// Is some thread parked at this point?
    pub(crate) fn parked_at(&self, point: usize) -> bool {
        (0..self.slot_tid.len()).any(|s| {
            let at = self.slot_at[s].load(Acquire);
            self.slot_tid[s].load(Acquire) != 0 && at != 0 && unpack(at).0 == point
        })
    }

    /// How many times this point was passed in this run.
    pub(crate) fn passes(&self, point: usize) -> u32 {
        self.passes[point].load(Acquire)
    }

    /// Disarms: a run with parked threads is stuck (snapshot first), then every thread is
    /// released, the hit path drains (at most `drain_ns`), and the state is read out.
    pub(crate) fn disarm(&self, drain_ns: u64) -> Snapshot {
        let parked = (0..self.slot_tid.len()).any(|s| self.slot_tid[s].load(Acquire) != 0);
        if parked {
            self.go_stuck(STUCK_AT_FINISH, 0, 0);
        }
        self.mode.store(IDLE, SeqCst);
        self.bump();
        let deadline = now_ns().saturating_add(drain_ns);
        let still_inside = loop {
            let inside = self.inflight.load(SeqCst);
            let now = now_ns();
            if inside == 0 || now >= deadline {
                break inside;
            }
            futex_wait(&self.inflight, inside, deadline - now);
        };
        self.snapshot(still_inside)
    }

    fn snapshot(&self, still_inside: u32) -> Snapshot {
        let (records, dropped) = self.ring.read();
        let n_edges = self.n_edges.load(Relaxed) as usize;
        let load = |v: &[AtomicU32]| v.iter().map(|a| a.load(Acquire)).collect::<Vec<u32>>();
        let stuck = match self.stuck_reason.load(Acquire) {
            0 => None,
            reason => {
                let (point, occurrence) = unpack(self.stuck_at.load(Relaxed));
                let parked = (0..self.stuck_slot_tid.len())
                    .filter_map(|s| {
                        let tid = self.stuck_slot_tid[s].load(Relaxed);
                        let (p, o) = unpack(self.stuck_slot_at[s].load(Relaxed));
                        (tid != 0).then_some((tid, p, o))
                    })
                    .collect();
                Some(StuckSnap {
                    reason,
                    at_ns: self.stuck_ns.load(Relaxed),
                    tid: self.stuck_tid.load(Relaxed),
                    point,
                    occurrence,
                    unmet_mask: self.stuck_unmet.load(Relaxed),
                    parked,
                    unlisted: self.stuck_unslotted.load(Relaxed),
                })
            }
        };
        Snapshot {
            records,
            dropped,
            edge_state: load(&self.edge_state[..n_edges]),
            arrivals: load(&self.arrivals),
            passes: load(&self.passes),
            stuck,
            still_inside,
        }
    }
}
