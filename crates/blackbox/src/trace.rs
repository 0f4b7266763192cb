//! The ptrace side of a replay: holds a program's threads at syscall EXITS and at instruction
//! breakpoints, the two places seccomp cannot see. Used only when the schedule names such a
//! point ([`Engine::needs_ptrace`]); the crate docs say why, what it costs and its limits.
//!
//! The [`Tracer`] seizes every thread of the target (`PTRACE_SEIZE` with `TRACECLONE`,
//! `TRACEEXEC`, `TRACESYSGOOD` and `EXITKILL`: a lab that dies takes the tracee with it) and is
//! driven by events: the kernel tells the tracer of every stop with a SIGCHLD, which this
//! thread blocks and reads from a signalfd ([`AsFd`]: put it in the caller's poll set), then
//! [`Tracer::poll`] asks every tracee `waitid(WNOHANG)`. Nothing here sleeps or blocks without
//! a deadline.
//!
//! Every stop that is not a point is answered at once and leaves no trace in what the program
//! sees: a signal-delivery-stop re-injects the same signal, a group-stop is let stay stopped
//! with `PTRACE_LISTEN` (until SIGCONT, as untraced), a new thread is traced and resumed, a
//! syscall stop resumes. The points:
//! - a syscall EXIT: when the schedule names one, threads are resumed with `PTRACE_SYSCALL`
//!   (every syscall then stops twice), the entry's number and arguments are remembered and an
//!   exit of a syscall an `.exit` point names is reported ([`TraceEvent::Exit`]) and held. An
//!   exit with `-ERESTART*` is not one: the syscall will run again.
//! - an instruction: at the `PTRACE_EVENT_EXEC` stop of the program (or at the first stop after
//!   the seize, for a running one) the code points of its image are located in its executable
//!   ([`crate::locate()`]) and an `int3` is written at each. A thread that traps there is put
//!   back on the instruction (`rip - 1`) and held ([`TraceEvent::Code`]); released, it is
//!   single-stepped over the ORIGINAL instruction (the `int3` lifted for that one step) and
//!   the breakpoint is re-armed as long as the schedule needs more arrivals there.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use racelab_hooks::{CodePoint, SyscallPoint, Sysno};
use racelab_sys::ptrace::{self, Event, Options, Status, Stop, SyscallInfo, Tid};

use crate::engine::Engine;
use crate::image::program_label;
use crate::locate::Executable;

/// How long [`Tracer::release`] waits for a single step, and [`Tracer::detach_all`] for the
/// stops it asks for, before it leaves them to later events.
const STEP_DEADLINE: Duration = Duration::from_millis(200);

/// How long [`Tracer::seize`] waits for the first stop of each thread it seized.
const SEIZE_DEADLINE: Duration = Duration::from_secs(1);

const SIGTRAP: i32 = Signal::SIGTRAP as i32;

/// Why tracing could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Blocking SIGCHLD or creating the signalfd failed.
    #[error("SIGCHLD signalfd: {0}")]
    SignalFd(nix::errno::Errno),
    /// `PTRACE_SEIZE` refused (`EPERM`: not ours to trace, or already traced).
    #[error(
        "PTRACE_SEIZE of {tid}: {source} (a traced program, or one the lab may not trace, cannot be seized)"
    )]
    Seize {
        /// The thread.
        tid: Tid,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// The process has no thread left to seize.
    #[error("process {0} is gone")]
    Gone(i32),
    /// A ptrace request on a held thread failed (it died meanwhile).
    #[error("ptrace on {tid}: {source}")]
    Request {
        /// The thread.
        tid: Tid,
        /// The kernel's answer.
        source: std::io::Error,
    },
}

/// What the tracer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// Thread `tid` of `pid` is held at the exit of `syscall` (made with `args`): release it
    /// with [`Tracer::release`].
    Exit {
        /// The thread.
        tid: Tid,
        /// Its process.
        pid: i32,
        /// The syscall.
        syscall: Sysno,
        /// Its argument registers at entry.
        args: [u64; 6],
        /// Its return value.
        rval: i64,
    },
    /// Thread `tid` of `pid` is held at a breakpoint, before the instruction at `address` (an
    /// ELF virtual address of its executable) runs: release it with [`Tracer::release`].
    Code {
        /// The thread.
        tid: Tid,
        /// Its process.
        pid: i32,
        /// The code points armed there.
        points: Vec<CodePoint>,
        /// The instruction.
        address: u64,
    },
    /// A traced thread ended.
    Ended {
        /// The thread.
        tid: Tid,
        /// Its process.
        pid: i32,
    },
    /// Something the replay's trace should say (a breakpoint armed, a point not located).
    Note {
        /// The thread the note is about.
        tid: Tid,
        /// Its process.
        pid: i32,
        /// What it is about.
        subject: String,
        /// What happened.
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Seized (or created) and not stopped since: the next [`Stop::Interrupt`] is expected.
    Starting,
    Running,
    /// Held at a syscall exit.
    HeldExit,
    /// Held at the breakpoint at this runtime address.
    HeldCode(u64),
    /// Single-stepping over the instruction at this runtime address.
    Stepping(u64),
}

