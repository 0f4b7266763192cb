//! The model kernel: a process table whose PIDs are reused, processes that run, become zombies
//! and are reaped, a record of every signal, the supervisor's signal queue and timers, and a
//! trace of every step.
//!
//! Every system call of a model is one method here and takes the kernel lock once, so a system
//! call is atomic (as it is for the real kernel) and the points where loom may switch threads
//! are exactly the lock acquisitions. What the kernel records beyond what a real kernel keeps
//! (who sent which signal, when the interrupt arrived, the trace) is ghost state: the models
//! never read it, only the checks in [`crate::invariants`] do.

use std::fmt;

use crate::StopReason;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

use crate::sync::{Arc, Condvar, JoinHandle, Mutex, MutexGuard, thread};

/// A process id as the kernel hands it out: a number, reused once the process is reaped.
pub type Pid = u32;

/// The first PID of the table. The table has [`PID_SLOTS`] entries, `FIRST_PID..`.
pub const FIRST_PID: Pid = 100;

/// Size of the PID table: the child and the innocent process never need more.
pub const PID_SLOTS: usize = 2;

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

/// The child's handle in the reference protocol (pidfd-like): it names exactly one process,
/// forever. Only [`Kernel::spawn_child_with_handle`] makes one.
#[derive(Debug)]
pub struct Handle {
    id: usize,
}

/// The model kernel. One per run.
pub struct Kernel {
    state: Mutex<State>,
    /// Notified on every change a blocked `wait` or `poll` could be waiting for.
    changed: Condvar,
    trace: std::sync::Mutex<Trace>,
    /// Threads still running that could end the child or wake the supervisor. A blocking
    /// wait with none left and nothing ready would block forever. A model device, kept in a
    /// std atomic so that counting adds no steps for loom to permute.
    actors: AtomicU32,
    /// A thread is in `wait` or `poll`: only then is a change worth a notification (loom
    /// makes every notification a scheduling point). Set before that thread reads `actors`,
    /// so a leaving actor either is seen gone or sees the waiter (and wakes it).
    waiting: AtomicBool,
}

struct State {
    behaviour: ChildBehaviour,
    processes: Vec<Process>,
    /// PID `FIRST_PID + i` names `processes[slot]`, or is free.
    pids: [Option<usize>; PID_SLOTS],
    child: Option<usize>,
    sigint_pending: bool,
    duration_fired: bool,
    grace_fired: bool,
    sent: Vec<Sent>,
    interrupt: Option<Arrival>,
}

impl State {
    fn child_alive(&self) -> bool {
        self.child.is_none_or(|c| self.processes[c].state == ProcState::Running)
    }

    fn deliver(&mut self, id: usize, signal: Signal, from: Actor) -> Delivery {
        let behaviour = self.behaviour;
        let p = &mut self.processes[id];
        let before = p.state;
        p.received.push(Received { signal, from, state: before });
        if before == ProcState::Running {
            let dies = match (signal, p.role) {
                (Signal::Kill, _) => Some(Death::Kill),
                (Signal::Term, Role::Innocent) => Some(Death::Term),
                (Signal::Term, Role::Child) => {
                    (behaviour == ChildBehaviour::Cooperative).then_some(Death::Term)
                }
            };
            if let Some(death) = dies {
                p.state = ProcState::Zombie;
                p.death = Some(death);
            }
        }
        let delivery = Delivery::Process { id, role: p.role, state: before };
        self.sent.push(Sent { by: from, signal, delivery });
        delivery
    }
}

