//! Loom runs: each race of the old protocol must be found, and the reference protocol must
//! pass every scenario, at the same bounds.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p racelab-models --release`
//! (add `-- --nocapture --test-threads=1` to see executions, times and the interleavings).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::record::{Actor, Event, Global, Role, Signal, Trace};
use crate::{Invariant, Outcome, Scenario, Violation, check, old, reference};

/// Loom's bound on preemptions per execution where a protocol runs at most four threads:
/// none, the exploration is exhaustive. `LOOM_MAX_PREEMPTIONS` overrides every bound.
const EXHAUSTIVE: Option<usize> = None;

/// The bound where the reference protocol runs five threads: exhaustive would take minutes.
const FIVE_THREADS: Option<usize> = Some(3);

/// How a loom run ended.
enum Failure {
    /// An execution broke the verdict.
    Violation(Box<Violation>),
    /// Something else panicked (a model error, loom itself).
    Panic(String),
}

/// What one loom run did.
struct Exploration {
    executions: usize,
    elapsed: Duration,
    failure: Option<Failure>,
}

type Protocol = (&'static str, fn(&Scenario) -> Outcome);
const OLD: Protocol = ("old", old::run);
const REFERENCE: Protocol = ("reference", reference::run);

/// Decides one execution: `Err` stops loom there.
type Verdict = fn(&Outcome) -> Result<(), Violation>;

/// Runs loom on `protocol` in `scenario`, stopping at the first execution the verdict
/// rejects, and reports what it did.
fn explore(
    protocol: Protocol,
    scenario: Scenario,
    bound: Option<usize>,
    verdict: Verdict,
) -> Exploration {
    quiet_violations();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = bound;
    }
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    let run = protocol.1;
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        builder.check(move || {
            counter.fetch_add(1, Relaxed);
            if let Err(violation) = verdict(&run(&scenario)) {
                std::panic::panic_any(violation);
            }
        })
    }));
    let failure = result.err().map(|payload| match payload.downcast::<Violation>() {
        Ok(v) => Failure::Violation(v),
        Err(other) => Failure::Panic(
            other
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| other.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string()),
        ),
    });
    let e = Exploration { executions: executions.load(Relaxed), elapsed: start.elapsed(), failure };
    println!(
        "loom: {} protocol, scenario {} ({} threads), preemption bound {}: {} executions in \
         {:.2?}: {}",
        protocol.0,
        scenario.name,
        scenario.threads(protocol.0 == "reference"),
        builder.preemption_bound.map_or("none".to_string(), |b| b.to_string()),
        e.executions,
        e.elapsed,
        match &e.failure {
            None => "no violation\n".to_string(),
            Some(Failure::Violation(v)) => v.to_string(),
            Some(Failure::Panic(msg)) => format!("panic: {msg}\n"),
        }
    );
    e
}

/// A violation is the expected end of an old-protocol run and `explore` prints it: keep the
/// panic hook from printing "Box<dyn Any>" and a backtrace for it. Other panics print.
fn quiet_violations() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Violation>() {
                default(info);
            }
        }));
    });
}

/// Loom must have stopped on a violation of `inv`; returns it.
fn found(e: Exploration, inv: Invariant) -> Box<Violation> {
    match e.failure {
        Some(Failure::Violation(v)) if v.invariant == inv => v,
        Some(Failure::Violation(v)) => {
            panic!("loom found {} instead of {}:\n{v}", v.invariant.name(), inv.name())
        }
        Some(Failure::Panic(msg)) => panic!("the model panicked: {msg}"),
        None => panic!("loom explored {} executions and did not find {}", e.executions, inv.name()),
    }
}

fn passes(e: Exploration) {
    match e.failure {
        None => {}
        Some(Failure::Violation(v)) => panic!("{v}"),
        Some(Failure::Panic(msg)) => panic!("the model panicked: {msg}"),
    }
}

fn every_invariant(o: &Outcome) -> Result<(), Violation> {
    check(o, Invariant::ALL)
}

/// Q1 as the seed tells it: the SIGKILL (not a stray SIGTERM, also possible) hits the innocent.
fn innocent_sigkilled(o: &Outcome) -> Result<(), Violation> {
    let hit = o
        .processes
        .iter()
        .any(|p| p.role == Role::Innocent && p.received.iter().any(|r| r.signal == Signal::Kill));
    if hit { check(o, &[Invariant::Q1]) } else { Ok(()) }
}