#[derive(Debug)]
struct Tracee {
    pid: i32,
    state: State,
    /// The syscall entered last (syscall-stop mode): number and arguments.
    entry: Option<(u64, [u64; 6])>,
}

#[derive(Debug)]
struct Breakpoint {
    vaddr: u64,
    points: Vec<CodePoint>,
    original: u8,
    armed: bool,
}

/// One replay's tracer. Use it from ONE thread: the one that created it (ptrace requests are
/// accepted from the tracing thread only, and the SIGCHLD signalfd reads that thread's mask).
#[derive(Debug)]
pub struct Tracer {
    sigfd: SignalFd,
    old_mask: SigSet,
    /// Stop at syscalls: the schedule holds `.exit` points.
    syscalls: bool,
    exits: Vec<SyscallPoint>,
    code: Vec<(CodePoint, u32)>,
    hits: HashMap<CodePoint, u32>,
    tracees: HashMap<Tid, Tracee>,
    /// Processes whose real parent is this process: their leader's exit is left to it.
    our_children: Vec<i32>,
    /// (pid, runtime address) -> breakpoint.
    breakpoints: HashMap<(i32, u64), Breakpoint>,
    /// Processes whose current image had its code points armed.
    armed: Vec<i32>,
    /// Processes that exec'd under trace: the program runs there.
    execd: Vec<i32>,
    events: VecDeque<TraceEvent>,
    detached: bool,
}

