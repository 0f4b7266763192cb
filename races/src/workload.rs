//! The supervised child of every replay ("W"): a small program the lab drives over its stdin and
//! that reports over its stdout, both pipes owned by the lab's init.
//!
//! Reports, one line each: `ready <pid-in-lab-ns> <SigBlk> <SigIgn>` (the mask and ignored set
//! it inherited, so a test can see what the supervisor passed down), `sig <N>` for every signal
//! it receives, `orphan <pid>` per orphan it made, `orphans-done`, `exiting <code>`.
//! Commands: `exit <code>`, `fork-orphans <n>` (double forks whose grandchildren exit at once),
//! `spawn-tree <n>` (children that block until killed).
//!
//! It blocks every catchable signal and reads them from a signalfd: no handler, no window, and a
//! signal is reported even when it is PID 1 of a nested namespace (blocked signals are queued,
//! not dropped). SIGTERM, SIGINT and SIGHUP end it with 128+N unless `--ignore-term`.
//! With `--pdeathsig` it arms PR_SET_PDEATHSIG(SIGKILL) before it says ready, as a worker that
//! ties its life to its parent's does (P2): `ready` then means the signal is armed.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io::{BufRead, Write};
use std::os::fd::AsFd;

/// The hidden first argument that makes a runner binary run the workload.
pub const MODE: &str = "__replay-child";

/// Runs the workload with `args` (after [`MODE`]) and never returns.
pub fn main(args: &[String]) -> ! {
    let ignore_term = args.iter().any(|a| a == "--ignore-term");
    let pdeathsig = args.iter().any(|a| a == "--pdeathsig");
    let code = run(ignore_term, pdeathsig).unwrap_or_else(|e| {
        let _ = writeln!(std::io::stderr(), "workload: {e}");
        125
    });
    racelab_sys::ns::exit_now(code)
}

fn say(line: &str) {
    // One write per line: the lab parses lines, and the pipe may be shared by forked children.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn run(ignore_term: bool, pdeathsig: bool) -> Result<i32, String> {
    // Read what we inherited before changing anything.
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let nspid = status_field(&status, "NSpid:");
    // The leftmost NSpid entry is the pid in the namespace of the /proc we see: the lab's.
    let pid = nspid.split_whitespace().next().unwrap_or("?").to_string();
    let blk = status_field(&status, "SigBlk:");
    let ign = status_field(&status, "SigIgn:");

    let mut all = SigSet::all();
    all.remove(Signal::SIGCHLD); // stays default: we reap our own forks by pidfd below
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None).map_err(|e| e.to_string())?;
    let sfd = SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC).map_err(|e| e.to_string())?;
    if pdeathsig {
        // Tied to the thread that created this process (prctl(2)), whichever one that was.
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    }
    say(&format!("ready {pid} {blk} {ign}"));

    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut stdin_open = true;
    loop {
        let stdin_fd = std::io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let sig_ready = fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
        let in_ready =
            stdin_open && fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        drop(fds);
        if sig_ready && let Ok(Some(info)) = sfd.read_signal() {
            let signo = info.ssi_signo as i32;
            say(&format!("sig {signo}"));
            let stops = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP].map(|s| s as i32);
            if stops.contains(&signo) && !ignore_term {
                say(&format!("exiting {}", 128 + signo));
                return Ok(128 + signo);
            }
        }
        if in_ready {
            match lines.next() {
                Some(Ok(cmd)) => {
                    if let Some(code) = command(cmd.trim())? {
                        say(&format!("exiting {code}"));
                        return Ok(code);
                    }
                }
                _ => stdin_open = false,
            }
        }
    }
}

/// The pid of the process behind `pidfd` as the lab sees it: the `Pid:` line of the pidfd's
/// fdinfo is in the PID namespace of the /proc it is read from (the lab's), whereas fork's
/// return value is in ours, which differs when we run under a PID 1 of a namespace of its own.
fn lab_pid(pidfd: &std::os::fd::OwnedFd, ours: i32) -> i32 {
    use std::os::fd::AsRawFd;
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
        })
        .filter(|p: &i32| *p > 0)
        .unwrap_or(ours)
}

fn number(arg: Option<&str>, what: &str) -> Result<i32, String> {
    arg.and_then(|a| a.parse().ok()).ok_or_else(|| format!("{what} needs a number"))
}

/// Runs one command; `Some(code)` means exit with it.
fn command(cmd: &str) -> Result<Option<i32>, String> {
    let mut words = cmd.split_whitespace();
    match words.next() {
        Some("exit") => Ok(Some(number(words.next(), "exit")?)),
        Some("fork-orphans") => {
            for _ in 0..number(words.next(), "fork-orphans")? {
                let middle = racelab_sys::ns::fork_run(|| match racelab_sys::ns::fork_run(|| 0) {
                    Ok(grandchild) => {
                        say(&format!("orphan {}", lab_pid(&grandchild.pidfd, grandchild.pid)));
                        0
                    }
                    Err(_) => 1,
                })
                .map_err(|e| format!("fork: {e}"))?;
                // Reap the middle child so the grandchild is orphaned now, not later.
                let _ = rustix::process::waitid(
                    rustix::process::WaitId::PidFd(middle.pidfd.as_fd()),
                    rustix::process::WaitIdOptions::EXITED,
                );
            }
            say("orphans-done");
            Ok(None)
        }
        Some("spawn-tree") => {
            let mut pids = Vec::new();
            for _ in 0..number(words.next(), "spawn-tree")? {
                let child = racelab_sys::ns::fork_run(|| {
                    // Every catchable signal is blocked (inherited): only SIGKILL ends it.
                    loop {
                        nix::unistd::pause();
                    }
                })
                .map_err(|e| format!("fork: {e}"))?;
                pids.push(lab_pid(&child.pidfd, child.pid).to_string());
            }
            say(&format!("tree {}", pids.join(" ")));
            Ok(None)
        }
        Some(other) => Err(format!("unknown workload command {other:?}")),
        None => Ok(None),
    }
}
