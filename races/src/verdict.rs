//! What a replay concludes: the invariants, the evidence of a violation, the verdict.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The oracle's invariants (RACES.md). Each is judged from ground truth the lab collected itself
/// (victim fates, the signals the child saw, wait statuses, /proc, the trace of points passed),
/// never from the design's own report alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Invariant {
    /// No process outside the supervised tree receives a signal from the supervisor.
    I1NoStraySignal,
    /// The reported stop reason matches what happened.
    I2TrueStopReason,
    /// An interrupt that reached the supervisor while the child lived reaches the child.
    I3InterruptDelivered,
    /// The supervisor returns within grace + a fixed margin after a stop request.
    I4BoundedStop,
    /// When the supervisor returns (or dies), no process of the child's tree is left.
    I5NoSurvivors,
    /// At quiescence, no zombie whose parent is the supervisor.
    I6NoZombies,
    /// The reported exit status equals the child's real one.
    I7TrueExitStatus,
}

impl Invariant {
    /// Every invariant, in catalog order.
    pub const ALL: [Invariant; 7] = [
        Invariant::I1NoStraySignal,
        Invariant::I2TrueStopReason,
        Invariant::I3InterruptDelivered,
        Invariant::I4BoundedStop,
        Invariant::I5NoSurvivors,
        Invariant::I6NoZombies,
        Invariant::I7TrueExitStatus,
    ];

    /// The short id, `I1` .. `I7`.
    pub fn id(self) -> &'static str {
        match self {
            Invariant::I1NoStraySignal => "I1",
            Invariant::I2TrueStopReason => "I2",
            Invariant::I3InterruptDelivered => "I3",
            Invariant::I4BoundedStop => "I4",
            Invariant::I5NoSurvivors => "I5",
            Invariant::I6NoZombies => "I6",
            Invariant::I7TrueExitStatus => "I7",
        }
    }

    /// One line: what the invariant demands.
    pub fn title(self) -> &'static str {
        match self {
            Invariant::I1NoStraySignal => "no stray signal",
            Invariant::I2TrueStopReason => "true stop reason",
            Invariant::I3InterruptDelivered => "interrupt delivered",
            Invariant::I4BoundedStop => "bounded stop",
            Invariant::I5NoSurvivors => "no survivors",
            Invariant::I6NoZombies => "no zombies",
            Invariant::I7TrueExitStatus => "true exit status",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id(), self.title())
    }
}

/// One broken invariant with the ground truth that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What the lab saw, in one or two sentences with pids, signals and times.
    pub evidence: String,
}

/// The verdict of one replay of one race against one design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The schedule was realised and at least one invariant broke.
    Reproduced {
        /// The broken invariants with evidence.
        violations: Vec<Violation>,
    },
    /// The schedule was realised (or proven unrealisable in this design) and every invariant held.
    Prevented,
    /// The lab could not force the interleaving it was asked for (a scheduled step was never
    /// reached, or an action failed). For a legacy design this is a failing replay.
    NotForced {
        /// Why: the stuck report, the failed action.
        why: String,
    },
    /// The capability the race needs is missing here.
    Skipped {
        /// The missing capability and why.
        reason: String,
    },
    /// The lab itself failed (sandbox, runner, protocol): never a pass.
    LabError {
        /// What went wrong.
        message: String,
    },
}

impl Verdict {
    /// The one-word label used in the matrix.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Reproduced { .. } => "reproduced",
            Verdict::Prevented => "prevented",
            Verdict::NotForced { .. } => "not forced",
            Verdict::Skipped { .. } => "skipped",
            Verdict::LabError { .. } => "lab error",
        }
    }

    /// One line for the end of a timeline: the evidence of each broken invariant, the first
    /// line of why it was not forced, the error, the skip, or that every invariant held.
    pub fn summary(&self) -> String {
        match self {
            Verdict::Reproduced { violations } => violations
                .iter()
                .map(|v| format!("{}: {}", v.invariant.id(), v.evidence))
                .collect::<Vec<_>>()
                .join("; "),
            Verdict::NotForced { why } => why.lines().next().unwrap_or_default().to_string(),
            Verdict::LabError { message } => message.clone(),
            Verdict::Skipped { reason } => reason.clone(),
            Verdict::Prevented => "every invariant held".to_string(),
        }
    }

    /// The oracle's conclusion as the last event of a timeline (init speaks for it).
    pub fn closing_event(&self, time_ns: u64) -> racelab_hooks::Event {
        racelab_hooks::Event {
            time_ns,
            pid: 1,
            tid: 1,
            actor: "oracle".into(),
            kind: racelab_hooks::EventKind::Note,
            subject: self.label().into(),
            detail: self.summary(),
            peer: None,
        }
    }

    /// The violated invariants (empty unless reproduced).
    pub fn invariants(&self) -> Vec<Invariant> {
        match self {
            Verdict::Reproduced { violations } => {
                let mut v: Vec<Invariant> = violations.iter().map(|v| v.invariant).collect();
                v.sort();
                v.dedup();
                v
            }
            _ => Vec::new(),
        }
    }
}

/// What a race expects of one design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Expect {
    /// The design has the race: every replay must break exactly these invariants (at least).
    Reproduce(&'static [Invariant]),
    /// The design is fixed: no replay may break any invariant.
    Prevent,
}

impl Expect {
    /// Does `verdict` meet this expectation? Returns a reason when it does not.
    pub fn check(&self, verdict: &Verdict) -> Result<(), String> {
        match (self, verdict) {
            (Expect::Reproduce(want), Verdict::Reproduced { .. }) => {
                let got = verdict.invariants();
                let missing: Vec<_> = want.iter().filter(|i| !got.contains(i)).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("reproduced, but without {missing:?} (got {got:?})"))
                }
            }
            (Expect::Prevent, Verdict::Prevented) => Ok(()),
            (_, other) => Err(format!("expected {}, got {}", self.label(), describe(other))),
        }
    }

    /// "reproduce I1, I2" or "prevent".
    pub fn label(&self) -> String {
        match self {
            Expect::Reproduce(list) => {
                let ids: Vec<&str> = list.iter().map(|i| i.id()).collect();
                format!("reproduce {}", ids.join(", "))
            }
            Expect::Prevent => "prevent".to_string(),
        }
    }
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Reproduced { violations } => {
            let parts: Vec<String> = violations
                .iter()
                .map(|v| format!("{}: {}", v.invariant.id(), v.evidence))
                .collect();
            format!("reproduced ({})", parts.join("; "))
        }
        Verdict::Prevented => "prevented".into(),
        Verdict::NotForced { why } => format!("not forced: {why}"),
        Verdict::Skipped { reason } => format!("skipped: {reason}"),
        Verdict::LabError { message } => format!("lab error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduce_expectation_needs_every_named_invariant() {
        let v = Verdict::Reproduced {
            violations: vec![Violation {
                invariant: Invariant::I1NoStraySignal,
                evidence: "victim killed".into(),
            }],
        };
        assert!(Expect::Reproduce(&[Invariant::I1NoStraySignal]).check(&v).is_ok());
        assert!(Expect::Reproduce(&[Invariant::I2TrueStopReason]).check(&v).is_err());
        assert!(Expect::Prevent.check(&v).is_err());
    }

    #[test]
    fn a_skip_or_lab_error_meets_no_expectation() {
        let skip = Verdict::Skipped { reason: "no freezer".into() };
        assert!(Expect::Prevent.check(&skip).is_err());
        let err = Verdict::LabError { message: "runner died".into() };
        assert!(Expect::Reproduce(&[]).check(&err).is_err());
    }
}
