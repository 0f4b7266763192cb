//! racelab-models: loom models of piano's old process-lifecycle protocol and of the reference
//! protocol. (Tutorial to come.)

#![forbid(unsafe_code)]

pub mod invariants;
pub mod kernel;
pub mod old;
pub mod reference;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use invariants::{Invariant, Violation, check};
pub use kernel::{ChildBehaviour, Outcome};

/// Why the supervisor says the child stopped (piano's `StopReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The child exited by itself.
    Normal,
    /// `--duration` expired and the child was stopped.
    Duration,
    /// The user interrupted (Ctrl-C).
    Interrupted,
    /// The child did not stop after SIGTERM and was SIGKILLed after `--kill-timeout`.
    ForceKilled,
}

/// What happens around one run of a protocol. Each flag adds a loom thread (or two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// A name for reports.
    pub name: &'static str,
    /// How the child behaves.
    pub child: ChildBehaviour,
    /// `--duration` is given and expires during the run.
    pub duration: bool,
    /// The user presses Ctrl-C once, at any moment after the supervisor is ready for it.
    pub interrupt: bool,
    /// `--kill-timeout` is non-zero: SIGTERM escalates to SIGKILL.
    pub kill_timeout: bool,
    /// An unrelated process forks at some moment and may be given a recycled PID.
    pub innocent: bool,
}

impl Scenario {
    /// The duration expires and escalates to SIGKILL while an innocent process forks: the
    /// old protocol's SIGKILL can hit the innocent (Q1).
    pub const ESCALATION_AND_FORK: Scenario = Scenario {
        name: "escalation-and-fork",
        child: ChildBehaviour::Cooperative,
        duration: true,
        interrupt: false,
        kill_timeout: true,
        innocent: true,
    };

    /// The duration expires and escalates to SIGKILL: the old protocol can report Duration
    /// and send SIGKILL anyway (Q3).
    pub const ESCALATION: Scenario = Scenario {
        name: "escalation",
        child: ChildBehaviour::Cooperative,
        duration: true,
        interrupt: false,
        kill_timeout: true,
        innocent: false,
    };

    /// Ctrl-C at any moment, with a kill timeout: in the old protocol an interrupt during
    /// spawn reaches the child only as SIGKILL (Q4).
    pub const INTERRUPT: Scenario = Scenario {
        name: "interrupt",
        child: ChildBehaviour::Cooperative,
        duration: false,
        interrupt: true,
        kill_timeout: true,
        innocent: false,
    };

    /// Ctrl-C at any moment, no kill timeout: in the old protocol an interrupt during spawn
    /// never reaches the child and the supervisor waits forever (Q4).
    pub const INTERRUPT_NO_KILL_TIMEOUT: Scenario = Scenario {
        name: "interrupt-no-kill-timeout",
        child: ChildBehaviour::Cooperative,
        duration: false,
        interrupt: true,
        kill_timeout: false,
        innocent: false,
    };

    /// The duration expires and escalates while the child exits on its own at any moment:
    /// SIGTERM and SIGKILL may find it running, a zombie, or gone.
    pub const LATE_CHILD_ESCALATION: Scenario = Scenario {
        name: "late-child-escalation",
        child: ChildBehaviour::Late,
        duration: true,
        interrupt: false,
        kill_timeout: true,
        innocent: false,
    };

    /// Ctrl-C at any moment, with a kill timeout, while the child exits on its own at any
    /// moment.
    pub const LATE_CHILD_INTERRUPT: Scenario = Scenario {
        name: "late-child-interrupt",
        child: ChildBehaviour::Late,
        duration: false,
        interrupt: true,
        kill_timeout: true,
        innocent: false,
    };

    /// Everything at once with a child that exits on its own at any moment: duration,
    /// Ctrl-C and the kill timeout (five threads: loom checks it under a preemption bound).
    pub const EVERYTHING_LATE_CHILD: Scenario = Scenario {
        name: "everything-late-child",
        child: ChildBehaviour::Late,
        duration: true,
        interrupt: true,
        kill_timeout: true,
        innocent: false,
    };

    /// Every scenario above.
    pub const ALL: &'static [Scenario] = &[
        Scenario::ESCALATION_AND_FORK,
        Scenario::ESCALATION,
        Scenario::INTERRUPT,
        Scenario::INTERRUPT_NO_KILL_TIMEOUT,
        Scenario::LATE_CHILD_ESCALATION,
        Scenario::LATE_CHILD_INTERRUPT,
        Scenario::EVERYTHING_LATE_CHILD,
    ];
}