impl Tracer {
    /// Seizes every thread of process `pid` for `engine`'s points, and blocks SIGCHLD in the
    /// calling thread (restored on drop; children forked meanwhile inherit the mask) to read it
    /// from a signalfd. `pid` is the program's LAUNCHER, seized before it execs the program:
    /// it waits at a [`ptrace::gate`] (before it installs the seccomp filter), the lab seizes
    /// it, opens the gate, receives the listener and builds the [`crate::Session`]. Syscall
    /// stops and breakpoints start at its `execve` (`PTRACE_EVENT_EXEC`): the launcher's own
    /// syscalls run unstopped, so nothing must poll this tracer before the listener arrives.
    /// Returns once every thread was seized and resumed (bounded: 1 s per thread).
    pub fn seize(pid: i32, engine: &Engine) -> Result<Tracer, TraceError> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        let mut old_mask = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
            .map_err(TraceError::SignalFd)?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(TraceError::SignalFd)?;
        let mut tracer = Tracer {
            sigfd,
            old_mask,
            syscalls: !engine.exit_points().is_empty(),
            exits: engine.exit_points(),
            code: engine.code_points(),
            hits: HashMap::new(),
            tracees: HashMap::new(),
            our_children: Vec::new(),
            breakpoints: HashMap::new(),
            armed: Vec::new(),
            execd: Vec::new(),
            events: VecDeque::new(),
            detached: false,
        };
        tracer.seize_process(pid)?;
        Ok(tracer)
    }

    fn seize_process(&mut self, pid: i32) -> Result<(), TraceError> {
        if parent_of(pid) == Some(std::process::id() as i32) {
            self.our_children.push(pid);
        }
        let options =
            Options::TRACESYSGOOD | Options::TRACECLONE | Options::TRACEEXEC | Options::EXITKILL;
        // Threads created by a thread not seized yet are missed: list again until no new one.
        loop {
            let tids = threads(pid);
            if tids.is_empty() && self.tracees.is_empty() {
                return Err(TraceError::Gone(pid));
            }
            let new: Vec<Tid> =
                tids.into_iter().filter(|t| !self.tracees.contains_key(t)).collect();
            if new.is_empty() {
                return Ok(());
            }
            for tid in new {
                ptrace::seize(tid, options).map_err(|source| TraceError::Seize { tid, source })?;
                // A first stop, to resume it in the right mode and arm breakpoints.
                let _ = ptrace::interrupt(tid);
                self.tracees.insert(tid, Tracee { pid, state: State::Starting, entry: None });
                // Answered here (bounded): nobody may poll this tracer before the program
                // needs to run on (its launcher sends the listener first).
                self.first_stop(tid);
            }
        }
    }

    /// Waits (bounded) for the first stop of a seized thread and handles it.
    fn first_stop(&mut self, tid: Tid) {
        self.handle_while(tid, SEIZE_DEADLINE, |state| *state == State::Starting);
    }

    /// Handles `tid`'s stops while its state is `pending`, for at most `bound`, waking on the
    /// signalfd: used where the lab must see one thread's next stop before it goes on.
    fn handle_while(&mut self, tid: Tid, bound: Duration, pending: impl Fn(&State) -> bool) {
        let until = Instant::now() + bound;
        while self.tracees.get(&tid).is_some_and(|t| pending(&t.state)) {
            match self.wait_one(tid) {
                Some(status) => self.handle(tid, status),
                None => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.wait_signalfd(left) {
                        return;
                    }
                    // Other tracees' stops stay pending in the kernel: the next `poll` asks
                    // every tracee, whatever the signalfd said.
                    while let Ok(Some(_)) = self.sigfd.read_signal() {}
                }
            }
        }
    }

    /// Whether thread `tid` is traced here.
    pub fn traces(&self, tid: Tid) -> bool {
        self.tracees.contains_key(&tid)
    }

    /// Whether any traced thread is left.
    pub fn is_empty(&self) -> bool {
        self.tracees.is_empty()
    }

    /// Handles every stop and exit pending now (never blocks) and returns what the session
    /// must know, in order.
    pub fn poll(&mut self) -> Vec<TraceEvent> {
        // Empty the signalfd first: a SIGCHLD that comes after this read wakes the caller again.
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        loop {
            let mut any = false;
            let tids: Vec<Tid> = self.tracees.keys().copied().collect();
            for tid in tids {
                while let Some(status) = self.wait_one(tid) {
                    any = true;
                    self.handle(tid, status);
                    if !self.tracees.contains_key(&tid) {
                        break;
                    }
                }
            }
            if !any {
                break;
            }
        }
        self.events.drain(..).collect()
    }

    fn wait_one(&mut self, tid: Tid) -> Option<Status> {
        let pid = self.tracees.get(&tid)?.pid;
        let reap = !(tid == pid && self.our_children.contains(&pid));
        match ptrace::wait(tid, reap) {
            Ok(s) => s,
            Err(_) => {
                // ECHILD: gone without a report we could read (detached by an exec of another
                // thread, or reaped elsewhere).
                self.ended(tid);
                None
            }
        }
    }

    /// Resumes `tid`: with syscall stops once its process exec'd the program (the launcher's
    /// own syscalls before `execve` are not the program's, and nobody may be polling yet).
    fn resume(&self, tid: Tid, signal: i32) {
        let pid = self.tracees.get(&tid).map_or(0, |t| t.pid);
        let _ = if self.syscalls && self.execd.contains(&pid) {
            ptrace::syscall(tid, signal)
        } else {
            ptrace::cont(tid, signal)
        };
    }

    fn ended(&mut self, tid: Tid) {
        if let Some(t) = self.tracees.remove(&tid) {
            self.events.push_back(TraceEvent::Ended { tid, pid: t.pid });
            if !self.tracees.values().any(|o| o.pid == t.pid) {
                self.breakpoints.retain(|(p, _), _| *p != t.pid);
                self.armed.retain(|p| *p != t.pid);
            }
        }
    }

    fn handle(&mut self, tid: Tid, status: Status) {
        let stop = match status {
            Status::Exited(_) | Status::Killed(_) => return self.ended(tid),
            Status::Trapped(stop) => stop,
        };
        let Some(t) = self.tracees.get_mut(&tid) else { return };
        let pid = t.pid;
        if t.state == State::Starting {
            t.state = State::Running;
        }
        match stop {
            Stop::Event(Event::Clone) => {
                if let Ok(new) = ptrace::event_msg(tid) {
                    let entry = None;
                    let new = new as Tid;
                    self.tracees.entry(new).or_insert(Tracee {
                        pid,
                        state: State::Starting,
                        entry,
                    });
                }
                self.resume(tid, 0);
            }
            Stop::Event(Event::Exec) => {
                // A new image: the old one's breakpoints went with its memory. An exec by a
                // non-leader thread takes the leader's tid.
                self.breakpoints.retain(|(p, _), _| *p != pid);
                self.armed.retain(|p| *p != pid);
                if !self.execd.contains(&pid) {
                    self.execd.push(pid);
                }
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.entry = None;
                }
                self.arm(tid, pid);
                self.resume(tid, 0);
            }
            Stop::Event(_) => self.resume(tid, 0),
            Stop::Interrupt => {
                if self.execd.contains(&pid) {
                    self.arm(tid, pid);
                }
                self.resume(tid, 0);
            }
            Stop::GroupStop(_) => {
                let _ = ptrace::listen(tid);
            }
            Stop::Syscall => self.syscall_stop(tid, pid),
            Stop::Signal(sig) => self.signal_stop(tid, pid, sig),
        }
    }

    fn syscall_stop(&mut self, tid: Tid, pid: i32) {
        let info = ptrace::syscall_info(tid).unwrap_or(SyscallInfo::Other);
        let Some(t) = self.tracees.get_mut(&tid) else { return };
        match info {
            SyscallInfo::Entry { nr, args } => t.entry = Some((nr, args)),
            SyscallInfo::Exit { rval, .. } => {
                let entry = t.entry.take();
                // -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK: the
                // syscall runs again after a signal; this is not its exit.
                let restarts = (-516..=-512).contains(&rval);
                let named = entry.and_then(|(nr, args)| {
                    let syscall = Sysno::new(nr as usize)?;
                    self.exits
                        .iter()
                        .any(|p| p.syscall == syscall && p.args_match(&args))
                        .then_some((syscall, args))
                });
                if let (false, Some((syscall, args))) = (restarts, named) {
                    t.state = State::HeldExit;
                    self.events.push_back(TraceEvent::Exit { tid, pid, syscall, args, rval });
                    return;
                }
            }
            SyscallInfo::Other => {}
        }
        self.resume(tid, 0);
    }

    fn signal_stop(&mut self, tid: Tid, pid: i32, sig: i32) {
        let Some(state) = self.tracees.get(&tid).map(|t| t.state) else { return };
        if let State::Stepping(addr) = state {
            if sig == SIGTRAP {
                return self.stepped(tid, pid, addr);
            }
            // A signal came before the step: deliver it and keep stepping.
            let _ = ptrace::single_step(tid, sig);
            return;
        }
        if sig == SIGTRAP
            && let Ok(rip) = ptrace::instruction_pointer(tid)
            && let Some(addr) = rip.checked_sub(1)
            && self.breakpoints.get(&(pid, addr)).is_some_and(|b| b.armed)
        {
            return self.hit(tid, pid, addr);
        }
        // Not ours: the program gets its signal exactly as it would untraced.
        self.resume(tid, sig);
    }

    fn hit(&mut self, tid: Tid, pid: i32, addr: u64) {
        if ptrace::set_instruction_pointer(tid, addr).is_err() {
            return self.resume(tid, 0);
        }
        let (vaddr, points) = match self.breakpoints.get(&(pid, addr)) {
            Some(b) => (b.vaddr, b.points.clone()),
            None => return,
        };
        for p in &points {
            *self.hits.entry(*p).or_insert(0) += 1;
        }
        // Breakpoints whose every point has had the arrivals the schedule needs are lifted now
        // (this thread is stopped: its memory is the process's).
        let done: Vec<(i32, u64)> = self
            .breakpoints
            .iter()
            .filter(|((p, _), b)| *p == pid && b.armed && !self.still_needed(&b.points))
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            self.write_byte(tid, key, false);
        }
        if let Some(t) = self.tracees.get_mut(&tid) {
            t.state = State::HeldCode(addr);
        }
        self.events.push_back(TraceEvent::Code { tid, pid, points, address: vaddr });
    }

    fn still_needed(&self, points: &[CodePoint]) -> bool {
        points.iter().any(|p| {
            let needed = self.code.iter().find(|(c, _)| c == p).map_or(0, |(_, n)| *n);
            self.hits.get(p).copied().unwrap_or(0) < needed
        })
    }

    /// Writes `int3` (`arm`) or the original byte at breakpoint `key`, through stopped thread
    /// `tid`.
    fn write_byte(&mut self, tid: Tid, key: (i32, u64), arm: bool) -> bool {
        let Some(b) = self.breakpoints.get_mut(&key) else { return false };
        let Ok(word) = ptrace::peek(tid, key.1) else { return false };
        let byte = if arm { 0xcc } else { b.original };
        if ptrace::poke(tid, key.1, (word & !0xff) | u64::from(byte)).is_ok() {
            b.armed = arm;
            return true;
        }
        false
    }

    fn stepped(&mut self, tid: Tid, pid: i32, addr: u64) {
        let key = (pid, addr);
        let rearm = self.breakpoints.get(&key).is_some_and(|b| self.still_needed(&b.points));
        if rearm {
            self.write_byte(tid, key, true);
        }
        if let Some(t) = self.tracees.get_mut(&tid) {
            t.state = State::Running;
        }
        self.resume(tid, 0);
    }

    /// Lets held thread `tid` go: from a syscall exit back to user space; from a breakpoint,
    /// over its instruction (single-stepped with the original byte, waited for up to 200 ms,
    /// so the instruction has run when this returns) and on.
    pub fn release(&mut self, tid: Tid) -> Result<(), TraceError> {
        let Some(t) = self.tracees.get(&tid) else { return Ok(()) };
        let (pid, state) = (t.pid, t.state);
        match state {
            State::HeldExit => {
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.state = State::Running;
                }
                self.resume(tid, 0);
                Ok(())
            }
            State::HeldCode(addr) => {
                let key = (pid, addr);
                if self.breakpoints.get(&key).is_some_and(|b| b.armed) {
                    self.write_byte(tid, key, false);
                }
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.state = State::Stepping(addr);
                }
                ptrace::single_step(tid, 0)
                    .map_err(|source| TraceError::Request { tid, source })?;
                self.finish_step(tid);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Waits (bounded, on the signalfd) until `tid` finished its single step.
    fn finish_step(&mut self, tid: Tid) {
        self.handle_while(tid, STEP_DEADLINE, |state| matches!(state, State::Stepping(_)));
    }

    fn wait_signalfd(&self, timeout: Duration) -> bool {
        let ts = rustix::time::Timespec::try_from(timeout).ok();
        let mut fds = [rustix::event::PollFd::new(&self.sigfd, rustix::event::PollFlags::IN)];
        matches!(rustix::event::poll(&mut fds, ts.as_ref()), Ok(n) if n > 0)
    }

    /// Arms the code points of `pid`'s image, once per image, through stopped thread `tid`.
    fn arm(&mut self, tid: Tid, pid: i32) {
        if self.code.is_empty() || self.armed.contains(&pid) {
            return;
        }
        self.armed.push(pid);
        let Some(label) = program_label(tid) else { return };
        let Ok(exe_path) = std::fs::read_link(format!("/proc/{pid}/exe")) else { return };
        let exe = match Executable::read(&exe_path) {
            Ok(e) => e,
            Err(e) => return self.note(tid, pid, label, e.to_string()),
        };
        let points: Vec<CodePoint> =
            self.code.iter().filter(|(c, _)| c.program == label).map(|(c, _)| *c).collect();
        for point in points {
            let located = match exe.locate(&point) {
                Ok(l) => l,
                Err(e) => {
                    self.note(tid, pid, point.to_string(), format!("not armed: {e}"));
                    continue;
                }
            };
            for l in located {
                let Some(addr) =
                    exe.file_offset(l.address).and_then(|o| runtime(pid, &exe_path, o))
                else {
                    let detail = format!("not armed: {:#x} is not mapped", l.address);
                    self.note(tid, pid, point.to_string(), detail);
                    continue;
                };
                let key = (pid, addr);
                if let Some(b) = self.breakpoints.get_mut(&key) {
                    b.points.push(point);
                    continue;
                }
                let Ok(word) = ptrace::peek(tid, addr) else { continue };
                let b = Breakpoint {
                    vaddr: l.address,
                    points: vec![point],
                    original: word as u8,
                    armed: false,
                };
                self.breakpoints.insert(key, b);
                if self.write_byte(tid, key, true) {
                    let detail =
                        format!("int3 at {:#x} ({} in {})", l.address, l.instruction, l.function);
                    self.note(tid, pid, point.to_string(), detail);
                }
            }
        }
    }

    fn note(&mut self, tid: Tid, pid: i32, subject: String, detail: String) {
        self.events.push_back(TraceEvent::Note { tid, pid, subject, detail });
    }

    /// Ends tracing: every thread is stopped (bounded), every breakpoint lifted, every thread
    /// detached with its pending signal. Threads held at a point go on from there.
    pub fn detach_all(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        let until = Instant::now() + STEP_DEADLINE;
        let running: Vec<Tid> = self
            .tracees
            .iter()
            .filter(|(_, t)| {
                matches!(t.state, State::Running | State::Starting | State::Stepping(_))
            })
            .map(|(tid, _)| *tid)
            .collect();
        for tid in &running {
            let _ = ptrace::interrupt(*tid);
        }
        // Collect a stop of each: its signal (if a signal-delivery-stop) is passed on at detach.
        let mut stopped: HashMap<Tid, i32> = self
            .tracees
            .iter()
            .filter(|(_, t)| matches!(t.state, State::HeldExit | State::HeldCode(_)))
            .map(|(tid, _)| (*tid, 0))
            .collect();
        for tid in running {
            loop {
                let pid = self.tracees.get(&tid).map_or(0, |t| t.pid);
                let reap = !(tid == pid && self.our_children.contains(&pid));
                match ptrace::wait(tid, reap) {
                    Ok(Some(Status::Trapped(stop))) => {
                        let sig = match stop {
                            Stop::Signal(s) if s != SIGTRAP => s,
                            _ => 0,
                        };
                        stopped.insert(tid, sig);
                        break;
                    }
                    Ok(Some(_)) | Err(_) => {
                        self.tracees.remove(&tid);
                        break;
                    }
                    Ok(None) => {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() || !self.wait_signalfd(left) {
                            break;
                        }
                        while let Ok(Some(_)) = self.sigfd.read_signal() {}
                    }
                }
            }
        }
        let keys: Vec<(i32, u64)> =
            self.breakpoints.iter().filter(|(_, b)| b.armed).map(|(k, _)| *k).collect();
        for key in keys {
            let through =
                stopped.keys().find(|t| self.tracees.get(t).is_some_and(|x| x.pid == key.0));
            if let Some(&tid) = through {
                self.write_byte(tid, key, false);
            }
        }
        for (tid, sig) in stopped {
            let _ = ptrace::detach(tid, sig);
        }
        self.tracees.clear();
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.detach_all();
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        let _ =
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}

impl AsFd for Tracer {
    /// The SIGCHLD signalfd: readable when some tracee changed state (call [`Tracer::poll`]).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sigfd.as_fd()
    }
}

