//! racelab-models: loom models of piano's old process-lifecycle protocol and of the reference
//! protocol, checked exhaustively for the races of piano issue #620.
//!
//! What it is for: showing, by exploring every interleaving of a small in-memory model, that
//! the old protocol has races Q1, Q3 and Q4 (`shared/RACES.md`) and that the reference
//! protocol has none of them. What it is not for: real processes (the lab and the supervisor
//! crates do that), timing, or anything loom cannot count (see "Limitations").
//!
//! # Background
//!
//! piano's `run_child` (before commit ecca3b9) runs a child under four `SeqCst` globals:
//! `CHILD_PID`, `DURATION_EXPIRED`, `SIGINT_RECEIVED`, `FORCE_KILLED`. A SIGINT handler
//! (installed before spawn) forwards SIGTERM to `CHILD_PID`; a duration thread sends SIGTERM
//! when `--duration` expires and SIGKILL a `--kill-timeout` later; a SIGINT-escalation thread
//! sends SIGKILL a kill timeout after an interrupt; main waits (which reaps), classifies
//! `ForceKilled > Duration > Interrupted > Normal`, and only then clears `CHILD_PID`. Three
//! windows follow:
//!
//! - **Q1 kill-recycled-pid**: an escalation thread loads the PID, the child exits, main
//!   reaps it, the kernel gives the PID to a new process, the SIGKILL kills that process.
//! - **Q3 force-flag-after-classify**: main reads `FORCE_KILLED == false` and reports
//!   Duration; the escalation thread then sets the flag and sends SIGKILL anyway.
//! - **Q4 signal-before-pid-store**: a SIGINT between the handler's installation and the
//!   store of `CHILD_PID` finds 0 and forwards nothing; the child is SIGKILLed without ever
//!   seeing SIGTERM, or (without a kill timeout) the supervisor waits forever.
//!
//! The reference protocol ([`reference`](mod@reference)) is one loop on one thread that owns a pidfd-like
//! handle, reads SIGINT from a queue (blocked before spawn), and decides the SIGKILL and the
//! stop reason in the same step.
//!
//! # The models
//!
//! - [`kernel`]: the world. A two-entry PID table that gives the lowest free PID to the next
//!   fork (so a freed PID is reused at once), processes that run, become zombies and are
//!   reaped, signals recorded per process with sender and the receiver's state, the
//!   supervisor's signal queue and timers, and the handle that names one process forever.
//!   Every system call is one step under the kernel lock.
//! - [`old`]: piano's `run_child` and its threads, step for step, with piano's line numbers.
//! - [`reference`](mod@reference): the loop.
//! - [`Scenario`]: what happens around a run (a duration that expires, one Ctrl-C, a kill
//!   timeout, a child that exits on its own, an innocent process that forks). Each is a loom
//!   thread, so it happens at every possible point.
//! - [`invariants`]: Q1, Q3, Q4 (and I4, no endless wait), checked on [`Outcome`], what the
//!   kernel recorded, never on what the protocol says about itself.
//!
//! A run ([`old::run`], [`reference::run`]) starts the threads, joins them all, and returns the
//! [`Outcome`]; [`check`] returns the first broken invariant as a [`Violation`] that carries
//! the interleaving.
//!
//! ```no_run
//! // Outside loom: one run on real threads, in whatever order the OS picks.
//! use racelab_models::{Invariant, Scenario, check, reference};
//! let outcome = reference::run(&Scenario::INTERRUPT);
//! assert!(check(&outcome, Invariant::ALL).is_ok());
//! ```
//!
//! (`no_run` only because `cargo test` under `--cfg loom` would run it outside a loom model.)
//!
//! # Modelling choices
//!
//! - **`SeqCst` as sequential consistency.** loom 0.7 treats `SeqCst` loads and stores as
//!   `AcqRel` and so reports executions a `SeqCst` program cannot have (it did: the handler
//!   reading `CHILD_PID == 0` after main stored the PID). piano's globals are all `SeqCst`, so
//!   each is a loom `Mutex<u32>` (`sync::SeqCstCell`): every access sees the latest value.
//! - **Long sleeps in the old protocol.** `sleep(duration)` and `sleep(kill_timeout)` end only
//!   when no other piano thread is busy ([`kernel::Kernel::sleep`]). Without that, loom reports
//!   "races" that need a thread stalled for a whole kill timeout between two instructions.
//!   The child's exit, the innocent fork and the user's Ctrl-C stay free. So every race found
//!   in the old protocol happens even with the kindest timing; the reference protocol gets no
//!   timing assumption at all (its timers fire at any moment).
//! - **Polls.** The SIGINT-escalation thread's 50 ms poll loop polls again only after a global
//!   it reads changed (a poll that finds nothing changes nothing).
//! - **Detached threads are joined** at the end of a run, so the checks see every signal they
//!   would ever send.
//! - **Endless waits.** A wait that nothing can end any more (no thread left that could end
//!   the child or wake the waiter) returns instead of deadlocking loom, and the run records
//!   that the supervisor would wait forever.
//!
//! # Running
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p racelab-models --release            # the loom checks
//! RUSTFLAGS="--cfg loom" cargo test -p racelab-models --release -- --nocapture --test-threads=1
//! cargo test -p racelab-models                                              # plain, std threads
//! ```
//!
//! The loom tests use `loom::model::Builder::check` directly (not `loom::model`, which
//! installs a `tracing` subscriber), so `LOOM_LOG` prints nothing; the models print their own
//! interleaving instead. `LOOM_MAX_PREEMPTIONS=n` overrides every test's bound. Each test
//! prints `loom: <protocol>, scenario <name> (<threads> threads), preemption bound <b>: <n>
//! executions in <time>: <result>` (shown with `--nocapture`). Bounds: none (exhaustive) where
//! a protocol runs at most four threads, 3 where the reference protocol runs five; the old
//! protocol is checked at the same bound as the reference in each scenario.
//!
//! The old-protocol tests pass when loom finds their race: each asserts which invariant broke
//! (and, for Q4, that the handler read `CHILD_PID == 0` before main stored it), so a model that
//! stopped finding its race fails. The reference tests pass when loom finds nothing.
//!
//! # Reading a failure
//!
//! A violation prints as the invariant, what happened, and the interleaving, one numbered step
//! per line with the thread that did it:
//!
//! ```text
//! Q1 kill-recycled-pid violated: the duration thread sent SIGKILL to pid 100, which the
//! kernel had given to an innocent process after the child was reaped
//! interleaving:
//!   ...
//!    9  duration    CHILD_PID -> 100
//!   10  duration    FORCE_KILLED = true
//!   11  child       the child exits on its own
//!   12  main        wait reaps the child (OnItsOwn); pid 100 is free
//!   ...
//!   16  innocent    fork: the innocent gets pid 100
//!   17  duration    kill(100, SIGKILL) HITS THE INNOCENT PROCESS (running)
//! ```
//!
//! `X -> v` is a load that returned `v`, `X = v` a store; kernel steps say what a signal hit.
//! To replay one interleaving under a debugger, run the single test with
//! `--test-threads=1`: loom explores in a fixed order, so the same execution fails first.
//!
//! # Limitations
//!
//! - Small worlds: one child, one interrupt, one innocent process, two PIDs, at most five
//!   threads (loom's limit). A race that needs two interrupts or three processes is out of
//!   reach.
//! - No time: "long sleep" is the only timing fact the old model knows; a Late child exits
//!   at any moment, so a Q4 whose child then exits on its own is not counted as lost (the
//!   model cannot tell "lost" from "not yet forwarded").
//! - Under a preemption bound the exploration is not exhaustive: an interleaving that needs
//!   more preemptions is not tried.
//! - `kill_timeout == 0` with a child that ignores SIGTERM waits forever in the reference
//!   protocol too (as in piano's fix); no scenario has such a child.
//! - The models are abstractions written from piano's code and the reference design, not
//!   that code: they prove properties of the protocols, not of an implementation.

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
