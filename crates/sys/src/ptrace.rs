//! ptrace(2), for the few black-box windows seccomp user notification cannot hold: a syscall's
//! EXIT and an instruction (see `racelab-blackbox`). Thin wrappers, every request on a thread id
//! (`tid`) the calling THREAD traces: ptrace requests are accepted from the tracing thread only.
//!
//! Why not nix's `ptrace` module: it resumes only with a `nix::sys::signal::Signal`, which has
//! no real-time signals (a tracer must re-inject every signal unchanged, `SIGRTMIN+3`
//! included), it has no `PTRACE_LISTEN`, and its `waitid` fails with `EINVAL` AFTER consuming a
//! stop whose signal it cannot name (the stop is then lost). Here signals are plain `i32` and a
//! stop is decoded from the raw status ([`Stop::from_status`]).
//!
//! What this module is not for: policy (which threads to trace, when to resume): the lab's
//! session decides. Facts about how ptrace and seccomp user notification combine on this
//! kernel are in `racelab-blackbox`'s docs and pinned by tests/ptrace.rs.

use std::io;

/// A thread id (in the caller's PID namespace).
pub type Tid = i32;

/// `PTRACE_O_*` options, combined with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options(u32);

impl Options {
    /// No option.
    pub const NONE: Options = Options(0);
    /// Syscall stops report `SIGTRAP | 0x80`, told apart from a real SIGTRAP.
    pub const TRACESYSGOOD: Options = Options(libc::PTRACE_O_TRACESYSGOOD as u32);
    /// Trace new threads (and `clone`s whose exit signal is not SIGCHLD).
    pub const TRACECLONE: Options = Options(libc::PTRACE_O_TRACECLONE as u32);
    /// Trace `fork`ed children (clones with exit signal SIGCHLD and no `CLONE_VFORK`).
    pub const TRACEFORK: Options = Options(libc::PTRACE_O_TRACEFORK as u32);
    /// Trace `vfork`ed children (`CLONE_VFORK`, as glibc's `posix_spawn`).
    pub const TRACEVFORK: Options = Options(libc::PTRACE_O_TRACEVFORK as u32);
    /// Stop at `PTRACE_EVENT_EXEC` once a new image is mapped, before its first instruction.
    pub const TRACEEXEC: Options = Options(libc::PTRACE_O_TRACEEXEC as u32);
    /// The kernel SIGKILLs every tracee when the tracer exits: a lab that dies takes its
    /// targets with it.
    pub const EXITKILL: Options = Options(libc::PTRACE_O_EXITKILL as u32);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Options) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Options {
    type Output = Options;
    fn bitor(self, rhs: Options) -> Options {
        Options(self.0 | rhs.0)
    }
}

/// `PTRACE_EVENT_*` of an event stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A `fork` of the tracee (TRACEFORK); the new pid is [`event_msg`].
    Fork,
    /// A `vfork` of the tracee (TRACEVFORK); the new pid is [`event_msg`].
    Vfork,
    /// A new thread (TRACECLONE); its tid is [`event_msg`].
    Clone,
    /// The tracee completed `execve` (TRACEEXEC); the former tid is [`event_msg`].
    Exec,
    /// Another event this module does not enable (its number).
    Other(i32),
}

/// Why a traced thread stopped (`waitid`'s `si_status` for `CLD_TRAPPED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A syscall-entry or syscall-exit stop (with TRACESYSGOOD); [`syscall_info`] tells which.
    Syscall,
    /// A signal-delivery-stop: the thread is about to take this signal. Resume with the same
    /// number to deliver it unchanged, 0 to suppress it.
    Signal(i32),
    /// A group-stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) of a seized thread: resume it with
    /// [`listen`] to keep it stopped until SIGCONT, as without a tracer.
    GroupStop(i32),
    /// `PTRACE_EVENT_STOP` with SIGTRAP: a [`interrupt`] stop, or a new thread's first stop.
    Interrupt,
    /// An event stop (fork, vfork, clone, exec).
    Event(Event),
}

