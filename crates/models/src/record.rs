//! What a run leaves behind: the processes and their signals, the signals the supervisor
//! sent, when the interrupt arrived, and the trace of every step. The kernel writes it; the
//! checks in [`crate::invariants`] read it; the models never do.

use std::fmt;

use crate::StopReason;

/// A process id as the kernel hands it out: a number, reused once the process is reaped.
pub type Pid = u32;

/// Who does a step. Each is one loom thread, except that a model's main thread plays `Main`
/// (the old protocol) or `Loop` (the reference protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The old protocol's main thread (`run_child`).
    Main,
    /// The old protocol's SIGINT handler, on whatever thread the signal interrupts.
    Handler,
    /// The old protocol's duration thread.
    Duration,
    /// The old protocol's SIGINT-escalation thread.
    Escalation,
    /// The reference protocol's one thread.
    Loop,
    /// The user who presses Ctrl-C (reference protocol: the signal only queues).
    User,
    /// The reference protocol's duration timer.
    DurationTimer,
    /// The reference protocol's grace (`--kill-timeout`) timer.
    GraceTimer,
    /// The child process itself, when it ends on its own.
    Child,
    /// An unrelated process that forks at some moment and may get a recycled PID.
    Innocent,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Actor::Main => "main",
            Actor::Handler => "handler",
            Actor::Duration => "duration",
            Actor::Escalation => "escalation",
            Actor::Loop => "loop",
            Actor::User => "user",
            Actor::DurationTimer => "dur-timer",
            Actor::GraceTimer => "grace-timer",
            Actor::Child => "child",
            Actor::Innocent => "innocent",
        })
    }
}

/// The two signals the protocols send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Asks the child to stop (it may flush and exit, late, or ignore it).
    Term,
    /// Cannot be caught: a running target dies at once.
    Kill,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        })
    }
}

/// What a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The supervised child.
    Child,
    /// A process that has nothing to do with the supervisor.
    Innocent,
}

/// Where a process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcState {
    /// Alive.
    Running,
    /// Dead, not yet reaped: its PID is still taken, signals to it do nothing.
    Zombie,
    /// Reaped: its PID is free and may name another process.
    Reaped,
}

/// Why a process died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// It exited by itself.
    OnItsOwn,
    /// SIGTERM ended it.
    Term,
    /// SIGKILL ended it.
    Kill,
}

/// One signal a process received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Which signal.
    pub signal: Signal,
    /// Who sent it.
    pub from: Actor,
    /// The receiver's state at that moment.
    pub state: ProcState,
}

/// A process and its history. Its index in [`Outcome::processes`] is its identity, which,
/// unlike its PID, is never reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Child or innocent.
    pub role: Role,
    /// The PID it had (free again once it is reaped).
    pub pid: Pid,
    /// Where it is in its life.
    pub state: ProcState,
    /// Why it died, if it did.
    pub death: Option<Death>,
    /// Every signal it received, in order.
    pub received: Vec<Received>,
}

/// What a signal sent by the supervisor reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A process, in the given state.
    Process {
        /// The process's identity (index in [`Outcome::processes`]).
        id: usize,
        /// Child or innocent.
        role: Role,
        /// Its state when the signal arrived.
        state: ProcState,
    },
    /// `kill(pid)` with a free PID: ESRCH.
    NoSuchProcess,
    /// A handle whose process has been reaped: an error, never a stray signal.
    Refused,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Process { role: Role::Child, state, .. } => {
                write!(f, "hits the child ({})", state_word(*state))
            }
            Delivery::Process { role: Role::Innocent, state, .. } => {
                write!(f, "HITS THE INNOCENT PROCESS ({})", state_word(*state))
            }
            Delivery::NoSuchProcess => f.write_str("ESRCH (pid free)"),
            Delivery::Refused => f.write_str("refused: the handle's process was reaped"),
        }
    }
}

fn state_word(state: ProcState) -> &'static str {
    match state {
        ProcState::Running => "running",
        ProcState::Zombie => "zombie",
        ProcState::Reaped => "reaped",
    }
}

/// One signal the supervisor sent, and what it reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The supervisor's actor that sent it.
    pub by: Actor,
    /// Which signal.
    pub signal: Signal,
    /// What it reached.
    pub delivery: Delivery,
}

/// When the interrupt (the one SIGINT of a scenario) reached the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The child was alive then, or not born yet (the spawn counts: "whenever it arrived,
    /// spawn included").
    pub child_alive: bool,
    /// How many signals the supervisor had sent by then (an index into [`Outcome::sent`]).
    pub sent_before: usize,
}

/// What the reference loop's `poll` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// The child's handle is readable: it is a zombie.
    ChildExited,
    /// A SIGINT was read from the signal queue.
    Interrupt,
    /// The duration timer fired.
    Duration,
    /// The grace timer fired.
    Grace,
}

