use std::time::{Duration, Instant};

use racelab_hooks::{EventKind, HookError, StuckReason, UnmetReason, point, points};

use crate::{arm_plain, exclusive, spawn, tid};

#[test]
fn a_step_never_reached_gives_a_stuck_report_naming_the_parked_thread() {
    let _g = exclusive();
    let deadline = Duration::from_millis(200);
    let armed = arm_plain(
        "escalation.pid_loaded < main.reaped; main.spawned < escalation.before_kill",
        deadline,
    );
    let started = Instant::now();
    let worker = spawn(|| {
        point!(main.reaped); // waits for escalation.pid_loaded, which nobody reaches
        let stuck_after = Instant::now();
        point!(escalation.before_kill); // the schedule is abandoned: passes at once
        (tid(), stuck_after)
    });
    let (worker_tid, stuck_after) = worker.join_within(Duration::from_secs(10));
    assert!(stuck_after - started >= deadline, "released before the deadline");
    let report = armed.finish();
    let stuck = report.stuck.clone().expect("a stuck report");
    assert_eq!(
        stuck.reason,
        StuckReason::Deadline { deadline_ms: 200, tid: worker_tid, point: "main.reaped".into() }
    );
    assert_eq!(stuck.parked.len(), 1, "{stuck}");
    assert_eq!(stuck.parked[0].tid, worker_tid);
    assert_eq!(stuck.parked[0].actor, "main");
    assert_eq!(stuck.parked[0].waiting_for, ["escalation.pid_loaded < main.reaped"]);
    assert_eq!(
        stuck.unmet_edges,
        ["escalation.pid_loaded < main.reaped", "main.spawned < escalation.before_kill"]
    );
    let text = stuck.to_string();
    assert!(
        text.contains(&format!(
            "tid {worker_tid} (main) at main.reaped waiting for: escalation.pid_loaded < main.reaped"
        )),
        "{text}"
    );
    assert!(stuck.trace.events.iter().any(|e| e.kind == EventKind::Stuck), "{text}");
    assert!(!stuck.trace.events.iter().any(|e| e.subject == "escalation.before_kill"), "{text}");
    let abandoned: Vec<&str> = report
        .trace
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Abandoned)
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(abandoned, ["main.reaped", "escalation.before_kill"], "{report}");
    assert!(!report.is_clean());
    assert!(report.unmet_edges.iter().all(|e| e.reason == UnmetReason::Abandoned), "{report}");
}

#[test]
fn finishing_while_a_thread_is_parked_releases_it_and_reports_stuck() {
    let _g = exclusive();
    let armed = arm_plain("escalation.pid_loaded < main.reaped", Duration::from_secs(30));
    let worker = spawn(|| {
        point!(main.reaped);
        tid()
    });
    assert!(armed.wait_parked(&points::main::reaped, Duration::from_secs(10)), "never parked");
    let report = armed.finish();
    let worker_tid = worker.join_within(Duration::from_secs(10));
    let stuck = report.stuck.expect("stuck report");
    assert_eq!(stuck.reason, StuckReason::FinishedWhileParked);
    assert_eq!(stuck.parked.iter().map(|p| p.tid).collect::<Vec<_>>(), [worker_tid]);
}

#[test]
fn an_edge_whose_later_point_is_never_reached_is_unmet_but_not_stuck() {
    let _g = exclusive();
    let armed = arm_plain("main.spawned < main.reaped", Duration::from_secs(5));
    point!(main.spawned);
    let report = armed.finish();
    assert!(report.stuck.is_none(), "{report}");
    assert_eq!(report.unmet_edges.len(), 1);
    assert_eq!(report.unmet_edges[0].reason, UnmetReason::AfterNeverReached { before_passes: 1 });
}

#[test]
fn arming_twice_is_an_error_and_finish_allows_arming_again() {
    let _g = exclusive();
    let armed = arm_plain("", Duration::from_secs(1));
    let second = racelab_hooks::arm(
        racelab_hooks::Schedule::new(),
        std::sync::Arc::new(racelab_hooks::NoActions),
        racelab_hooks::ArmOptions::default(),
    );
    assert_eq!(second.unwrap_err(), HookError::AlreadyArmed);
    drop(armed); // dropping disarms too
    arm_plain("", Duration::from_secs(1)).finish();
}

#[test]
fn an_unarmed_point_records_nothing_and_passes() {
    let _g = exclusive();
    point!(main.spawned);
    let armed = arm_plain("", Duration::from_secs(1));
    point!(main.spawned);
    point!(main.spawned);
    let report = armed.finish();
    point!(main.spawned);
    let subjects: Vec<String> =
        report.trace.events.iter().map(|e| format!("{:?} {}", e.kind, e.subject)).collect();
    assert_eq!(
        subjects,
        [
            "Arrive main.spawned",
            "Pass main.spawned",
            "Arrive main.spawned#2",
            "Pass main.spawned#2"
        ]
    );
}