impl Stop {
    /// Decodes a `CLD_TRAPPED` status: `SIGTRAP | 0x80` for a syscall stop, `sig | event << 8`
    /// otherwise (`ptrace(2)`, "Stopped states").
    pub fn from_status(status: i32) -> Stop {
        let sig = status & 0xff;
        let event = (status >> 8) & 0xff;
        if status == libc::SIGTRAP | 0x80 {
            return Stop::Syscall;
        }
        match event {
            0 => Stop::Signal(sig),
            libc::PTRACE_EVENT_STOP if sig == libc::SIGTRAP => Stop::Interrupt,
            libc::PTRACE_EVENT_STOP => Stop::GroupStop(sig),
            libc::PTRACE_EVENT_FORK => Stop::Event(Event::Fork),
            libc::PTRACE_EVENT_VFORK => Stop::Event(Event::Vfork),
            libc::PTRACE_EVENT_CLONE => Stop::Event(Event::Clone),
            libc::PTRACE_EVENT_EXEC => Stop::Event(Event::Exec),
            other => Stop::Event(Event::Other(other)),
        }
    }
}

/// A change of state of a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The thread stopped for the tracer (it waits for a resume request).
    Trapped(Stop),
    /// The thread exited (for a thread group leader: the whole process).
    Exited(i32),
    /// The thread was killed by a signal.
    Killed(i32),
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `ptrace(request, tid, addr, data)` for the requests that take plain integers.
fn request(request: libc::c_uint, tid: Tid, addr: u64, data: u64) -> io::Result<libc::c_long> {
    // SAFETY: every request made through this helper (SEIZE, SETOPTIONS, INTERRUPT, LISTEN,
    // CONT, SYSCALL, SINGLESTEP, DETACH, POKETEXT) reads `addr`/`data` as integers or writes to
    // the TRACEE's memory, never to ours.
    check(unsafe { libc::ptrace(request, tid, addr, data) })
}

/// `PTRACE_SEIZE`: traces `tid` without stopping it (and without the legacy SIGTRAP after
/// `execve`). Each thread of a process is seized on its own; new threads follow with
/// [`Options::TRACECLONE`]. Fails with `EPERM` when the caller may not trace it (another uid,
/// Yama, a tracer already there: a program traced by a debugger cannot be seized).
pub fn seize(tid: Tid, options: Options) -> io::Result<()> {
    request(libc::PTRACE_SEIZE, tid, 0, u64::from(options.bits())).map(drop)
}

/// `PTRACE_SETOPTIONS` (the thread must be stopped).
pub fn set_options(tid: Tid, options: Options) -> io::Result<()> {
    request(libc::PTRACE_SETOPTIONS, tid, 0, u64::from(options.bits())).map(drop)
}

/// `PTRACE_INTERRUPT`: asks a running seized thread to stop ([`Stop::Interrupt`]). A thread
/// blocked in an interruptible syscall is woken: the syscall is interrupted (and restarted when
/// resumed). Does not wake a thread parked in a seccomp notification received under
/// `WAIT_KILLABLE_RECV`.
pub fn interrupt(tid: Tid) -> io::Result<()> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// `PTRACE_LISTEN`: lets a thread in a group-stop stay stopped until SIGCONT (or a new stop),
/// without the tracer keeping it stopped.
pub fn listen(tid: Tid) -> io::Result<()> {
    request(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
}

/// `PTRACE_CONT`, delivering `signal` (0: none): the thread runs until its next signal or
/// event stop.
pub fn cont(tid: Tid, signal: i32) -> io::Result<()> {
    request(libc::PTRACE_CONT, tid, 0, signal as u64).map(drop)
}

/// `PTRACE_SYSCALL`, delivering `signal` (0: none): as [`cont`], and the thread also stops at
/// its next syscall entry or exit.
pub fn syscall(tid: Tid, signal: i32) -> io::Result<()> {
    request(libc::PTRACE_SYSCALL, tid, 0, signal as u64).map(drop)
}

/// `PTRACE_SINGLESTEP`, delivering `signal` (0: none): the thread executes one instruction,
/// then stops with SIGTRAP.
pub fn single_step(tid: Tid, signal: i32) -> io::Result<()> {
    request(libc::PTRACE_SINGLESTEP, tid, 0, signal as u64).map(drop)
}

/// `PTRACE_DETACH`, delivering `signal` (0: none): the thread runs on untraced.
pub fn detach(tid: Tid, signal: i32) -> io::Result<()> {
    request(libc::PTRACE_DETACH, tid, 0, signal as u64).map(drop)
}

/// `PTRACE_GETEVENTMSG`: the new thread's or child's id of an event stop.
pub fn event_msg(tid: Tid) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: the kernel writes one unsigned long to `msg`, alive for the call.
    check(unsafe {
        libc::ptrace(libc::PTRACE_GETEVENTMSG, tid, 0u64, &mut msg as *mut libc::c_ulong)
    })?;
    Ok(msg)
}

