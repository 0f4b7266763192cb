//! The model kernel: a process table whose PIDs are reused, processes that run, become zombies
//! and are reaped, a record of every signal, the supervisor's signal queue and timers, and a
//! trace of every step.
//!
//! Every system call of a model is one method here and takes the kernel lock once, so a system
//! call is atomic (as it is for the real kernel) and is one point where loom may switch
//! threads. What the kernel records beyond what a real kernel keeps
//! (who sent which signal, when the interrupt arrived, the trace) is ghost state: the models
//! never read it, only the checks in [`crate::invariants`] do.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

use crate::record::{
    Actor, Arrival, Death, Delivery, Event, Outcome, Pid, ProcState, Process, Ready, Received,
    Role, Sent, Signal, Timer, Trace,
};
use crate::sync::{Arc, Condvar, JoinHandle, Mutex, MutexGuard, Thread, thread};
use crate::{ChildBehaviour, StopReason};

/// The first PID of the table. The table has [`PID_SLOTS`] entries, `FIRST_PID..`.
pub const FIRST_PID: Pid = 100;

/// Size of the PID table: the child and the innocent process never need more.
pub const PID_SLOTS: usize = 2;

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
    /// How many of the protocol's threads are busy: running, not blocked in `wait` or `poll`,
    /// not sleeping, not done. Only [`Kernel::sleep`] reads it. Starts at 1: the main thread.
    busy: AtomicU32,
    /// The thread in `wait` or `poll` is blocked (and counted idle).
    blocked: AtomicBool,
    /// Threads in [`Kernel::sleep`].
    sleepers: std::sync::Mutex<Vec<Thread>>,
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
            busy: AtomicU32::new(1),
            blocked: AtomicBool::new(false),
            sleepers: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a step that is not a system call (an atomic operation, a decision).
    pub fn note(&self, actor: Actor, event: Event) {
        self.trace.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.push((actor, event));
    }

    /// The calling protocol thread starts (or resumes) work.
    pub fn busy(&self) {
        self.busy.fetch_add(1, SeqCst);
    }

    /// The calling protocol thread stops work: it blocks, or it is done. The last one to
    /// stop wakes the sleepers.
    pub fn idle(&self) {
        if self.busy.fetch_sub(1, SeqCst) == 1 {
            let sleepers =
                std::mem::take(&mut *self.sleepers.lock().unwrap_or_else(|e| e.into_inner()));
            for t in sleepers {
                t.unpark();
            }
        }
    }

    /// The calling protocol thread is about to block; `flag` marks it blocked.
    pub fn blocking(&self, flag: &AtomicBool) {
        flag.store(true, SeqCst);
        self.idle();
    }

    /// Whoever makes a blocked thread runnable counts it busy at once: a woken thread is
    /// about to work, and a long sleep elsewhere must not end before it did. (The woken
    /// thread calls this too, for a wake-up nobody sent.)
    pub fn unblock(&self, flag: &AtomicBool) {
        if flag.swap(false, SeqCst) {
            self.busy();
        }
    }

    /// `sleep(d)` for a `d` longer than any burst of work of the protocol's other threads: it
    /// ends only once none of them is busy (see [`Kernel::busy`]). The outside world (the
    /// child's own exit, the innocent fork, the user) is not held back. A model device: the
    /// count is a std atomic, so it adds no steps for loom to permute; the sleeper parks, and
    /// whoever makes the count 0 unparks it.
    pub fn sleep(&self) {
        self.idle();
        let me = thread::current();
        loop {
            // Listed before the check, so the `idle` that makes the count 0 finds it.
            self.sleepers.lock().unwrap_or_else(|e| e.into_inner()).push(me.clone());
            if self.busy.load(SeqCst) == 0 {
                break;
            }
            thread::park();
        }
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner()).retain(|t| t.id() != me.id());
        self.busy();
    }

    /// Wakes a blocked `wait` or `poll`, if there is one. Called with the lock held.
    fn changed(&self) {
        if self.waiting.load(SeqCst) {
            self.unblock(&self.blocked);
            self.changed.notify_all();
        }
    }

    /// The calling actor ends: it can no longer end the child or wake the supervisor.
    pub fn leave(&self) {
        self.actors.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) {
            let _st = self.lock();
            self.changed();
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
        let arrival = Arrival { child_alive: st.child_alive(), sent_before: st.sent.len() };
        st.interrupt = Some(arrival);
        self.note(by, Event::Interrupt(arrival));
    }

    /// The interrupt reaches the supervisor, which has SIGINT blocked: it waits in the signal
    /// queue (reference). The user's one step, which is also its last.
    pub fn interrupt_queued(&self, by: Actor) {
        let mut st = self.lock();
        self.actors.fetch_sub(1, SeqCst);
        let arrival = Arrival { child_alive: st.child_alive(), sent_before: st.sent.len() };
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
        self.blocking(&self.blocked);
        let st = self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        self.unblock(&self.blocked);
        st
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
