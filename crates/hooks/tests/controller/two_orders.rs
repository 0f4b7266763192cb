use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use racelab_hooks::{EventKind, point};

use crate::{arm_plain, exclusive, spawn};

/// The racy pair: the escalation writes FORCE_KILLED, main reads it to classify the stop (Q3).
static FORCE_KILLED: AtomicBool = AtomicBool::new(false);

/// Forces "write, then read": the reader starts only after the writer passed its store.
const WRITE_THEN_READ: &str = "escalation.kill_sent < main.reaped";
/// Forces "read, then write": the writer stores only after the reader classified.
const READ_THEN_WRITE: &str = "main.classified < escalation.before_force_flag";

/// Runs the race once under `schedule`; returns what the reader saw and the report.
fn race_once(schedule: &str) -> (bool, racelab_hooks::RunReport) {
    FORCE_KILLED.store(false, Relaxed);
    let armed = arm_plain(schedule, Duration::from_secs(5));
    let writer = spawn(|| {
        point!(escalation.before_force_flag);
        FORCE_KILLED.store(true, Relaxed);
        point!(escalation.kill_sent);
    });
    let reader = spawn(|| {
        point!(main.reaped);
        let seen = FORCE_KILLED.load(Relaxed);
        point!(main.classified);
        seen
    });
    let seen = reader.join_within(Duration::from_secs(10));
    writer.join_within(Duration::from_secs(10));
    (seen, armed.finish())
}

fn force(schedule: &str, expect_seen: bool) {
    let _g = exclusive();
    for i in 0..1000 {
        let (seen, report) = race_once(schedule);
        assert!(report.is_clean(), "iteration {i}: {report}");
        assert_eq!(seen, expect_seen, "iteration {i} under `{schedule}`:\n{report}");
    }
}

#[test]
fn write_then_read_is_forced_1000_of_1000_times() {
    force(WRITE_THEN_READ, true);
}

#[test]
fn read_then_write_is_forced_1000_of_1000_times() {
    force(READ_THEN_WRITE, false);
}

#[test]
fn the_trace_shows_the_forced_order_and_renders_as_mermaid() {
    let _g = exclusive();
    let (_, report) = race_once(WRITE_THEN_READ);
    let passes = report.trace.subjects(EventKind::Pass);
    let pos = |s: &str| {
        passes.iter().position(|p| *p == s).unwrap_or_else(|| panic!("{s} in {passes:?}"))
    };
    assert!(pos("escalation.kill_sent") < pos("main.reaped"), "{passes:?}");
    let mermaid = report.trace.to_mermaid();
    assert!(
        mermaid.contains("participant escalation") && mermaid.contains("participant main"),
        "{mermaid}"
    );
    // The reader either parked and was released (an arrow), or arrived after the write.
    let parked = report.trace.events.iter().any(|e| e.kind == EventKind::Park);
    assert_eq!(
        parked,
        mermaid.contains("escalation->>main: escalation.kill_sent < main.reaped"),
        "{mermaid}"
    );
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<racelab_hooks::RunReport>(&json).unwrap(), report);
}