/// The threads of `pid`, from /proc.
fn threads(pid: i32) -> Vec<Tid> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The runtime address of the instruction at file offset `offset` of `exe` in `pid`'s memory,
/// from its maps.
fn runtime(pid: i32, exe: &Path, offset: u64) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    runtime_in(&maps, &exe.to_string_lossy(), offset)
}

/// [`runtime`] over the text of a maps file. Only an executable mapping counts: the page where
/// the read-only segment ends and the code begins is mapped twice (once read-only, at the end
/// of the first segment; once executable, at the start of the code), and a breakpoint written
/// into the read-only copy is never executed (seen: a store 0x25b into that page ran untrapped).
fn runtime_in(maps: &str, exe: &str, offset: u64) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (range, perms, off) = (f.next()?, f.next()?, f.next()?);
        let path = f.nth(2)?;
        if path != exe || !perms.contains('x') {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let (start, end) =
            (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
        let off = u64::from_str_radix(off, 16).ok()?;
        (offset >= off && offset < off + (end - start)).then(|| start + (offset - off))
    })
}

#[cfg(test)]
mod tests {
    use super::runtime_in;

    /// The layout of a probe binary whose code segment starts mid-page (file offset 0x23040 at
    /// 0x24040): file page 0x23000 is mapped read-only at 0x23000 and executable at 0x24000.
    const MAPS: &str = "\
555555554000-555555578000 r--p 00000000 fe:01 42  /t/probe
555555578000-5555555c2000 r-xp 00023000 fe:01 42  /t/probe
5555555c2000-5555555c7000 r--p 0006c000 fe:01 42  /t/probe
7ffff7d00000-7ffff7d28000 r-xp 00000000 fe:01 7   /lib/libc.so.6
";

    #[test]
    fn an_instruction_is_found_in_the_executable_mapping_of_a_page_mapped_twice() {
        // File offset 0x2325b: in the read-only mapping's range too, but code runs from the
        // executable one.
        assert_eq!(runtime_in(MAPS, "/t/probe", 0x2325b), Some(0x555555578000 + 0x25b));
        assert_eq!(runtime_in(MAPS, "/t/probe", 0x40000), Some(0x555555578000 + 0x1d000));
        assert_eq!(runtime_in(MAPS, "/t/probe", 0x100), None, "not code");
        assert_eq!(runtime_in(MAPS, "/t/other", 0x2325b), None);
    }
}