/// Q4 as the seed tells it: the handler read `CHILD_PID == 0` before main stored the PID.
fn handler_read_pid_before_main_stored_it(trace: &Trace) -> bool {
    let at = |actor: Actor, event: &dyn Fn(&Event) -> bool| {
        trace.0.iter().position(|(a, e)| *a == actor && event(e))
    };
    let read_zero = at(Actor::Handler, &|e| *e == Event::Load(Global::ChildPid, 0));
    let stored = at(Actor::Main, &|e| matches!(e, Event::Store(Global::ChildPid, p) if *p != 0));
    matches!((read_zero, stored), (Some(read), Some(stored)) if read < stored)
}

#[test]
fn loom_old_protocol_sigkills_a_recycled_pid_q1() {
    let e = explore(OLD, Scenario::ESCALATION_AND_FORK, FIVE_THREADS, innocent_sigkilled);
    assert!(found(e, Invariant::Q1).detail.contains("thread sent SIGKILL to pid"));
}

#[test]
fn loom_old_protocol_reports_duration_after_sending_sigkill_q3() {
    let e = explore(OLD, Scenario::ESCALATION, EXHAUSTIVE, |o| check(o, &[Invariant::Q3]));
    assert!(found(e, Invariant::Q3).detail.contains("reported stop reason is Duration"));
}

#[test]
fn loom_old_protocol_sigkills_a_child_whose_interrupt_came_during_spawn_q4() {
    let e = explore(OLD, Scenario::INTERRUPT, EXHAUSTIVE, |o| check(o, &[Invariant::Q4]));
    let v = found(e, Invariant::Q4);
    assert!(v.detail.contains("SIGKILLed without ever getting SIGTERM"), "{v}");
    assert!(handler_read_pid_before_main_stored_it(&v.trace), "{v}");
}

#[test]
fn loom_old_protocol_without_kill_timeout_waits_forever_after_an_interrupt_during_spawn_q4() {
    let s = Scenario::INTERRUPT_NO_KILL_TIMEOUT;
    let e = explore(OLD, s, EXHAUSTIVE, |o| check(o, &[Invariant::Q4]));
    let v = found(e, Invariant::Q4);
    assert!(v.detail.contains("waits for it forever"), "{v}");
    assert!(handler_read_pid_before_main_stored_it(&v.trace), "{v}");
}

#[test]
fn loom_old_protocol_breaks_an_invariant_with_everything_at_once() {
    let e = explore(OLD, Scenario::EVERYTHING, FIVE_THREADS, every_invariant);
    match e.failure {
        Some(Failure::Violation(v)) => {
            assert!(matches!(v.invariant, Invariant::Q3 | Invariant::Q4), "{v}")
        }
        Some(Failure::Panic(msg)) => panic!("the model panicked: {msg}"),
        None => panic!("loom explored {} executions and found nothing", e.executions),
    }
}

#[test]
fn loom_reference_protocol_never_signals_a_recycled_pid() {
    passes(explore(REFERENCE, Scenario::ESCALATION_AND_FORK, FIVE_THREADS, every_invariant));
}

#[test]
fn loom_reference_protocol_reports_every_sigkill_it_sends() {
    passes(explore(REFERENCE, Scenario::ESCALATION, EXHAUSTIVE, every_invariant));
}

#[test]
fn loom_reference_protocol_forwards_an_interrupt_that_came_during_spawn() {
    passes(explore(REFERENCE, Scenario::INTERRUPT, EXHAUSTIVE, every_invariant));
}

#[test]
fn loom_reference_protocol_without_kill_timeout_stops_after_an_interrupt_during_spawn() {
    passes(explore(REFERENCE, Scenario::INTERRUPT_NO_KILL_TIMEOUT, EXHAUSTIVE, every_invariant));
}

#[test]
fn loom_reference_protocol_forwards_interrupts_while_the_child_exits_on_its_own() {
    passes(explore(REFERENCE, Scenario::LATE_CHILD_INTERRUPT, EXHAUSTIVE, every_invariant));
}

#[test]
fn loom_reference_protocol_keeps_every_invariant_with_everything_at_once() {
    passes(explore(REFERENCE, Scenario::EVERYTHING, FIVE_THREADS, every_invariant));
}