/// The reference protocol's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// `--duration` elapsed.
    Duration,
    /// `--kill-timeout` elapsed after SIGTERM.
    Grace,
}

/// The old protocol's globals, named in the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `CHILD_PID: AtomicU32`.
    ChildPid,
    /// `DURATION_EXPIRED: AtomicBool`.
    DurationExpired,
    /// `SIGINT_RECEIVED: AtomicBool`.
    SigintReceived,
    /// `FORCE_KILLED: AtomicBool`.
    ForceKilled,
}

/// One step of a run, as the trace shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An atomic store.
    Store(Global, u32),
    /// An atomic load and the value it returned.
    Load(Global, u32),
    /// `sigaction(SIGINT, handler, SA_RESETHAND)`: the handler may run from now on.
    InstallHandler,
    /// SIGINT blocked: from now on it waits in the signal queue.
    BlockSigint,
    /// A fork and the PID it got.
    Fork(Role, Pid),
    /// `kill(pid, signal)`.
    Kill(Pid, Signal, Delivery),
    /// A signal through the child's handle.
    SignalHandle(Signal, Delivery),
    /// The child exits by itself.
    ExitOnItsOwn,
    /// The child was reaped; its PID is free.
    Reaped(Pid, Death),
    /// A blocking wait that nothing can ever end.
    WaitsForever,
    /// The interrupt reaches the supervisor.
    Interrupt(Arrival),
    /// A timer is armed.
    Armed(Timer),
    /// A timer fires.
    TimerFired(Timer),
    /// The reference loop's poll.
    Polled(Ready),
    /// The supervisor decides its stop reason.
    Classified(StopReason),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Store(g, v) => write!(f, "{} = {}", global_name(*g), global_value(*g, *v)),
            Event::Load(g, v) => write!(f, "{} -> {}", global_name(*g), global_value(*g, *v)),
            Event::InstallHandler => f.write_str("sigaction(SIGINT, handler, SA_RESETHAND)"),
            Event::BlockSigint => f.write_str("block SIGINT: it queues from now on"),
            Event::Fork(Role::Child, pid) => write!(f, "spawn: the child gets pid {pid}"),
            Event::Fork(Role::Innocent, pid) => write!(f, "fork: the innocent gets pid {pid}"),
            Event::Kill(pid, sig, d) => write!(f, "kill({pid}, {sig}) {d}"),
            Event::SignalHandle(sig, d) => write!(f, "pidfd_send_signal(child, {sig}) {d}"),
            Event::ExitOnItsOwn => f.write_str("the child exits on its own"),
            Event::Reaped(pid, death) => {
                write!(f, "wait reaps the child ({death:?}); pid {pid} is free")
            }
            Event::WaitsForever => {
                f.write_str("wait would block forever: nothing can end the child")
            }
            Event::Interrupt(a) if a.child_alive => f.write_str("SIGINT arrives, child alive"),
            Event::Interrupt(_) => f.write_str("SIGINT arrives, child already dead"),
            Event::Armed(Timer::Duration) => f.write_str("arm the duration timer"),
            Event::Armed(Timer::Grace) => f.write_str("arm the kill-timeout timer"),
            Event::TimerFired(Timer::Duration) => f.write_str("the duration expires"),
            Event::TimerFired(Timer::Grace) => f.write_str("the kill timeout expires"),
            Event::Polled(r) => write!(f, "poll -> {r:?}"),
            Event::Classified(r) => write!(f, "stop reason = {r:?}"),
        }
    }
}

fn global_name(g: Global) -> &'static str {
    match g {
        Global::ChildPid => "CHILD_PID",
        Global::DurationExpired => "DURATION_EXPIRED",
        Global::SigintReceived => "SIGINT_RECEIVED",
        Global::ForceKilled => "FORCE_KILLED",
    }
}

fn global_value(g: Global, v: u32) -> String {
    match (g, v) {
        (Global::ChildPid, v) => v.to_string(),
        (_, 0) => "false".into(),
        (_, _) => "true".into(),
    }
}

/// The steps of one run, in the order they happened (under loom, exactly; on std threads,
/// up to the gap between an atomic operation and its record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace(pub Vec<(Actor, Event)>);

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (actor, event)) in self.0.iter().enumerate() {
            writeln!(f, "  {:>2}  {actor:<11} {event}", i + 1)?;
        }
        Ok(())
    }
}

/// Everything a run left behind, for the checks.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The reported stop reason; `None` if the supervisor would wait forever.
    pub reason: Option<StopReason>,
    /// Every process ever created (the child is the one with [`Role::Child`]).
    pub processes: Vec<Process>,
    /// Every signal the supervisor sent, in order.
    pub sent: Vec<Sent>,
    /// When the interrupt arrived, if there was one.
    pub interrupt: Option<Arrival>,
    /// The steps, in order.
    pub trace: Trace,
}
