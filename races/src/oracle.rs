//! The oracle: judges a replay from the facts below it: the lab's [`Truth`] (victim fates,
//! interrupts, /proc after the stop), the child's own [`ChildLog`] (the signals it reported,
//! the exit it announced) and the trace of points passed, and compares them with the design's
//! own [`DesignReport`]. It never takes the design's word for what happened, and it knows
//! nothing of how a scenario gathered the facts.

use crate::catalog::Race;
use crate::child_log::ChildLog;
use crate::design_report::{DesignReport, Reason, Status};
use crate::truth::Truth;
use crate::verdict::{Invariant, Verdict, Violation};
use racelab_hooks::{EventKind, RunReport, Trace, UnmetReason};
use racelab_sandbox::Fate;

/// A SIGKILL was sent: the escalation passed the point right before its kill call. (The point
/// after the call may never be recorded: once the child dies the design can return and exit
/// before that thread runs again.) A sweep (`sweep.*`: the leftovers of the tree killed after
/// the child's own end) is not a kill of the child and does not count.
fn kill_was_sent(trace: &Trace) -> bool {
    trace.events.iter().any(|e| {
        e.kind == EventKind::Pass
            && (e.subject.starts_with("escalation.before_kill")
                || e.subject.starts_with("escalation.kill_sent"))
    })
}

fn is_stop_signal(s: i32) -> bool {
    [libc_sig::SIGINT, libc_sig::SIGTERM, libc_sig::SIGHUP].contains(&s)
}

mod libc_sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

