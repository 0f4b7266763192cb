//! Signal dispositions: raw `sigaction(2)` installs of C-ABI handlers, `SIG_DFL`/`SIG_IGN`
//! resets, and signal state to apply in a spawned child between fork and exec.
//!
//! nix marks `sigaction` unsafe because a handler that is not async-signal-safe can corrupt
//! the interrupted thread (a handler that allocates while the interrupted thread holds the
//! allocator lock deadlocks). The wrappers here keep that unsafety in this crate and move the
//! obligation into a documented contract on [`install_handler`]: the handler must only do
//! async-signal-safe work (atomics, raw syscalls such as `kill(2)`/`write(2)`, no allocation,
//! no locks). The legacy replicas need exactly this: their originals install plain C handlers
//! with flags such as `SA_RESETHAND`.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::os::raw::c_int;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// A C-ABI signal handler: `void handler(int signo)`.
pub type Handler = extern "C" fn(c_int);

/// Installs `handler` for `signal` with `flags` (e.g. `SA_RESETHAND`) and an empty `sa_mask`,
/// via `sigaction(2)`. Returns the previous disposition.
///
/// Contract: `handler` must be async-signal-safe (see the module docs). It may run on any
/// thread of the process, at any instruction.
pub fn install_handler(
    signal: Signal,
    handler: Handler,
    flags: SaFlags,
) -> Result<SigAction, Errno> {
    let action = SigAction::new(SigHandler::Handler(handler), flags, SigSet::empty());
    // SAFETY: the handler is a plain `extern "C" fn(c_int)`; the caller's documented contract is
    // that it only does async-signal-safe work, which is what sigaction(2) requires.
    unsafe { nix::sys::signal::sigaction(signal, &action) }
}

/// Resets `signal` to `SIG_DFL` via `sigaction(2)`. Returns the previous disposition.
pub fn restore_default(signal: Signal) -> Result<SigAction, Errno> {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours in signal context.
    unsafe { nix::sys::signal::sigaction(signal, &action) }
}

/// Sets `signal` to `SIG_IGN` via `sigaction(2)`. Returns the previous disposition.
/// An ignored disposition survives `fork` and `execve`.
pub fn ignore(signal: Signal) -> Result<SigAction, Errno> {
    let action = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN runs no code of ours in signal context.
    unsafe { nix::sys::signal::sigaction(signal, &action) }
}

/// Makes `cmd`'s child ignore `signals` (`SIG_IGN` set between fork and exec), as a
/// non-interactive shell does for `cmd &` (SIGINT and SIGQUIT). The parent is unaffected.
pub fn ignore_in_child(cmd: &mut Command, signals: Vec<Signal>) {
    let ignore_all = move || -> Result<(), Errno> {
        for &signal in &signals {
            let action = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
            // SAFETY: SIG_IGN runs no code in signal context; sigaction(2) is
            // async-signal-safe, as required between fork and exec.
            unsafe { nix::sys::signal::sigaction(signal, &action) }?;
        }
        Ok(())
    };
    // SAFETY: the closure only calls sigaction(2), which is async-signal-safe, and allocates
    // nothing (the Vec was built before fork).
    unsafe { cmd.pre_exec(move || ignore_all().map_err(std::io::Error::from)) };
}

/// Unblocks every signal in `cmd`'s child between fork and exec (`sigprocmask(SIG_SETMASK,
/// {})`). std's `Command` passes the parent's blocked mask on to the child; a parent that
/// blocks signals to `sigwait` for them must not hand that mask to the program it runs.
pub fn unblock_all_in_child(cmd: &mut Command) {
    // SAFETY: the closure only calls sigprocmask(2), which is async-signal-safe, and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)
        })
    };
}

/// Sets `PR_SET_PDEATHSIG(signal)` in `cmd`'s child between fork and exec, first calling
/// `before` there (an instrumentation hook: the lab's named point). Nothing re-checks the parent
/// afterwards, as many runners' pre-exec hooks do not: a parent that died between the fork and
/// the prctl is never noticed (prctl(2): the signal fires when the parent dies; the child has
/// already been adopted by then). `before` runs in the forked child: it must be
/// async-signal-safe, or the parent single-threaded.
pub fn parent_death_signal_in_child(cmd: &mut Command, signal: Signal, before: fn()) {
    let Some(sig) = rustix::process::Signal::from_named_raw(signal as i32) else { return };
    // SAFETY: the closure calls `before` (async-signal-safe by the caller's contract) and
    // prctl(2), which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            before();
            rustix::process::set_parent_process_death_signal(Some(sig))
                .map_err(std::io::Error::from)
        })
    };
}

/// The write end of the pipe [`forward_to_pipe`] made: -1 before, -2 while it is being made.
static FORWARD_FD: AtomicI32 = AtomicI32::new(-1);

