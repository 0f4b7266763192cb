//! `fork` for the sandbox's single-threaded processes (the runner, the namespace's PID 1, the
//! workload program), with a pidfd for the child.
//!
//! Why a wrapper: `fork` in a multi-threaded process leaves the child with locks held by threads
//! that no longer exist (malloc, stdio), so anything but async-signal-safe code may deadlock
//! there. The sandbox only forks from processes it exec'd itself and never starts threads in,
//! and [`fork_run`] checks that promise on every call (the thread count from `/proc/self/stat`)
//! instead of trusting it. The child runs an ordinary Rust closure and then `_exit`s: it never
//! returns into the caller's stack, runs no destructors or atexit handlers of the parent, and
//! never flushes a stdio buffer it inherited.
//!
//! Namespaces, mounts, prctl, pidfd and waitid need no `unsafe` (nix and rustix wrap them); the
//! sandbox calls those directly. `clone3` with `set_tid` is in [`crate::clone3`].

use std::io;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Exit code of a forked child whose closure panicked.
pub const PANIC_EXIT_CODE: i32 = 101;

/// A child created by [`fork_run`] or [`crate::clone3::clone3_run`].
#[derive(Debug)]
pub struct Forked {
    /// The child's pid in the caller's PID namespace. It names the child only until the child
    /// is reaped; use `pidfd` to signal or wait.
    pub pid: i32,
    /// A pidfd for the child (`pidfd_open` right after `fork`, or `CLONE_PIDFD`).
    pub pidfd: OwnedFd,
}

/// The number of threads of this process (field 20 of `/proc/self/stat`).
pub fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may contain spaces and parentheses: fields after the LAST ')'
    // are fixed. After it: state (3), ppid (4), ..., num_threads is field 20, index 17 here.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/self/stat"))?;
    rest.split_ascii_whitespace()
        .nth(17)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("no num_threads field in /proc/self/stat"))
}

/// Fails unless this process has exactly one thread.
pub(crate) fn ensure_single_threaded(what: &str) -> io::Result<()> {
    match thread_count()? {
        1 => Ok(()),
        n => Err(io::Error::other(format!(
            "{what} refused: this process has {n} threads; fork is only safe in a \
             single-threaded process (exec a runner first)"
        ))),
    }
}

/// Runs the closure in the child: its return value is the exit code; a panic exits with
/// [`PANIC_EXIT_CODE`]. Never returns.
pub(crate) fn child_body<F: FnOnce() -> i32>(f: F) -> ! {
    let code = catch_unwind(AssertUnwindSafe(f)).unwrap_or(PANIC_EXIT_CODE);
    exit_now(code)
}

/// `_exit(2)`: ends the process at once with `code`.
///
/// For forked children and the sandbox's PID 1: they must not run the parent's atexit handlers
/// or flush stdio buffers they inherited (that would duplicate the parent's pending output), and
/// must not unwind back into the code that forked them.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe, takes a plain int and never returns.
    unsafe { libc::_exit(code) }
}

/// `fork(2)` then `pidfd_open(2)`: runs `f` in a child process whose exit code is `f`'s return
/// value, and returns the child's pid and a pidfd for it.
///
/// Refuses (an `io::Error`, nothing forked) when the process has more than one thread. The
/// pidfd is opened in the parent after `fork`: safe against PID reuse because the child is ours
/// and unreaped until the caller waits for it (no other code of a single-threaded process can
/// reap it meanwhile, unless the caller itself runs `waitpid(-1)` first).
pub fn fork_run<F: FnOnce() -> i32>(f: F) -> io::Result<Forked> {
    ensure_single_threaded("fork")?;
    // SAFETY: the process has a single thread (checked just above), so the child starts with a
    // consistent copy of every lock and allocator state and may run ordinary Rust code. The
    // child never returns from `child_body`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        child_body(f);
    }
    let raw = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::other("fork returned pid 0 in the parent"))?;
    match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(pidfd) => Ok(Forked { pid, pidfd }),
        Err(e) => {
            // Without a handle the child would be unmanaged: kill and reap it (it is our
            // unreaped child, so `pid` still names it).
            let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(raw), rustix::process::WaitOptions::empty());
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_sees_at_least_this_thread() {
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn fork_is_refused_in_a_multi_threaded_test_process() {
        // libtest runs tests on worker threads, so this process has at least two threads.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let err = fork_run(|| 0).unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
        drop(tx);
        let _ = t.join();
    }
}
