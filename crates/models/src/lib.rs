//! racelab-models: loom models of piano's old process-lifecycle protocol and of the reference
//! protocol. (Tutorial to come.)

#![forbid(unsafe_code)]

pub mod invariants;
pub mod kernel;
pub mod old;
pub mod record;
pub mod reference;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use invariants::{Invariant, Violation, check};
pub use record::Outcome;

/// How the child reacts to the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildBehaviour {
    /// Exits as soon as it gets SIGTERM (a profiled program that flushes fast); never on its
    /// own. Only a signal ends it, so a lost interrupt is visible.
    Cooperative,
    /// Exits on its own at any moment (it finishes its work, or the flush after SIGTERM takes
    /// a while); SIGTERM is only recorded. One more loom thread.
    Late,
}

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
    /// The duration expires and escalates to SIGKILL while the child ends on its own around
    /// the deadline and an innocent process forks: the old protocol's SIGKILL can hit the
    /// innocent (Q1).
    pub const ESCALATION_AND_FORK: Scenario = Scenario {
        name: "escalation-and-fork",
        child: ChildBehaviour::Late,
        duration: true,
        interrupt: false,
        kill_timeout: true,
        innocent: true,
    };

    /// The duration expires and escalates to SIGKILL while the child ends on its own around
    /// the deadline: the old protocol can report Duration and send SIGKILL anyway (Q3).
    pub const ESCALATION: Scenario = Scenario {
        name: "escalation",
        child: ChildBehaviour::Late,
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

    /// Ctrl-C at any moment, with a kill timeout, while the child ends on its own at any
    /// moment.
    pub const LATE_CHILD_INTERRUPT: Scenario = Scenario {
        name: "late-child-interrupt",
        child: ChildBehaviour::Late,
        duration: false,
        interrupt: true,
        kill_timeout: true,
        innocent: false,
    };

    /// Duration, Ctrl-C and the kill timeout at once, while the child ends on its own at any
    /// moment.
    pub const EVERYTHING: Scenario = Scenario {
        name: "everything",
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
        Scenario::LATE_CHILD_INTERRUPT,
        Scenario::EVERYTHING,
    ];

    /// How many loom threads a protocol runs in this scenario, the main one included (loom
    /// allows at most 5). `reference`: the reference protocol, else the old one.
    pub fn threads(&self, reference: bool) -> usize {
        let late = self.child == ChildBehaviour::Late;
        let helpers = if reference {
            // user, duration timer, grace timer (armed after the first SIGTERM)
            usize::from(self.interrupt)
                + usize::from(self.duration)
                + usize::from(self.kill_timeout && (self.interrupt || self.duration))
        } else {
            // handler, duration thread, SIGINT-escalation thread
            usize::from(self.interrupt)
                + usize::from(self.duration)
                + usize::from(self.interrupt && self.kill_timeout)
        };
        1 + helpers + usize::from(late) + usize::from(self.innocent)
    }
}
