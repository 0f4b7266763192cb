//! The launcher: the process that becomes the program, with the replay's seccomp filter
//! installed and its listener handed to init.

use crate::lab::{Lines, now, pipe, readable};
use crate::programs::Program;
use nix::sys::signal::Signal;
use racelab_blackbox::{Engine, Session};
use racelab_sandbox::{Child, Init};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The launched program: init's child, and the process the schedule is about.
pub(super) struct Launched {
    /// Init's child: the program itself, or for a PID 1 case the launcher that mirrors it.
    pub(super) child: Child,
    /// A pidfd for the program (signals go through it: never a PID that may be recycled).
    pub(super) target: OwnedFd,
    /// The program's pid in the lab's namespace.
    pub(super) target_pid: i32,
    pub(super) session: Session,
    pub(super) w_in: OwnedFd,
    pub(super) w_out: OwnedFd,
    pub(super) err: OwnedFd,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn launch(
    init: &mut Init,
    program: &Program,
    binary: &Path,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    pid1: bool,
    blocked: &'static [i32],
    engine: Engine,
) -> Result<Launched, String> {
    let filter = racelab_blackbox::filter_for(engine.points(), engine.needs_returns());
    let compiled = filter.compile().map_err(|e| format!("seccomp filter: {e}"))?;
    // Points seccomp cannot express (a held syscall exit, an instruction) need the program
    // traced from its first instruction: the launcher waits at a gate, before its filter and
    // its exec, until init has seized it.
    let (gate_wait, gate_open) = match engine.needs_ptrace() {
        true => {
            let (w, o) = racelab_sys::ptrace::gate().map_err(|e| format!("ptrace gate: {e}"))?;
            (Some(w), Some(o))
        }
        false => (None, None),
    };
    let (w_stdin_r, w_stdin_w) = pipe()?;
    let (w_stdout_r, w_stdout_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    let (lab_sock, child_sock) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let binary = binary.to_path_buf();
    let label = program.label();
    let env_remove = program.start.env_remove.clone();
    let env_set = program.start.env.clone();
    // The body of the process that becomes the program: filter, listener to the lab, exec.
    let exec_target = move || -> i32 {
        if let Some(gate) = &gate_wait
            && gate.wait().is_err()
        {
            return 119;
        }
        let listener = match racelab_sys::seccomp::install_program(
            &compiled,
            racelab_sys::seccomp::ParkedSignals::DeferUntilAnswered,
        ) {
            Ok(l) => l,
            Err(_) => return 120,
        };
        if racelab_sys::fdpass::send_fd(&child_sock, listener.as_fd()).is_err() {
            return 121;
        }
        drop(listener);
        // execve by hand, not Command::exec: std resets the signal mask in the child, and a
        // launcher that blocks signals (case E2L) must hand its mask to the program.
        let _ = racelab_sys::sigaction::restore_default(Signal::SIGPIPE);
        let mut mask = nix::sys::signal::SigSet::empty();
        for &sig in blocked {
            if let Ok(s) = Signal::try_from(sig) {
                mask.add(s);
            }
        }
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&mask),
            None,
        );
        if let Some(dir) = &cwd
            && std::env::set_current_dir(dir).is_err()
        {
            return 126;
        }
        let cstr = |s: &std::ffi::OsStr| std::ffi::CString::new(s.as_encoded_bytes()).ok();
        let Some(path) = cstr(binary.as_os_str()) else { return 126 };
        let mut argv = vec![path.clone()];
        argv.extend(args.iter().filter_map(|a| cstr(std::ffi::OsStr::new(a))));
        let env: Vec<std::ffi::CString> = std::env::vars_os()
            .filter(|(k, _)| {
                !env_remove.iter().any(|r| k == r.as_str())
                    && !env_set.contains_key(&*k.to_string_lossy())
            })
            .chain(env_set.iter().map(|(k, v)| (k.into(), v.into())))
            .filter_map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                cstr(&kv)
            })
            .collect();
        let e = nix::unistd::execve(&path, &argv, &env).err();
        let _ = rustix::io::write(
            std::io::stderr(),
            format!("racelab: exec {label}: {e:?}\n").as_bytes(),
        );
        127
    };
    let child = init
        .fork(move || {
            if nix::unistd::dup2_stdin(&w_stdin_r).is_err()
                || nix::unistd::dup2_stdout(&w_stdout_w).is_err()
                || nix::unistd::dup2_stderr(&err_w).is_err()
            {
                return 122;
            }
            if !pid1 {
                return exec_target();
            }
            // PID 1 of a namespace of its own: the next child this process forks.
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).is_err() {
                return 123;
            }
            let inner = match racelab_sys::ns::fork_run(exec_target) {
                Ok(f) => f,
                Err(_) => return 124,
            };
            let _ = rustix::io::write(&pid_w, format!("{}\n", inner.pid).as_bytes());
            // Mirror the program's end (the lab reads the program's own status from its
            // report; this process only stands between init and the namespace).
            match rustix::process::waitid(
                rustix::process::WaitId::PidFd(inner.pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            ) {
                Ok(Some(st)) => match (st.exit_status(), st.terminating_signal()) {
                    (Some(code), _) => code,
                    (None, Some(sig)) => 128 + sig,
                    _ => 125,
                },
                _ => 125,
            }
        })
        .map_err(|e| format!("fork launcher: {e}"))?;
    // The closure (and the child's ends of the pipes it moved in) was dropped in this process
    // by `fork`: the launcher holds the only copies now, so its death shows as end-of-file.
    // PID 1's pid first: with ptrace the listener comes only once the gate is open.
    let target_pid = if pid1 {
        let mut lines = Lines::new(pid_r);
        let until = now() + 2_000_000_000;
        loop {
            if let Some(l) = lines.next_line() {
                break l.trim().parse::<i32>().map_err(|e| format!("PID 1's pid: {e}"))?;
            }
            if lines.eof || now() > until {
                return Err("the launcher did not report PID 1's pid".into());
            }
            readable(lines.fd.as_fd(), Duration::from_millis(100));
            lines.fill();
        }
    } else {
        child.pid()
    };
    let tracer = match gate_open {
        Some(gate) => {
            let tracer = racelab_blackbox::Tracer::seize(target_pid, &engine)
                .map_err(|e| format!("ptrace: {e}"))?;
            gate.open().map_err(|e| format!("ptrace gate: {e}"))?;
            Some(tracer)
        }
        None => None,
    };
    // The listener, or the launcher's end: bounded.
    if !readable(lab_sock.as_fd(), Duration::from_secs(2)) {
        return Err("the launcher sent no seccomp listener within 2 s".into());
    }
    let listener = racelab_sys::fdpass::recv_fd(&lab_sock).map_err(|e| {
        format!(
            "no seccomp listener from the launcher ({e}); it ended {:?}",
            child.fate(Duration::from_millis(200))
        )
    })?;
    let target = rustix::process::Pid::from_raw(target_pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        .ok_or_else(|| format!("pidfd_open({target_pid}): the program is gone"))?;
    let listener = racelab_sys::seccomp::Listener::from_fd(listener);
    let session = match tracer {
        Some(t) => Session::traced(listener, engine, t),
        None => Session::new(listener, engine),
    };
    Ok(Launched {
        child,
        target,
        target_pid,
        session,
        w_in: w_stdin_w,
        w_out: w_stdout_r,
        err: err_r,
    })
}
