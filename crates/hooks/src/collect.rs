//! Turns the state's raw snapshot into a [`RunReport`]: names instead of indices, edges as
//! schedule text, the stuck snapshot as a [`StuckReport`]. Runs in `finish`, off the hit path.

use crate::points;
use crate::report::{ParkedThread, RunReport, StuckReason, StuckReport, UnmetEdge, UnmetReason};
use crate::ring::Raw;
use crate::run::Run;
use crate::schedule::At;
use crate::state::{
    EDGE_ABANDONED, EDGE_MET, EDGE_UNREALIZABLE, STUCK_DEADLINE, Snapshot, StuckSnap,
};
use crate::trace::{Event, EventKind, Trace};

fn at_text(point: usize, occurrence: u32) -> String {
    At::nth(points::ALL[point], occurrence).to_string()
}

fn mask_edges(run: &Run, mask: u64) -> impl Iterator<Item = (usize, &crate::schedule::Edge)> {
    run.plan.edges.iter().enumerate().filter(move |(e, _)| *e < 64 && mask & (1 << e) != 0)
}

fn event(run: &Run, pid: u32, r: &Raw) -> Event {
    let p = points::ALL[r.point];
    let edge = run.plan.edges.get(r.extra as usize);
    let action = run.plan.actions.get(r.extra as usize);
    let at = at_text(r.point, r.occurrence);
    let (subject, detail, peer) = match r.kind {
        EventKind::Park | EventKind::Release | EventKind::Unrealizable => {
            let detail = edge.map_or_else(String::new, |e| e.to_string());
            (at, detail, edge.map(|e| e.before.point.actor().to_string()))
        }
        EventKind::Action => (action.map_or_else(String::new, |(_, a)| a.to_string()), at, None),
        EventKind::ActionFailed => {
            let subject = action.map_or_else(String::new, |(_, a)| a.to_string());
            let message = run
                .errors
                .iter()
                .find(|(k, e)| *k == r.extra as usize && e.tid == r.tid)
                .map_or_else(String::new, |(_, e)| e.message.clone());
            (subject, format!("at {at}: {message}"), None)
        }
        EventKind::Abandoned => {
            let detail = if r.extra == 0 {
                "schedule abandoned: actions skipped".to_string()
            } else {
                let edges: Vec<String> =
                    mask_edges(run, r.extra).map(|(_, e)| e.to_string()).collect();
                format!("schedule abandoned: not enforced {}", edges.join(", "))
            };
            (at, detail, None)
        }
        EventKind::Stuck => (at, format!("deadline of {} ms passed", r.extra / 1_000_000), None),
        EventKind::Arrive | EventKind::Pass | EventKind::Note => (at, String::new(), None),
    };
    Event {
        time_ns: r.time_ns,
        pid,
        tid: r.tid,
        actor: p.actor().to_string(),
        kind: r.kind,
        subject,
        detail,
        peer,
    }
}

fn stuck_report(run: &Run, s: &StuckSnap, trace: &Trace) -> StuckReport {
    let reason = if s.reason == STUCK_DEADLINE {
        StuckReason::Deadline {
            deadline_ms: u64::try_from(run.options.deadline.as_millis()).unwrap_or(u64::MAX),
            tid: s.tid,
            point: at_text(s.point, s.occurrence),
        }
    } else {
        StuckReason::FinishedWhileParked
    };
    let parked = s
        .parked
        .iter()
        .map(|&(tid, point, occurrence)| ParkedThread {
            tid,
            actor: points::ALL[point].actor().to_string(),
            point: at_text(point, occurrence),
            waiting_for: mask_edges(run, s.unmet_mask)
                .filter(|(_, e)| e.after.hook_index() == point && e.after.occurrence == occurrence)
                .map(|(_, e)| e.to_string())
                .collect(),
        })
        .collect();
    StuckReport {
        reason,
        at_ns: s.at_ns,
        parked,
        parked_unlisted: s.unlisted,
        unmet_edges: mask_edges(run, s.unmet_mask).map(|(_, e)| e.to_string()).collect(),
        schedule: run.plan.schedule.to_string(),
        trace: trace.until(s.at_ns),
    }
}

/// Builds the report of a finished run.
pub(crate) fn report(run: &Run, snap: Snapshot) -> RunReport {
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let mut events: Vec<Event> = snap.records.iter().map(|r| event(run, pid, r)).collect();
    events.extend(run.notes.iter().cloned());
    let mut trace = Trace { events, dropped: snap.dropped };
    trace.sort();
    let mut unmet_edges = Vec::new();
    for (e, edge) in run.plan.edges.iter().enumerate() {
        let reason = match snap.edge_state.get(e).copied().unwrap_or(0) {
            EDGE_MET => continue,
            EDGE_UNREALIZABLE => UnmetReason::Unrealizable,
            EDGE_ABANDONED => UnmetReason::Abandoned,
            _ if snap.arrivals.get(edge.after.hook_index()).copied().unwrap_or(0)
                < edge.after.occurrence =>
            {
                UnmetReason::AfterNeverReached {
                    before_passes: snap.passes.get(edge.before.hook_index()).copied().unwrap_or(0),
                }
            }
            _ => UnmetReason::Abandoned,
        };
        unmet_edges.push(UnmetEdge { edge: edge.to_string(), reason });
    }
    let stuck = snap.stuck.as_ref().map(|s| stuck_report(run, s, &trace));
    let action_errors = run.errors.iter().map(|(_, e)| e.clone()).collect();
    RunReport { trace, stuck, unmet_edges, action_errors, still_inside: snap.still_inside }
}
