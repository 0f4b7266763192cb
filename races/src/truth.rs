//! The lab's record of what happened in one replay, from its own observation: interrupts it
//! sent, when a stop was asked, how the design process and the victims ended, what was left
//! alive, the zombies it counted, the signals it saw a black-box program send. One of the facts
//! the oracle judges; the scenarios fill it in, the oracle only reads it.

use racelab_sandbox::Fate;

/// What the lab saw.
#[derive(Debug, Default)]
pub struct Truth {
    /// Interrupts sent to the design: (time, was the child alive then).
    pub interrupts: Vec<(u64, bool)>,
    /// When the first stop request was made.
    pub stop_requested_at: Option<u64>,
    /// How long past the stop request the design was still running when the bound passed.
    pub overran_bound: Option<u64>,
    /// Time the design spent blocked in lab actions after the stop request (ns): the lab's
    /// time, added to the I4 bound.
    pub lab_held_ns: u64,
    /// The outer process was killed.
    pub outer_killed: bool,
    /// The lab SIGKILLed the design process itself, the child's parent (P1).
    pub design_killed: bool,
    /// The stop request I4 counts from is the child's own end (S1, H1).
    pub bound_from_child_end: bool,
    /// The design did not finish before the replay deadline.
    pub hung: bool,
    /// How the design process ended.
    pub design_exit: Option<Fate>,
    /// Victims: (pid, fate when the run ended).
    pub victims: Vec<(i32, Option<Fate>)>,
    /// Processes of the child's tree alive after the design returned or died: (pid, state, name).
    pub survivors: Vec<(i32, char, String)>,
    /// The lock file was still locked after the stop.
    pub lock_held: bool,
    /// Zombies whose parent is the design, at quiescence.
    pub zombies: Option<Result<usize, String>>,
    /// Things that went wrong in the lab itself.
    pub lab_errors: Vec<String>,
    /// Whether the supervisor sent SIGKILL, when the lab saw it at the syscall (black-box
    /// programs); `None`: read it from the design's escalation points in the trace.
    pub sigkill_seen: Option<bool>,
    /// When the lab saw the supervisor send a stop signal (SIGINT, SIGTERM, SIGHUP) to another
    /// process at the syscall (black-box programs): the times it was let go. Ground truth that
    /// an interrupt was forwarded when the child died of it before its own log began.
    pub stop_signals_sent: Vec<u64>,
    /// Signals delivered one by one to the supervisor once the child was ready (F1): each must
    /// reach the child. (time, signal).
    pub forwarded: Vec<(u64, i32)>,
}
