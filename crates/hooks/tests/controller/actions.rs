use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use racelab_hooks::{Action, EventKind, NoActions, Point, note, point, points};

use crate::{arm_plain, arm_text, exclusive, spawn};

static ESCALATION_PASSED: AtomicBool = AtomicBool::new(false);

#[test]
fn actions_run_in_order_before_the_point_counts_as_passed() {
    let _g = exclusive();
    ESCALATION_PASSED.store(false, SeqCst);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&log);
    let actions = move |action: &Action, at: &'static Point| -> Result<(), String> {
        let waiting = !ESCALATION_PASSED.load(SeqCst);
        seen.lock()
            .unwrap()
            .push(format!("{action} at {} (escalation waiting: {waiting})", at.name));
        Ok(())
    };
    let armed = arm_text(
        "on main.reaped: first(1), second(child, 10ms); main.reaped < escalation.before_kill",
        Arc::new(actions),
        Duration::from_secs(5),
    );
    let escalation = spawn(|| {
        point!(escalation.before_kill);
        ESCALATION_PASSED.store(true, SeqCst);
    });
    assert!(armed.wait_parked(&points::escalation::before_kill, Duration::from_secs(5)));
    point!(main.reaped);
    escalation.join_within(Duration::from_secs(10));
    let report = armed.finish();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        *log.lock().unwrap(),
        [
            "first(1) at main.reaped (escalation waiting: true)",
            "second(child, 10ms) at main.reaped (escalation waiting: true)"
        ]
    );
    let actions: Vec<&str> = report
        .trace
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Action)
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(actions, ["first(1)", "second(child, 10ms)"]);
}

#[test]
fn a_failing_action_is_reported_and_does_not_panic() {
    let _g = exclusive();
    let armed =
        arm_text("on main.spawned#2: recycle(child)", Arc::new(NoActions), Duration::from_secs(5));
    point!(main.spawned); // the first occurrence carries no action
    point!(main.spawned);
    let report = armed.finish();
    assert_eq!(report.action_errors.len(), 1, "{report}");
    let e = &report.action_errors[0];
    assert_eq!((e.at.as_str(), e.action.as_str()), ("main.spawned#2", "recycle(child)"));
    assert!(e.message.contains("unknown action `recycle`"), "{}", e.message);
    assert!(!report.is_clean());
    let failed =
        report.trace.events.iter().find(|ev| ev.kind == EventKind::ActionFailed).expect("recorded");
    assert!(failed.detail.contains("unknown action"), "{failed:?}");
}

#[test]
fn notes_join_the_trace_in_time_order() {
    let _g = exclusive();
    let armed = arm_plain("", Duration::from_secs(5));
    note("lab", "recycled pid 42".into());
    point!(main.spawned);
    let report = armed.finish();
    note("lab", "after finish: dropped".into());
    let kinds: Vec<(EventKind, &str)> =
        report.trace.events.iter().map(|e| (e.kind, e.actor.as_str())).collect();
    assert_eq!(
        kinds,
        [(EventKind::Note, "lab"), (EventKind::Arrive, "main"), (EventKind::Pass, "main")]
    );
    assert!(report.trace.to_mermaid().contains("Note over lab: recycled pid 42"));
}