/// The handler of [`forward_to_pipe`]: one byte, the signal's number, to the pipe. A full pipe
/// drops the byte (the reader has enough to act on already). `errno` is saved and restored: the
/// interrupted thread may be between a failing call and its read of `errno`.
extern "C" fn forward_to_pipe_handler(signo: c_int) {
    let fd = FORWARD_FD.load(Ordering::Acquire);
    if fd < 0 {
        return;
    }
    let saved = Errno::last_raw();
    let byte = signo as u8;
    // SAFETY: write(2) is async-signal-safe; `fd` is the pipe's write end, which is never
    // closed once published (see forward_to_pipe); the buffer is one byte on this stack.
    let _ = unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    Errno::set_raw(saved);
}

/// Forwards `signals` to a pipe, for a multi-threaded process that must act on them in an
/// ordinary thread (a signalfd needs the signals blocked in every thread, which a process that
/// did not create all its threads, such as a libtest binary, cannot arrange). Installs a
/// handler (`SA_RESTART`) that writes each delivered signal's number, one byte, to a
/// close-on-exec pipe, and returns the pipe's read end: read it from a thread of your own.
///
/// The handler replaces any disposition, `SIG_IGN` included. The write end stays open for the
/// life of the process (a handler may run at any moment). Once per process: a second call
/// fails with `EBUSY` and changes nothing.
pub fn forward_to_pipe(signals: &[Signal]) -> Result<OwnedFd, Errno> {
    if FORWARD_FD.compare_exchange(-1, -2, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Err(Errno::EBUSY);
    }
    let made = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).and_then(|(rd, wr)| {
        // A handler must never block: a full pipe drops the byte instead.
        rustix::fs::fcntl_setfl(&wr, rustix::fs::OFlags::NONBLOCK)?;
        Ok((rd, wr))
    });
    let (rd, wr) = match made {
        Ok(p) => p,
        Err(e) => {
            FORWARD_FD.store(-1, Ordering::Release);
            return Err(Errno::from_raw(e.raw_os_error()));
        }
    };
    // Published before any handler is installed, so the first delivery already has its pipe.
    FORWARD_FD.store(wr.into_raw_fd(), Ordering::Release);
    for &signal in signals {
        install_handler(signal, forward_to_pipe_handler, SaFlags::SA_RESTART)?;
    }
    Ok(rd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sig_mask_line(out: &str, key: &str) -> u64 {
        let line = out.lines().find(|l| l.starts_with(key)).expect("status line");
        u64::from_str_radix(line[key.len()..].trim(), 16).expect("hex mask")
    }

    #[test]
    fn ignore_in_child_sets_sig_ign_in_the_child_only() {
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/status").stdout(Stdio::piped());
        ignore_in_child(&mut cmd, vec![Signal::SIGINT, Signal::SIGQUIT]);
        let out = cmd.output().expect("run cat");
        let text = String::from_utf8_lossy(&out.stdout);
        let ign = sig_mask_line(&text, "SigIgn:");
        assert_ne!(ign & (1 << (Signal::SIGINT as u64 - 1)), 0, "{text}");
        assert_ne!(ign & (1 << (Signal::SIGQUIT as u64 - 1)), 0, "{text}");
    }

    #[test]
    fn parent_death_signal_in_child_is_armed_before_exec() {
        fn nothing() {}
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/status").stdout(Stdio::piped());
        parent_death_signal_in_child(&mut cmd, Signal::SIGTERM, nothing);
        // /proc shows no pdeathsig; prove the hook ran by a side effect the child can report:
        // the spawn succeeded, and a failing prctl would have failed it.
        let out = cmd.output().expect("run cat");
        assert!(out.status.success());
    }

    #[test]
    fn forward_to_pipe_writes_each_delivered_signal_once_and_only_once_per_process() {
        let rd = forward_to_pipe(&[Signal::SIGURG]).expect("install");
        assert_eq!(forward_to_pipe(&[Signal::SIGURG]).unwrap_err(), Errno::EBUSY);
        nix::sys::signal::raise(Signal::SIGURG).expect("raise");
        let mut byte = [0u8; 1];
        // Bounded: raise(3) returns after the handler ran in this thread, so the byte is there.
        rustix::fs::fcntl_setfl(&rd, rustix::fs::OFlags::NONBLOCK).expect("nonblocking");
        assert_eq!(rustix::io::read(&rd, &mut byte), Ok(1));
        assert_eq!(i32::from(byte[0]), Signal::SIGURG as i32);
        let _ = restore_default(Signal::SIGURG);
    }

    #[test]
    fn unblock_all_in_child_clears_the_inherited_mask() {
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/status").stdout(Stdio::piped());
        unblock_all_in_child(&mut cmd);
        let out = cmd.output().expect("run cat");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(sig_mask_line(&text, "SigBlk:"), 0, "{text}");
    }
}
