//! The invariants, checked on what a run left behind ([`Outcome`]): the oracle's ground truth
//! (what the kernel saw), never the protocol's own word.

use std::fmt;

use crate::StopReason;
use crate::record::{Death, Delivery, Outcome, ProcState, Role, Signal, Trace};

/// An invariant a run must keep. Each is named by the race of piano issue #620 that breaks it
/// (see `shared/RACES.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// No signal from the supervisor reaches a process other than the child (I1).
    Q1,
    /// The reported stop reason says ForceKilled exactly when a SIGKILL was sent (I2).
    Q3,
    /// An interrupt that arrived while the child lived (spawn included) is not lost: the
    /// child gets a SIGTERM, or the supervisor sends one after the interrupt arrived, or the
    /// child exits on its own first (I3).
    Q4,
    /// The supervisor does not wait forever (I4).
    I4,
}

impl Invariant {
    /// Every invariant, in the order [`check`] tries them.
    pub const ALL: &'static [Invariant] =
        &[Invariant::Q1, Invariant::Q3, Invariant::Q4, Invariant::I4];

    /// The id and name a violation message starts with, e.g. `Q1 kill-recycled-pid`.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::Q1 => "Q1 kill-recycled-pid",
            Invariant::Q3 => "Q3 force-flag-after-classify",
            Invariant::Q4 => "Q4 signal-before-pid-store",
            Invariant::I4 => "I4 bounded-stop",
        }
    }
}

/// A broken invariant, what broke it, and the interleaving that did.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What happened, in one sentence.
    pub detail: String,
    /// The run's steps.
    pub trace: Trace,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated: {}\ninterleaving:\n{}",
            self.invariant.name(),
            self.detail,
            self.trace
        )
    }
}

/// Checks the invariants in `which` (in the order of [`Invariant::ALL`]) and returns the first
/// that `outcome` breaks.
pub fn check(outcome: &Outcome, which: &[Invariant]) -> Result<(), Violation> {
    for &inv in Invariant::ALL.iter().filter(|i| which.contains(i)) {
        let found = match inv {
            Invariant::Q1 => stray_signal(outcome),
            Invariant::Q3 => untrue_reason(outcome),
            Invariant::Q4 => lost_interrupt(outcome),
            Invariant::I4 => {
                outcome.reason.is_none().then(|| "the supervisor would wait forever".to_string())
            }
        };
        if let Some(detail) = found {
            return Err(Violation { invariant: inv, detail, trace: outcome.trace.clone() });
        }
    }
    Ok(())
}

fn stray_signal(o: &Outcome) -> Option<String> {
    o.sent.iter().find_map(|s| match s.delivery {
        Delivery::Process { id, role: Role::Innocent, .. } => Some(format!(
            "the {} thread sent {} to pid {}, which the kernel had given to an innocent \
             process after the child was reaped",
            s.by, s.signal, o.processes[id].pid
        )),
        _ => None,
    })
}

fn untrue_reason(o: &Outcome) -> Option<String> {
    let reason = o.reason?;
    let kill = o.sent.iter().find(|s| s.signal == Signal::Kill);
    match (kill, reason) {
        (Some(s), r) if r != StopReason::ForceKilled => Some(format!(
            "the {} thread sent SIGKILL ({}) but the reported stop reason is {r:?}: no \
             \"did not respond to SIGTERM\" warning",
            s.by, s.delivery
        )),
        (None, StopReason::ForceKilled) => {
            Some("the reported stop reason is ForceKilled but no SIGKILL was sent".to_string())
        }
        _ => None,
    }
}

fn lost_interrupt(o: &Outcome) -> Option<String> {
    let arrival = o.interrupt?;
    if !arrival.child_alive {
        return None;
    }
    let child = o.processes.iter().find(|p| p.role == Role::Child)?;
    let got_term =
        child.received.iter().any(|r| r.signal == Signal::Term && r.state == ProcState::Running);
    // A SIGTERM sent after the arrival was forwarded, even if it came too late to matter
    // (overtaken by a SIGKILL, or aimed at a PID that was reaped meanwhile: Q1's business).
    let forwarded = o.sent[arrival.sent_before..].iter().any(|s| s.signal == Signal::Term);
    if got_term || forwarded {
        return None;
    }
    let head = "an interrupt arrived while the child lived and no SIGTERM was ever sent for it";
    match (child.death, o.reason) {
        (Some(Death::Kill), _) => Some(format!(
            "{head}: the child was SIGKILLed without ever getting SIGTERM (no graceful stop)"
        )),
        (_, None) => Some(format!("{head}: the supervisor waits for it forever")),
        // It exited on its own before the interrupt could be forwarded: nothing was lost.
        _ => None,
    }
}