/// `PTRACE_PEEKTEXT`: the word of the tracee's memory at `addr` (unaligned is fine on x86-64).
pub fn peek(tid: Tid, addr: u64) -> io::Result<u64> {
    // SAFETY: PEEKTEXT returns the word; errno is the only way to tell -1 from an error, so it
    // is cleared first (errno is thread-local and `__errno_location` always valid).
    let word = unsafe {
        *libc::__errno_location() = 0;
        libc::ptrace(libc::PTRACE_PEEKTEXT, tid, addr, 0u64)
    };
    if word == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(0) {
            return Err(e);
        }
    }
    Ok(word as u64)
}

/// `PTRACE_POKETEXT`: writes the word `word` at `addr` of the tracee's memory (a private copy
/// of a read-only code page is made, as a debugger does).
pub fn poke(tid: Tid, addr: u64, word: u64) -> io::Result<()> {
    request(libc::PTRACE_POKETEXT, tid, addr, word).map(drop)
}

/// `PTRACE_GETREGS`: the thread's general registers.
#[cfg(target_arch = "x86_64")]
fn regs(tid: Tid) -> io::Result<libc::user_regs_struct> {
    let mut regs = std::mem::MaybeUninit::<libc::user_regs_struct>::uninit();
    // SAFETY: the kernel fills the whole `user_regs_struct` on success; on failure it is not
    // read.
    check(unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0u64, regs.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful request above.
    Ok(unsafe { regs.assume_init() })
}

/// The thread's instruction pointer (`rip`).
#[cfg(target_arch = "x86_64")]
pub fn instruction_pointer(tid: Tid) -> io::Result<u64> {
    regs(tid).map(|r| r.rip)
}

/// Sets the thread's instruction pointer (`rip`), the other registers unchanged.
#[cfg(target_arch = "x86_64")]
pub fn set_instruction_pointer(tid: Tid, rip: u64) -> io::Result<()> {
    let mut r = regs(tid)?;
    r.rip = rip;
    // SAFETY: the kernel reads one `user_regs_struct` from `r`, alive for the call.
    check(unsafe { libc::ptrace(libc::PTRACE_SETREGS, tid, 0u64, &r as *const _) }).map(drop)
}

/// The thread's instruction pointer: x86-64 only here.
#[cfg(not(target_arch = "x86_64"))]
pub fn instruction_pointer(_tid: Tid) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Sets the thread's instruction pointer: x86-64 only here.
#[cfg(not(target_arch = "x86_64"))]
pub fn set_instruction_pointer(_tid: Tid, _ip: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// What a syscall stop is about (`PTRACE_GET_SYSCALL_INFO`, Linux 5.3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallInfo {
    /// A syscall-entry stop: the syscall number and its argument registers.
    Entry {
        /// The syscall number.
        nr: u64,
        /// The argument registers.
        args: [u64; 6],
    },
    /// A syscall-exit stop: the return value (a negative errno when `is_error`).
    Exit {
        /// The return value.
        rval: i64,
        /// Whether it is an error.
        is_error: bool,
    },
    /// Not a syscall stop (or a seccomp stop, which this lab does not use).
    Other,
}

/// `PTRACE_GET_SYSCALL_INFO` for a thread in a syscall stop.
pub fn syscall_info(tid: Tid) -> io::Result<SyscallInfo> {
    let mut info = std::mem::MaybeUninit::<libc::ptrace_syscall_info>::zeroed();
    let size = std::mem::size_of::<libc::ptrace_syscall_info>() as u64;
    // SAFETY: the kernel writes at most `size` bytes into `info`, which is that large and
    // zero-initialised (a shorter answer leaves zeroes).
    check(unsafe { libc::ptrace(libc::PTRACE_GET_SYSCALL_INFO, tid, size, info.as_mut_ptr()) })?;
    // SAFETY: zero-initialised, then filled by the kernel: every field is plain data.
    let info = unsafe { info.assume_init() };
    Ok(match info.op {
        libc::PTRACE_SYSCALL_INFO_ENTRY => {
            // SAFETY: `op` says the `entry` member of the union is the one filled.
            let e = unsafe { info.u.entry };
            SyscallInfo::Entry { nr: e.nr, args: e.args }
        }
        libc::PTRACE_SYSCALL_INFO_EXIT => {
            // SAFETY: `op` says the `exit` member of the union is the one filled.
            let x = unsafe { info.u.exit };
            SyscallInfo::Exit { rval: x.sval, is_error: x.is_error != 0 }
        }
        _ => SyscallInfo::Other,
    })
}

/// The `si_code` of the signal a thread in a signal-delivery-stop is about to take
/// (`PTRACE_GETSIGINFO`): `SI_KERNEL` (0x80) for an `int3`, `TRAP_TRACE` (2) after a single
/// step, `SI_USER` (0) from `kill`...
pub fn signal_code(tid: Tid) -> io::Result<i32> {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: the kernel fills one `siginfo_t` in `info`, alive for the call.
    check(unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, tid, 0u64, info.as_mut_ptr()) })?;
    // SAFETY: zero-initialised, then filled by the kernel.
    Ok(unsafe { info.assume_init() }.si_code)
}

