//! The armed controller's public face: [`arm`], [`Armed`], [`bind_thread`], [`note`] and the
//! `hit` that `point!` expands to. The atomics live in `state.rs`; this file owns the things
//! that may allocate or lock (schedule, actions, notes), which the hit path touches only at
//! points that carry actions.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use crate::collect;
use crate::error::HookError;
use crate::points::{self, Point};
use crate::report::{ActionError, RunReport};
pub use crate::run::{ArmOptions, MAX_PARKED, MAX_TRACE};
use crate::run::{Plan, Run};
use crate::schedule::{Action, Actions, At, Edge, Schedule};
use crate::state::{Caps, Compiled, State};
use crate::sync::{current_tid, now_ns};
use crate::trace::{Event, EventKind};

static STATE: OnceLock<State> = OnceLock::new();
static ARMED: AtomicBool = AtomicBool::new(false);
static RUN: Mutex<Option<Run>> = Mutex::new(None);

fn state() -> &'static State {
    STATE.get_or_init(|| {
        State::new(Caps { edges: crate::MAX_EDGES, slots: MAX_PARKED, trace: MAX_TRACE })
    })
}

fn run_lock() -> MutexGuard<'static, Option<Run>> {
    // A panicking action must not wedge every later run: the data is still consistent.
    RUN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Called by `point!`. Unarmed: one `OnceLock` check and one atomic load.
#[doc(hidden)]
#[inline]
pub fn hit(point: &'static Point) {
    if let Some(st) = STATE.get()
        && st.enter()
    {
        hit_armed(st, point);
    }
}

struct Inside<'a>(&'a State);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[inline(never)]
fn hit_armed(st: &State, point: &'static Point) {
    // Leave the hit path even if an action panics, so `finish` does not wait for us in vain.
    let _inside = Inside(st);
    let tid = current_tid();
    let i = usize::from(point.index);
    let occurrence = st.arrive(i, tid);
    if st.has_actions(i) {
        if st.is_armed() {
            run_actions(st, point, occurrence, tid);
        } else {
            st.skip_actions(i, occurrence, tid);
        }
    }
    st.pass(i, occurrence, tid);
}

/// Runs the actions attached to this occurrence, in schedule order. Not async-signal-safe
/// (locks, allocates, runs caller code): only points that carry actions get here.
fn run_actions(st: &State, point: &'static Point, occurrence: u32, tid: u32) {
    let Some(plan) = run_lock().as_ref().map(|r| Arc::clone(&r.plan)) else { return };
    let i = usize::from(point.index);
    for (k, (at, action)) in plan.actions.iter().enumerate() {
        if at.hook_index() != usize::from(point.index) || at.occurrence != occurrence {
            continue;
        }
        st.record(EventKind::Action, i, occurrence, tid, k as u64);
        if let Err(message) = plan.runner.run(action, point) {
            st.record(EventKind::ActionFailed, i, occurrence, tid, k as u64);
            let error =
                ActionError { at: at.to_string(), action: action.to_string(), tid, message };
            if let Some(run) = run_lock().as_mut() {
                run.errors.push((k, error));
            }
        }
    }
}

