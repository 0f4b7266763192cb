//! Loom runs: each old-protocol race must be found, the reference protocol must pass every
//! scenario exhaustively.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p racelab-models --release`
//! (add `-- --nocapture --test-threads=1` to see the executions and times).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::{Invariant, Outcome, Scenario, check, old, reference};

/// Loom's bound on preemptions per execution; `LOOM_MAX_PREEMPTIONS` overrides it.
const PREEMPTION_BOUND: Option<usize> = None;

/// What one loom run did.
struct Exploration {
    executions: usize,
    elapsed: Duration,
    /// The panic message of the first failing execution.
    failure: Option<String>,
}

fn explore(
    protocol: (&'static str, fn(&Scenario) -> Outcome),
    scenario: Scenario,
    which: &'static [Invariant],
) -> Exploration {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = PREEMPTION_BOUND;
    }
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    let run = protocol.1;
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        builder.check(move || {
            counter.fetch_add(1, Relaxed);
            if let Err(violation) = check(&run(&scenario), which) {
                panic!("{violation}");
            }
        })
    }));
    let e = Exploration {
        executions: executions.load(Relaxed),
        elapsed: start.elapsed(),
        failure: result.err().map(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string())
        }),
    };
    println!(
        "loom: {} protocol, scenario {}: {} executions in {:.2?}, {}",
        protocol.0,
        scenario.name,
        e.executions,
        e.elapsed,
        match &e.failure {
            Some(msg) => msg.lines().next().unwrap_or_default(),
            None => "no violation",
        }
    );
    e
}

const OLD: (&str, fn(&Scenario) -> Outcome) = ("old", old::run);
const REFERENCE: (&str, fn(&Scenario) -> Outcome) = ("reference", reference::run);

/// Loom must have found `inv` and the message must say `what`.
fn assert_found(e: &Exploration, inv: Invariant, what: &str) {
    let msg = e.failure.as_deref().unwrap_or_else(|| {
        panic!("loom explored {} executions and did not find {}", e.executions, inv.name())
    });
    assert!(
        msg.starts_with(&format!("{} violated", inv.name())) && msg.contains(what),
        "loom found something other than {} ({what}):\n{msg}",
        inv.name()
    );
}

fn assert_passes(scenario: Scenario) {
    let e = explore(REFERENCE, scenario, Invariant::ALL);
    assert!(e.failure.is_none(), "{}", e.failure.unwrap_or_default());
}

#[test]
fn loom_old_protocol_sigkills_a_recycled_pid_q1() {
    let e = explore(OLD, Scenario::ESCALATION_AND_FORK, &[Invariant::Q1]);
    assert_found(&e, Invariant::Q1, "sent SIGKILL to pid");
}

#[test]
fn loom_old_protocol_reports_duration_after_sending_sigkill_q3() {
    let e = explore(OLD, Scenario::ESCALATION, &[Invariant::Q3]);
    assert_found(&e, Invariant::Q3, "reported stop reason is Duration");
}

#[test]
fn loom_old_protocol_sigkills_a_child_whose_interrupt_came_during_spawn_q4() {
    let e = explore(OLD, Scenario::INTERRUPT, &[Invariant::Q4]);
    assert_found(&e, Invariant::Q4, "SIGKILLed without one");
}

#[test]
fn loom_old_protocol_without_kill_timeout_waits_forever_after_an_interrupt_during_spawn_q4() {
    let e = explore(OLD, Scenario::INTERRUPT_NO_KILL_TIMEOUT, &[Invariant::Q4]);
    assert_found(&e, Invariant::Q4, "waits for it forever");
}

#[test]
fn loom_reference_protocol_never_signals_a_recycled_pid() {
    assert_passes(Scenario::ESCALATION_AND_FORK);
}

#[test]
fn loom_reference_protocol_reports_every_sigkill_it_sends() {
    assert_passes(Scenario::ESCALATION);
}

#[test]
fn loom_reference_protocol_forwards_an_interrupt_that_came_during_spawn() {
    assert_passes(Scenario::INTERRUPT);
}

#[test]
fn loom_reference_protocol_without_kill_timeout_stops_after_an_interrupt_during_spawn() {
    assert_passes(Scenario::INTERRUPT_NO_KILL_TIMEOUT);
}

#[test]
fn loom_reference_protocol_escalates_safely_while_the_child_exits_on_its_own() {
    assert_passes(Scenario::LATE_CHILD_ESCALATION);
}

#[test]
fn loom_reference_protocol_forwards_interrupts_while_the_child_exits_on_its_own() {
    assert_passes(Scenario::LATE_CHILD_INTERRUPT);
}

#[test]
fn loom_reference_protocol_keeps_every_invariant_with_everything_at_once() {
    assert_passes(Scenario::EVERYTHING_LATE_CHILD);
}