/// `waitid(P_PID, tid, WEXITED | WSTOPPED | __WALL | WNOHANG)`: the next change of state of a
/// traced thread, `None` when there is none now. Never blocks: drive it from a SIGCHLD
/// signalfd (every ptrace stop and every exit of a tracee sends the tracer a SIGCHLD; the
/// signals coalesce, so ask every tracee after each wake-up). `ECHILD`: `tid` is not (or no
/// longer) traced by the calling thread's process, nor its child.
///
/// `reap_exit`: whether an exit is consumed. A tracer that is also the process's real parent
/// must leave the leader's exit (`tid` == pid) to its own reaping code (`reap_exit: false`:
/// the exit is reported with `WNOWAIT`, the zombie stays, and the caller stops asking); every
/// other exit must be consumed (an unreaped traced thread keeps its process from ending, and a
/// tracer that is not the parent passes the leader's exit on to the parent by consuming it).
pub fn wait(tid: Tid, reap_exit: bool) -> io::Result<Option<Status>> {
    let peeked = waitid(tid, libc::WNOWAIT)?;
    match peeked {
        None => Ok(None),
        Some(Status::Exited(_) | Status::Killed(_)) if !reap_exit => Ok(peeked),
        // The state peeked stays until the tracer acts: consuming it now reads the same one.
        Some(_) => waitid(tid, 0),
    }
}

fn waitid(tid: Tid, extra: libc::c_int) -> io::Result<Option<Status>> {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    let flags = libc::WEXITED | libc::WSTOPPED | libc::__WALL | libc::WNOHANG | extra;
    // SAFETY: the kernel fills one `siginfo_t` in `info` (zeroed first: with WNOHANG and no
    // change it leaves `si_pid` 0).
    let r = unsafe { libc::waitid(libc::P_PID, tid as libc::id_t, info.as_mut_ptr(), flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised, then possibly filled by the kernel.
    let info = unsafe { info.assume_init() };
    // SAFETY: for SIGCHLD infos (all waitid reports) `si_pid` and `si_status` are the fields
    // the kernel sets.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => Status::Exited(status),
        libc::CLD_KILLED | libc::CLD_DUMPED => Status::Killed(status),
        // CLD_TRAPPED for every ptrace stop; CLD_STOPPED cannot come for a tracee, but decode
        // it the same way rather than lose it.
        _ => Status::Trapped(Stop::from_status(status)),
    }))
}

