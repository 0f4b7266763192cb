use std::time::Duration;

use racelab_hooks::{EventKind, UnmetReason, bind_thread, point};

use crate::{arm_plain, exclusive, spawn};

#[test]
fn an_edge_within_one_bound_thread_is_unrealizable_and_passes_without_waiting() {
    let _g = exclusive();
    // A deadline far beyond the join timeout: a wait here would fail the test, not time out.
    let armed = arm_plain("escalation.pid_loaded < main.reaped", Duration::from_secs(60));
    spawn(|| {
        bind_thread(&["main", "escalation"]);
        point!(main.reaped); // would wait for escalation.pid_loaded: played by this thread
        point!(escalation.pid_loaded);
        bind_thread(&[]);
    })
    .join_within(Duration::from_secs(10));
    let report = armed.finish();
    assert!(report.stuck.is_none(), "{report}");
    assert_eq!(report.unmet_edges.len(), 1);
    assert_eq!(report.unmet_edges[0].reason, UnmetReason::Unrealizable);
    let unrealizable = report.trace.events.iter().find(|e| e.kind == EventKind::Unrealizable);
    assert_eq!(
        unrealizable.map(|e| e.detail.as_str()),
        Some("escalation.pid_loaded < main.reaped")
    );
    assert!(!report.trace.events.iter().any(|e| e.kind == EventKind::Park), "{report}");
}

#[test]
fn an_actor_bound_to_another_thread_is_still_waited_for() {
    let _g = exclusive();
    let armed = arm_plain("escalation.pid_loaded < main.reaped", Duration::from_secs(5));
    let main = spawn(|| {
        bind_thread(&["main"]);
        point!(main.reaped);
        bind_thread(&[]);
    });
    assert!(armed.wait_parked(&racelab_hooks::points::main::reaped, Duration::from_secs(5)));
    spawn(|| {
        bind_thread(&["escalation"]);
        point!(escalation.pid_loaded);
        bind_thread(&[]);
    })
    .join_within(Duration::from_secs(10));
    main.join_within(Duration::from_secs(10));
    let report = armed.finish();
    assert!(report.is_clean(), "{report}");
    assert!(report.trace.events.iter().any(|e| e.kind == EventKind::Release), "{report}");
}