impl Kernel {
    /// A kernel with an empty process table. `actors`: how many threads the model will start
    /// that can end the child or wake the supervisor (a late child's own thread is added
    /// here); each leaves with its last step. Declaring them up front saves a scheduling point
    /// per thread.
    pub fn new(behaviour: ChildBehaviour, actors: u32) -> Self {
        Kernel {
            state: Mutex::new(State {
                behaviour,
                processes: Vec::new(),
                pids: [None; PID_SLOTS],
                child: None,
                sigint_pending: false,
                duration_fired: false,
                grace_fired: false,
                sent: Vec::new(),
                interrupt: None,
            }),
            changed: Condvar::new(),
            trace: std::sync::Mutex::new(Trace::default()),
            actors: AtomicU32::new(actors + u32::from(behaviour == ChildBehaviour::Late)),
            waiting: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a step that is not a system call (an atomic operation, a decision).
    pub fn note(&self, actor: Actor, event: Event) {
        self.trace.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.push((actor, event));
    }

    /// Wakes a blocked `wait` or `poll`, if there is one. Called with the lock held.
    fn changed(&self) {
        if self.waiting.load(SeqCst) {
            self.changed.notify_all();
        }
    }

    /// The calling actor ends: it can no longer end the child or wake the supervisor.
    pub fn leave(&self) {
        self.actors.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) {
            let _st = self.lock();
            self.changed.notify_all();
        }
    }

    /// `timerfd_settime`: arms a timer, which fires at some later moment (its own thread).
    /// Only the thread that polls arms timers, so counting it needs no lock.
    pub fn arm(this: &Arc<Self>, by: Actor, timer: Timer) -> JoinHandle<()> {
        this.actors.fetch_add(1, SeqCst);
        this.note(by, Event::Armed(timer));
        let k = Arc::clone(this);
        let who = match timer {
            Timer::Duration => Actor::DurationTimer,
            Timer::Grace => Actor::GraceTimer,
        };
        thread::spawn(move || k.fire(who, timer))
    }

    fn fork(&self, st: &mut State, role: Role) -> (usize, Pid) {
        // The lowest free PID: in this tiny table a just-freed PID is the next fork's.
        let slot = st.pids.iter().position(Option::is_none).expect("model kernel: pid table full");
        let id = st.processes.len();
        let pid = FIRST_PID + slot as Pid;
        st.pids[slot] = Some(id);
        st.processes.push(Process {
            role,
            pid,
            state: ProcState::Running,
            death: None,
            received: Vec::new(),
        });
        (id, pid)
    }

    /// `fork` + `exec` of the child. Returns its PID, and for a [`ChildBehaviour::Late`]
    /// child the thread that ends it on its own.
    pub fn spawn_child(this: &Arc<Self>, by: Actor) -> (Pid, Option<JoinHandle<()>>) {
        let (_, pid, life) = Kernel::spawn(this, by);
        (pid, life)
    }

    fn spawn(this: &Arc<Self>, by: Actor) -> (usize, Pid, Option<JoinHandle<()>>) {
        let (id, pid, behaviour) = {
            let mut st = this.lock();
            let (id, pid) = this.fork(&mut st, Role::Child);
            st.child = Some(id);
            this.note(by, Event::Fork(Role::Child, pid));
            (id, pid, st.behaviour)
        };
        let life = (behaviour == ChildBehaviour::Late).then(|| {
            let k = Arc::clone(this);
            thread::spawn(move || k.exit_on_its_own(id))
        });
        (id, pid, life)
    }

    /// Like [`Kernel::spawn_child`], plus a handle made in the same step (`clone3` with
    /// `CLONE_PIDFD`): there is no moment at which the child exists without it.
    pub fn spawn_child_with_handle(
        this: &Arc<Self>,
        by: Actor,
    ) -> (Handle, Option<JoinHandle<()>>) {
        let (id, _, life) = Kernel::spawn(this, by);
        (Handle { id }, life)
    }

    /// An unrelated process forks.
    pub fn fork_innocent(&self) {
        let mut st = self.lock();
        let (_, pid) = self.fork(&mut st, Role::Innocent);
        self.note(Actor::Innocent, Event::Fork(Role::Innocent, pid));
    }

    /// The late child's thread: its one step, which is also its last.
    fn exit_on_its_own(&self, id: usize) {
        let mut st = self.lock();
        self.actors.fetch_sub(1, SeqCst);
        let p = &mut st.processes[id];
        if p.state == ProcState::Running {
            p.state = ProcState::Zombie;
            p.death = Some(Death::OnItsOwn);
            self.note(Actor::Child, Event::ExitOnItsOwn);
        }
        self.changed();
    }

    /// `kill(pid, signal)`: reaches whichever process has that PID now.
    pub fn kill(&self, by: Actor, pid: Pid, signal: Signal) -> Delivery {
        let mut st = self.lock();
        let delivery = match st.pids.get(pid.wrapping_sub(FIRST_PID) as usize).copied().flatten() {
            Some(id) => st.deliver(id, signal, by),
            None => {
                let delivery = Delivery::NoSuchProcess;
                st.sent.push(Sent { by, signal, delivery });
                delivery
            }
        };
        self.note(by, Event::Kill(pid, signal, delivery));
        self.changed();
        delivery
    }

    /// `pidfd_send_signal`: reaches the handle's process, or fails if it was reaped.
    pub fn signal(&self, by: Actor, handle: &Handle, signal: Signal) -> Delivery {
        let mut st = self.lock();
        let delivery = if st.processes[handle.id].state == ProcState::Reaped {
            st.sent.push(Sent { by, signal, delivery: Delivery::Refused });
            Delivery::Refused
        } else {
            st.deliver(handle.id, signal, by)
        };
        self.note(by, Event::SignalHandle(signal, delivery));
        self.changed();
        delivery
    }

    /// Blocks until process `id` is a zombie, then reaps it and frees its PID. `None` if
    /// nothing left could ever end it (the real call would block forever).
    fn wait(&self, by: Actor, which: impl FnOnce(&State) -> usize) -> Option<Death> {
        let mut st = self.lock();
        let id = which(&st);
        self.waiting.store(true, SeqCst);
        let death = loop {
            match st.processes[id].state {
                ProcState::Zombie => {
                    let p = &mut st.processes[id];
                    p.state = ProcState::Reaped;
                    let (pid, death) = (p.pid, p.death.expect("a zombie died of something"));
                    st.pids[(pid - FIRST_PID) as usize] = None;
                    self.note(by, Event::Reaped(pid, death));
                    break Some(death);
                }
                ProcState::Reaped => panic!("model error: waiting for a reaped process"),
                ProcState::Running if self.actors.load(SeqCst) == 0 => {
                    self.note(by, Event::WaitsForever);
                    break None;
                }
                ProcState::Running => st = self.block(st),
            }
        };
        self.waiting.store(false, SeqCst);
        death
    }

    /// `waitpid(pid)` on the caller's own, not yet reaped, child.
    pub fn waitpid(&self, by: Actor, pid: Pid) -> Option<Death> {
        self.wait(by, |st| st.pids[(pid - FIRST_PID) as usize].expect("waitpid: not our child"))
    }

    /// `waitid(P_PIDFD)`: reaps the handle's process.
    pub fn reap(&self, by: Actor, handle: &Handle) -> Option<Death> {
        self.wait(by, |_| handle.id)
    }

    /// The interrupt reaches the supervisor and the caller runs the handler next (old).
    pub fn interrupt_handled(&self, by: Actor) {
        let mut st = self.lock();
        let arrival = Arrival { child_alive: st.child_alive() };
        st.interrupt = Some(arrival);
        self.note(by, Event::Interrupt(arrival));
    }

    /// The interrupt reaches the supervisor, which has SIGINT blocked: it waits in the signal
    /// queue (reference). The user's one step, which is also its last.
    pub fn interrupt_queued(&self, by: Actor) {
        let mut st = self.lock();
        self.actors.fetch_sub(1, SeqCst);
        let arrival = Arrival { child_alive: st.child_alive() };
        st.interrupt = Some(arrival);
        st.sigint_pending = true;
        self.note(by, Event::Interrupt(arrival));
        self.changed();
    }

    /// A timer fires: its thread's one step, which is also its last.
    fn fire(&self, by: Actor, timer: Timer) {
        let mut st = self.lock();
        self.actors.fetch_sub(1, SeqCst);
        match timer {
            Timer::Duration => st.duration_fired = true,
            Timer::Grace => st.grace_fired = true,
        }
        self.note(by, Event::TimerFired(timer));
        self.changed();
    }

    /// `poll` on the child's handle, the signal queue and the timers: blocks until one is
    /// ready and returns the first in that order (reading a signal or a timer consumes it).
    /// `None` if nothing left could ever make one ready.
    pub fn poll(&self, by: Actor, handle: &Handle) -> Option<Ready> {
        let mut st = self.lock();
        self.waiting.store(true, SeqCst);
        let ready = loop {
            let ready = if st.processes[handle.id].state != ProcState::Running {
                Some(Ready::ChildExited)
            } else if std::mem::take(&mut st.sigint_pending) {
                Some(Ready::Interrupt)
            } else if std::mem::take(&mut st.duration_fired) {
                Some(Ready::Duration)
            } else if std::mem::take(&mut st.grace_fired) {
                Some(Ready::Grace)
            } else {
                None
            };
            if let Some(ready) = ready {
                self.note(by, Event::Polled(ready));
                break Some(ready);
            }
            if self.actors.load(SeqCst) == 0 {
                self.note(by, Event::WaitsForever);
                break None;
            }
            st = self.block(st);
        };
        self.waiting.store(false, SeqCst);
        ready
    }

    fn block<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the run left behind.
    pub fn outcome(&self, reason: Option<StopReason>) -> Outcome {
        let st = self.lock();
        let trace = std::mem::take(
            &mut *self.trace.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Outcome {
            reason,
            processes: st.processes.clone(),
            sent: st.sent.clone(),
            interrupt: st.interrupt,
            trace,
        }
    }
}