/// The verdict for one replay.
pub fn judge(
    race: &Race,
    needs_warning: bool,
    truth: &Truth,
    w: &ChildLog,
    report: Option<&DesignReport>,
    hooks: Option<&RunReport>,
    trace: &Trace,
) -> Verdict {
    if !truth.lab_errors.is_empty() {
        return Verdict::LabError { message: truth.lab_errors.join("; ") };
    }
    let mut v = Vec::new();
    let mut add = |invariant: Invariant, evidence: String| {
        if race.invariants.contains(&invariant) {
            v.push(Violation { invariant, evidence });
        }
    };
    // I1: a victim that took a recycled PID must not be signalled.
    for (pid, fate) in &truth.victims {
        if let Some(Fate::Killed { signal }) = fate {
            add(
                Invariant::I1NoStraySignal,
                format!(
                    "the victim that took PID {pid} after the child was reaped was killed by signal {signal}"
                ),
            );
        }
    }
    // I2: a SIGKILL sent means the report says so (and the warning is printed), and vice versa.
    if let Some(r) = report {
        let killed = truth.sigkill_seen.unwrap_or_else(|| kill_was_sent(trace));
        let says_forced = matches!(r.reason, Reason::ForcedKill | Reason::Unkillable);
        if killed && !says_forced {
            add(
                Invariant::I2TrueStopReason,
                format!(
                    "SIGKILL was sent ({}) but the design reports {:?}",
                    if truth.sigkill_seen.is_some() {
                        "seen at its kill syscall"
                    } else {
                        "escalation.kill_sent passed"
                    },
                    r.reason
                ),
            );
        } else if killed && needs_warning && r.warnings.is_empty() {
            add(Invariant::I2TrueStopReason, "SIGKILL was sent but no warning was printed".into());
        } else if !killed
            && r.reason == Reason::ForcedKill
            && race.invariants.contains(&Invariant::I2TrueStopReason)
        {
            add(
                Invariant::I2TrueStopReason,
                "the design reports a forced kill that never happened".into(),
            );
        } else if !killed && !says_forced && killed_unasked(truth, w) {
            add(
                Invariant::I2TrueStopReason,
                format!(
                    "the child was SIGKILLed while its parent lived, and nothing decided it (it \
                     died with no exit of its own and no catchable signal; no stop was requested \
                     and no escalation ran); the design reports {:?} with status {:?}",
                    r.reason, r.status
                ),
            );
        }
    }
    // I3: an interrupt that reached the supervisor while the child lived reaches the child.
    // The child's own log is the evidence, and it starts with its `ready` line: a child that
    // never said ready may have died of the forwarded signal before it could log it (a
    // supervisor that forwards an interrupt from spawn on kills it mid-exec). Exploration
    // found the reference "violating" I3 that way; it is unobservable, not a violation.
    let mut unobservable = None;
    // A black-box program's forward is seen at its kill syscall: that is the evidence then.
    let forwarded_at_syscall = |at: u64| truth.stop_signals_sent.iter().any(|&t| t >= at);
    if let Some(&(at, true)) = truth.interrupts.first()
        && w.ready_line.is_none()
        && race.invariants.contains(&Invariant::I3InterruptDelivered)
        && !forwarded_at_syscall(at)
    {
        unobservable = Some(
            "the child never said ready, so whether the interrupt reached it cannot be observed (it may have died of it before its signal log started)".to_string(),
        );
    } else if let Some(&(at, true)) = truth.interrupts.first()
        // A child that ended by itself (the lab's `exit`) before it saw a stop signal was not
        // left untold by the design: I3 asks that a live child be told, not that the design
        // beat the child's own exit (exploration found the lab holding the design inside an
        // action until the child had exited, which no design can beat).
        && w.exiting.is_none()
        && !(w.ready_line.is_none() && forwarded_at_syscall(at))
    {
        let got = w.signals.iter().any(|&(t, s)| t >= at && is_stop_signal(s));
        if !got {
            add(
                Invariant::I3InterruptDelivered,
                format!(
                    "SIGINT reached the supervisor while the child lived; the child never saw SIGINT/SIGTERM/SIGHUP (it saw {:?})",
                    w.signals.iter().map(|(_, s)| *s).collect::<Vec<_>>()
                ),
            );
        }
    }
    // I3 for signals forwarded one by one: each reaches the child as itself.
    let lost: Vec<String> = truth
        .forwarded
        .iter()
        .filter(|&&(at, sig)| !w.signals.iter().any(|&(t, s)| t >= at && s == sig))
        .map(|&(_, sig)| racelab_hooks::syscall_point::signal_name(sig).unwrap_or("?").to_string())
        .collect();
    if !lost.is_empty() {
        add(
            Invariant::I3InterruptDelivered,
            format!(
                "the child never saw {} sent to the supervisor (it saw {:?})",
                lost.join(", "),
                w.signals.iter().map(|(_, s)| *s).collect::<Vec<_>>()
            ),
        );
    }
    // I4: bounded stop.
    if let Some(over) = truth.overran_bound {
        let after = if truth.bound_from_child_end { "the child ended" } else { "the stop request" };
        add(
            Invariant::I4BoundedStop,
            format!(
                "still running {} ms after {after} (bound {} ms)",
                over / 1_000_000,
                race.setup.bound.as_millis()
            ),
        );
    }
    // I5: nothing of the child's tree is left once the supervisor returned or died.
    if !truth.survivors.is_empty() {
        let list: Vec<String> =
            truth.survivors.iter().map(|(p, s, n)| format!("{p} ({n}, state {s})")).collect();
        let lock = if truth.lock_held { "; the lock is still held" } else { "" };
        add(
            Invariant::I5NoSurvivors,
            format!("survivors after the supervisor ended: {}{lock}", list.join(", ")),
        );
    } else if truth.lock_held {
        add(Invariant::I5NoSurvivors, "the lock is still held after the stop".into());
    }
    // I6: no zombies whose parent is the supervisor.
    match &truth.zombies {
        Some(Ok(n)) if *n > 0 => add(
            Invariant::I6NoZombies,
            format!("{n} zombies whose parent is the supervisor remain at quiescence"),
        ),
        Some(Err(e)) => return Verdict::LabError { message: e.clone() },
        _ => {}
    }
    // I7: the reported status is the child's real one.
    if let (Some(code), Some(r)) = (w.exiting, report)
        && r.status != Some(Status::Code(code))
    {
        add(
            Invariant::I7TrueExitStatus,
            format!("the child exited with {code}; the design reports {:?}", r.status),
        );
    }

    let not_forced = schedule_problem(hooks);
    if !v.is_empty() {
        return match not_forced {
            Some(why) => {
                Verdict::NotForced { why: format!("{why} (violations seen anyway: {v:?})") }
            }
            None => Verdict::Reproduced { violations: v },
        };
    }
    if let Some(why) = not_forced.or(unobservable) {
        return Verdict::NotForced { why };
    }
    if truth.hung {
        return Verdict::NotForced {
            why: "the design never finished and no invariant broke".into(),
        };
    }
    if report.is_none()
        && !truth.outer_killed
        && !truth.design_killed
        && truth.overran_bound.is_none()
    {
        return Verdict::LabError {
            message: format!("the design sent no report (it ended {:?})", truth.design_exit),
        };
    }
    Verdict::Prevented
}

/// Ground truth that the child was SIGKILLed with nobody asking (P2): it is dead, it never
/// announced an exit of its own and saw no catchable stop signal (the workload reports both
/// before it ends), no stop was requested, and the design's process was not killed.
fn killed_unasked(truth: &Truth, w: &ChildLog) -> bool {
    w.pid.is_some()
        && !w.alive()
        && w.exiting.is_none()
        && !w.signals.iter().any(|&(_, s)| is_stop_signal(s))
        && truth.interrupts.is_empty()
        && !truth.outer_killed
        && !truth.design_killed
}

/// A schedule that was not realised: a stuck wait, a failed action.
fn schedule_problem(hooks: Option<&RunReport>) -> Option<String> {
    let h = hooks?;
    if let Some(stuck) = &h.stuck {
        return Some(format!("stuck: {stuck}"));
    }
    if let Some(e) = h.action_errors.first() {
        return Some(format!("action {} at {} failed: {}", e.action, e.at, e.message));
    }
    if let Some(e) = h.unmet_edges.iter().find(|e| e.reason == UnmetReason::Abandoned) {
        return Some(format!("edge {} abandoned", e.edge));
    }
    None
}
