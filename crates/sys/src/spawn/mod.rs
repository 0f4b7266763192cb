//! Spawning a child the way a supervisor needs it: a pidfd from the same syscall that creates
//! the child (`CLONE_PIDFD`; optionally `CLONE_INTO_CGROUP`, `CLONE_NEWPID`), a clean signal mask
//! and dispositions in the child, its own process group or session, then `execvp`.
//!
//! Why not `std::process::Command`: it passes the parent's blocked signal mask to the child (a
//! supervisor blocks the signals it forwards before spawn), it cannot place the child in a
//! cgroup or a new PID namespace atomically, and it gives no pidfd on stable Rust. Here the pidfd
//! comes from the same syscall that creates the child, so no one can reap (and recycle) the PID
//! between creation and the moment the caller holds a handle to it.
//!
//! Two ways to create the child:
//! - vfork style (`clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`, as glibc's `posix_spawn`), the
//!   default: the child borrows the parent's memory on a stack of its own until it execs, so no
//!   page table is copied and neither side takes copy-on-write faults. On this project's VMs a
//!   page fault costs microseconds, and a fork-style spawn from a large process costs hundreds.
//! - fork style (`clone3` without `CLONE_VM`), when the child must start in a cgroup
//!   (`CLONE_INTO_CGROUP` exists only in `clone3`, and `clone3` with `CLONE_VM` needs a stack
//!   switch that only assembly can do), or when the vfork style is refused.
//!
//! Everything the child runs between the clone and `execvp` is async-signal-safe (the caller may
//! be multi-threaded): plain syscalls on memory prepared by the parent, no allocation, no lock.
//! In the vfork style the child shares the parent's memory, so it also writes nothing but its
//! own stack, the failure record the parent reads after the child is gone or has exec'd, and
//! `errno` (the parent thread's TLS slot: harmless, the parent is suspended until then and
//! reads nothing from it).
//!
//! The files, bottom to top: `request.rs` (what is asked and given back), `child.rs` (what the
//! child runs between clone and exec), `vfork.rs` and `fork.rs` (the two styles), and this file
//! (the choice between them, and two helpers for std's `Command`).

mod child;
mod fork;
mod request;
mod vfork;

pub use request::{Grouping, SpawnError, SpawnRequest, Spawned};

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::signal::Signal;

use child::Parent;
use fork::spawn_forked;
use vfork::spawn_vforked;

/// Spawns the child described by `req` and returns once it has exec'd (or failed to).
///
/// The child: places itself (group/session, cgroup fallback), resets `req.reset_signals` to
/// `SIG_DFL`, sets an EMPTY signal mask (the parent's blocked set must not leak: a child with
/// SIGTERM blocked cannot be stopped gracefully), then `execvp`. A pre-exec failure comes back
/// as [`SpawnError::Exec`]; when this returns `Ok` the child has exec'd, so its `setpgid` has
/// happened and signalling its group is meaningful.
///
/// Vfork style unless `req.cgroup_dir` is set (see the module doc); a kernel or seccomp filter
/// that refuses it (ENOSYS, EPERM, EINVAL) gets the fork style instead.
pub fn spawn(req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    let mut argv: Vec<*const libc::c_char> = req.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    // Found by `racelab explore O1 --design reference`: with a new PID namespace the parent
    // could die between the clone and the child's prctl and leave the child (and its tree)
    // running. Held until the child exec'd or failed: then its check is over.
    let lifeline = if req.die_with_parent && req.new_pid_namespace {
        Some(
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| SpawnError::Clone(e.into()))?,
        )
    } else {
        None
    };
    let parent_pid = Parent {
        pid,
        lifeline_read: lifeline.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()),
        lifeline_write: lifeline.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
    };
    if req.cgroup_dir.is_none() {
        match spawn_vforked(req, &argv, parent_pid) {
            Err(SpawnError::Clone(e))
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
                ) => {}
            done => return done,
        }
    }
    spawn_forked(req, &argv, parent_pid)
}

/// Makes `cmd`'s child a session leader (`setsid(2)` between fork and exec): a new session
/// and a new process group, both with the child's pid as id (what bazel's process-wrapper does
/// in its child). std's `Command` offers `process_group` but not a session.
pub fn setsid_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls setsid(2), which is async-signal-safe, and allocates
    // nothing.
    unsafe { cmd.pre_exec(|| rustix::process::setsid().map(|_| ()).map_err(io::Error::from)) };
}