/// The child's end of a [`gate`]: it waits there (before `execve`) until the tracer has seized
/// it, so the program is traced from its first instruction.
#[derive(Debug)]
pub struct GateWaiter {
    fd: std::os::fd::OwnedFd,
}

/// The tracer's end of a [`gate`].
#[derive(Debug)]
pub struct GateOpener {
    fd: std::os::fd::OwnedFd,
}

/// A one-shot gate (a close-on-exec pipe): the launcher of a traced program calls
/// [`GateWaiter::wait`] between `fork` and `execve`; the lab seizes it, then calls
/// [`GateOpener::open`]. Not for `std::process::Command`'s pre-exec hooks: `spawn` returns only
/// once the child has exec'd, so the lab would never get to open the gate; fork by hand
/// ([`crate::ns::fork_run`], the sandbox's `Init::fork`).
pub fn gate() -> io::Result<(GateWaiter, GateOpener)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((GateWaiter { fd: r }, GateOpener { fd: w }))
}

impl GateWaiter {
    /// Blocks until the tracer opened the gate. `UnexpectedEof` when every opener is gone
    /// (the lab died before opening: do not exec untraced). Async-signal-safe and
    /// allocation-free (one `read(2)`): usable in the child of a multi-threaded process.
    pub fn wait(&self) -> io::Result<()> {
        let mut byte = [0u8; 1];
        loop {
            match rustix::io::read(&self.fd, &mut byte) {
                Ok(1) => return Ok(()),
                Ok(_) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl GateOpener {
    /// Lets the waiting child go on (call it once the child is seized).
    pub fn open(self) -> io::Result<()> {
        rustix::io::write(&self.fd, b"g").map(drop).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_decode_from_the_raw_status() {
        assert_eq!(Stop::from_status(libc::SIGTRAP | 0x80), Stop::Syscall);
        assert_eq!(Stop::from_status(libc::SIGTERM), Stop::Signal(libc::SIGTERM));
        assert_eq!(Stop::from_status(libc::SIGRTMIN() + 3), Stop::Signal(libc::SIGRTMIN() + 3));
        assert_eq!(Stop::from_status(libc::SIGTRAP), Stop::Signal(libc::SIGTRAP));
        let stop = |sig: i32| sig | (libc::PTRACE_EVENT_STOP << 8);
        assert_eq!(Stop::from_status(stop(libc::SIGTRAP)), Stop::Interrupt);
        assert_eq!(Stop::from_status(stop(libc::SIGTSTP)), Stop::GroupStop(libc::SIGTSTP));
        let event = |e: i32| libc::SIGTRAP | (e << 8);
        assert_eq!(Stop::from_status(event(libc::PTRACE_EVENT_CLONE)), Stop::Event(Event::Clone));
        assert_eq!(Stop::from_status(event(libc::PTRACE_EVENT_EXEC)), Stop::Event(Event::Exec));
        assert_eq!(Stop::from_status(event(libc::PTRACE_EVENT_FORK)), Stop::Event(Event::Fork));
        assert_eq!(Stop::from_status(event(libc::PTRACE_EVENT_VFORK)), Stop::Event(Event::Vfork));
        assert_eq!(Stop::from_status(event(6)), Stop::Event(Event::Other(6)));
    }

    #[test]
    fn options_combine() {
        let o = Options::TRACECLONE | Options::EXITKILL;
        assert!(o.contains(Options::EXITKILL) && !o.contains(Options::TRACEFORK));
        assert_eq!(o.bits(), (libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_EXITKILL) as u32);
    }
}