/// Arms the controller with `schedule`: from now on, threads reaching points obey it.
///
/// One controller per process: a second `arm` before [`Armed::finish`] is
/// [`HookError::AlreadyArmed`]. Everything the hit path needs is allocated here.
pub fn arm(
    schedule: Schedule,
    actions: Arc<dyn Actions>,
    options: ArmOptions,
) -> Result<Armed, HookError> {
    schedule.validate()?;
    if let Some(p) = schedule.points().find(|p| p.hook().is_none()) {
        return Err(HookError::SyscallPointInHookSchedule { point: p.to_string() });
    }
    if options.trace_capacity > MAX_TRACE {
        return Err(HookError::Capacity {
            what: "trace capacity",
            requested: options.trace_capacity,
            max: MAX_TRACE,
        });
    }
    if ARMED
        .compare_exchange(
            false,
            true,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        )
        .is_err()
    {
        return Err(HookError::AlreadyArmed);
    }
    let st = state();
    let edges: Vec<Edge> = schedule.edges().copied().collect();
    let acts: Vec<(At, Action)> = schedule.actions().map(|(at, a)| (*at, a.clone())).collect();
    let at = |a: &At| (a.hook_index(), a.occurrence);
    let compiled = Compiled {
        edges: edges.iter().map(|e| (at(&e.before), at(&e.after))).collect(),
        action_points: acts.iter().map(|(a, _)| a.hook_index()).collect(),
        deadline_ns: u64::try_from(options.deadline.as_nanos()).unwrap_or(u64::MAX),
        trace_capacity: options.trace_capacity,
    };
    let plan = Arc::new(Plan { schedule, edges, actions: acts, runner: actions });
    // The plan is in place before the state says ARMED, so an action point always finds it.
    *run_lock() = Some(Run { plan, options, errors: Vec::new(), notes: Vec::new() });
    if let Err(inflight) = st.arm(&compiled) {
        *run_lock() = None;
        ARMED.store(false, std::sync::atomic::Ordering::Release);
        return Err(HookError::Busy { inflight });
    }
    Ok(Armed { finished: false })
}

/// The armed controller. [`Armed::finish`] disarms and reports; dropping it disarms too
/// (discarding the report), so a panicking test never leaves a controller armed.
#[derive(Debug)]
pub struct Armed {
    finished: bool,
}

impl Armed {
    /// Waits until some thread is parked at `point`, at most `timeout`. For a lab (or a test)
    /// that must act while a thread sits in a window. Returns false on timeout.
    pub fn wait_parked(&self, point: &'static Point, timeout: Duration) -> bool {
        state().wait_until(nanos(timeout), |s| s.parked_at(usize::from(point.index)))
    }

    /// Waits until `at` has been passed (`at.occurrence` passes), at most `timeout`.
    pub fn wait_passed(&self, at: impl Into<At>, timeout: Duration) -> bool {
        let at = at.into();
        state().wait_until(nanos(timeout), |s| s.passes(at.hook_index()) >= at.occurrence)
    }

    /// Disarms (releasing any parked thread) and reports the run. Threads still parked now make
    /// the run stuck ([`crate::StuckReason::FinishedWhileParked`]).
    pub fn finish(mut self) -> RunReport {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> RunReport {
        self.finished = true;
        let drain = run_lock().as_ref().map_or(Duration::from_secs(1), |r| r.options.deadline);
        let snap = state().disarm(nanos(drain));
        // Taken after the drain: a thread still running an action may record its error.
        let run = run_lock().take();
        ARMED.store(false, std::sync::atomic::Ordering::Release);
        match run {
            Some(run) => collect::report(&run, snap),
            None => RunReport::default(),
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish_inner();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Declares that the calling thread plays exactly these actors (and none it played before;
/// `bind_thread(&[])` unbinds it). An edge `a < b` whose `a` actor is bound to the thread that
/// reaches `b` cannot be enforced (the thread would wait for itself): it passes at once and the
/// trace says "unrealizable". The last thread to bind an actor wins. Bindings survive arming.
pub fn bind_thread(actors: &[&'static str]) {
    debug_assert!(
        actors.iter().all(|a| points::ALL.iter().any(|p| p.actor() == *a)),
        "bind_thread: unknown actor in {actors:?}"
    );
    state().bind(current_tid(), actors);
}

/// Adds a lab event to the trace of the armed run (a no-op when nothing is armed). Not for
/// the hit path: it locks and allocates.
pub fn note(actor: &str, detail: String) {
    if let Some(run) = run_lock().as_mut() {
        run.notes.push(Event {
            time_ns: now_ns(),
            pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
            tid: current_tid(),
            actor: actor.to_string(),
            kind: EventKind::Note,
            subject: "note".to_string(),
            detail,
            peer: None,
        });
    }
}