/// Sets `sig`'s disposition to `SIG_DFL` in this process (`sigaction(2)`).
///
/// The supervisor does this for SIGCHLD at start: an inherited `SIG_IGN` for SIGCHLD makes the
/// kernel reap children itself, so their status would be lost (Z2's cousin).
pub fn reset_to_default(sig: Signal) -> io::Result<()> {
    // SAFETY: installing SIG_DFL runs no user code in signal context; it only changes the
    // process-wide disposition, which the caller documents.
    let r = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    r.map(|_| ()).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::AsFd;
    use std::os::fd::OwnedFd;

    fn cstrings(args: &[&str]) -> Vec<CString> {
        args.iter().map(|a| CString::new(*a).unwrap()).collect()
    }

    fn request<'a>(argv: &'a [CString], reset: &'a [Signal]) -> SpawnRequest<'a> {
        SpawnRequest {
            program: &argv[0],
            argv,
            grouping: Grouping::NewGroup,
            cgroup_dir: None,
            cgroup_procs: None,
            new_pid_namespace: false,
            reset_signals: reset,
            reset_all_signals: false,
            die_with_parent: false,
            stdout: None,
            stderr: None,
            child_hook: None,
        }
    }

    fn exit_code(s: &Spawned) -> i32 {
        let st = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(s.pidfd.as_fd()),
            nix::sys::wait::WaitPidFlag::WEXITED,
        );
        match st {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
            other => panic!("unexpected status {other:?}"),
        }
    }

    /// The child's blocked-signal mask, read from its own /proc status after exec.
    fn child_sigblk(vforked: bool) -> String {
        let out =
            std::env::temp_dir().join(format!("racelab-spawn-{}-{vforked}", std::process::id()));
        let script = format!("grep SigBlk /proc/self/status > {}", out.display());
        let argv = cstrings(&["/bin/sh", "-c", &script]);
        let req = request(&argv, &[]);
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let parent = Parent { pid, lifeline_read: -1, lifeline_write: -1 };
        let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argp.push(std::ptr::null());
        // SIGTERM blocked in this thread: it must not leak into the child.
        let mut term = nix::sys::signal::SigSet::empty();
        term.add(Signal::SIGTERM);
        let mut old = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&term),
            Some(&mut old),
        )
        .unwrap();
        let spawned = if vforked {
            spawn_vforked(&req, &argp, parent)
        } else {
            spawn_forked(&req, &argp, parent)
        };
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&old),
            None,
        )
        .unwrap();
        let spawned = spawned.unwrap();
        assert_eq!(exit_code(&spawned), 0);
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        text.trim().to_string()
    }

    #[test]
    fn both_spawn_styles_start_the_child_with_an_empty_signal_mask() {
        for vforked in [true, false] {
            assert_eq!(child_sigblk(vforked), "SigBlk:\t0000000000000000", "vforked: {vforked}");
        }
    }

    #[test]
    fn an_exec_failure_comes_back_as_its_step_and_errno_and_the_child_is_reaped() {
        let argv = cstrings(&["/nonexistent/racelab-program"]);
        let req = request(&argv, &[]);
        match spawn(&req) {
            Err(SpawnError::Exec { step: "exec", error }) => {
                assert_eq!(error.raw_os_error(), Some(libc::ENOENT))
            }
            other => panic!("expected an exec failure, got {other:?}"),
        }
    }

    /// Reads `fd` to EOF (the child and every copy of the write end are gone).
    fn read_all(fd: &OwnedFd) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn both_spawn_styles_redirect_stdout_and_stderr_onto_the_given_fds() {
        for vforked in [true, false] {
            let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let argv = cstrings(&["/bin/sh", "-c", "echo out; echo err >&2"]);
            let mut req = request(&argv, &[]);
            req.stdout = Some(out_w.as_fd());
            req.stderr = Some(err_w.as_fd());
            let parent = Parent {
                pid: rustix::process::getpid().as_raw_nonzero().get(),
                lifeline_read: -1,
                lifeline_write: -1,
            };
            let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            argp.push(std::ptr::null());
            let spawned = if vforked {
                spawn_vforked(&req, &argp, parent)
            } else {
                spawn_forked(&req, &argp, parent)
            }
            .unwrap();
            drop((out_w, err_w));
            assert_eq!(read_all(&out_r), "out\n", "vforked: {vforked}");
            assert_eq!(read_all(&err_r), "err\n", "vforked: {vforked}");
            assert_eq!(exit_code(&spawned), 0);
        }
    }

    static HOOK_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    #[test]
    fn the_child_hook_runs_in_the_vfork_child_on_the_parents_memory() {
        fn hook() {
            // The vfork child shares our memory: the store is visible here afterwards.
            HOOK_RAN.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let argv = cstrings(&["/bin/true"]);
        let mut req = request(&argv, &[]);
        req.child_hook = Some(hook);
        let spawned = spawn(&req).unwrap();
        assert_eq!(exit_code(&spawned), 0);
        assert!(HOOK_RAN.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_vfork_spawn_has_exec_d_in_its_own_group_when_it_returns() {
        // The child stops itself and never exits on its own; we kill it by pidfd.
        let argv = cstrings(&["/bin/sh", "-c", "kill -STOP $$"]);
        let spawned = spawn(&request(&argv, &[Signal::SIGPIPE])).unwrap();
        // `spawn` returns after exec, so setpgid(0, 0) has happened: pgrp (field 5) == pid.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", spawned.pid)).unwrap();
        let after_comm = stat.rsplit_once(')').unwrap().1;
        let pgrp: i32 = after_comm.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, spawned.pid);
        assert!(stat.contains("(sh)"), "not exec'd yet: {stat}");
        rustix::process::pidfd_send_signal(spawned.pidfd.as_fd(), rustix::process::Signal::KILL)
            .unwrap();
        let st = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(spawned.pidfd.as_fd()),
            nix::sys::wait::WaitPidFlag::WEXITED,
        );
        assert!(matches!(st, Ok(nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGKILL, _))));
    }
}
