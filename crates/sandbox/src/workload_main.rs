//! The workload program itself (the runner's `__workload` mode). See [`crate::workload`] for
//! its protocol. Single-threaded, so it may fork; every fork runs a tiny closure and `_exit`s.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};

use crate::proc::poll_readable;
use racelab_sys::ns::{exit_now, fork_run};

/// The signals the workload reads from its signalfd.
const REPORTED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
];

/// Exit code for bad usage or a channel that cannot be opened.
const EXIT_USAGE: i32 = 2;

struct Options {
    ignore_term: bool,
    report: Option<String>,
    ctl: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options { ignore_term: false, report: None, ctl: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ignore-term" => o.ignore_term = true,
            "--report" => o.report = Some(it.next().ok_or("--report needs a value")?.clone()),
            "--ctl" => o.ctl = Some(it.next().ok_or("--ctl needs a value")?.clone()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

/// `SigBlk` and `SigIgn` from /proc/self/status.
fn inherited_sets() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (field("SigBlk:"), field("SigIgn:"))
}

fn open_channel(spec: &str, write: bool) -> std::io::Result<OwnedFd> {
    // An inherited fd is reopened through /proc (a pipe or FIFO gives a new fd on the same
    // pipe), which keeps this crate free of `unsafe` fd adoption.
    let path = match spec.strip_prefix("fd:") {
        Some(n) => format!("/proc/self/fd/{n}"),
        None => spec.to_owned(),
    };
    let is_fifo = std::fs::metadata(&path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    });
    let flags = if write {
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE
    } else if is_fifo {
        // Read-write: opening does not wait for a writer, and a writer closing is no EOF.
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    Ok(rustix::fs::open(path.as_str(), flags | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))?)
}

/// Writes one line with a single write(2), so lines from several processes never interleave.
fn say(report: Option<&OwnedFd>, line: &str) {
    if let Some(fd) = report {
        let _ = rustix::io::write(fd, format!("{line}\n").as_bytes());
    }
}

/// The workload's main. Never returns.
pub(crate) fn main(args: &[String]) -> ! {
    // First, before anything changes them: what the parent passed down.
    let (sigblk, sigign) = inherited_sets();
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("workload: {e}");
            exit_now(EXIT_USAGE)
        }
    };
    let open = |spec: &Option<String>, write: bool| match spec {
        None => None,
        Some(s) => match open_channel(s, write) {
            Ok(fd) => Some(fd),
            Err(e) => {
                eprintln!("workload: cannot open {s}: {e}");
                exit_now(EXIT_USAGE)
            }
        },
    };
    let report = open(&opts.report, true);
    let ctl = open(&opts.ctl, false);
    let mut mask = SigSet::empty();
    for s in REPORTED {
        // Default dispositions: an inherited SIG_IGN would discard the signal before the
        // signalfd sees it, and the re-raise below must be fatal.
        let _ = racelab_sys::spawn::reset_to_default(s);
        mask.add(s);
    }
    // Deliberately REPLACE the inherited mask: exactly our signalfd set is blocked.
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None) {
        eprintln!("workload: sigprocmask: {e}");
        exit_now(EXIT_USAGE)
    }
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("workload: signalfd: {e}");
            exit_now(EXIT_USAGE)
        }
    };
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let sigign = sigign & !crate::workload::sig_bit(Signal::SIGPIPE as i32);
    say(report.as_ref(), &format!("ready {pid} sigblk={sigblk:016x} sigign={sigign:016x}"));
    event_loop(&opts, report.as_ref(), ctl, &sfd)
}

fn event_loop(
    opts: &Options,
    report: Option<&OwnedFd>,
    mut ctl: Option<OwnedFd>,
    sfd: &SignalFd,
) -> ! {
    let mut pending = Vec::new();
    let mut keep = Vec::new(); // pidfds of spawn-tree children: kept open, never waited
    loop {
        let mut fds = vec![PollFd::new(sfd, PollFlags::IN)];
        if let Some(c) = &ctl {
            fds.push(PollFd::new(c, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => exit_now(EXIT_USAGE),
        }
        let sig_ready = !fds[0].revents().is_empty();
        let ctl_ready = fds.len() == 2 && !fds[1].revents().is_empty();
        if sig_ready && let Ok(Some(info)) = sfd.read_signal() {
            let n = info.ssi_signo as i32;
            say(report, &format!("sig {n}"));
            let fatal = matches!(
                Signal::try_from(n),
                Ok(Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT)
            ) || (n == Signal::SIGTERM as i32 && !opts.ignore_term);
            if fatal && let Ok(sig) = Signal::try_from(n) {
                die_by(sig);
            }
        }
        if ctl_ready && let Some(c) = &ctl {
            let mut buf = [0u8; 512];
            match rustix::io::read(c, &mut buf) {
                Ok(0) | Err(_) => ctl = None, // no more commands; keep serving signals
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=nl).collect();
                        let line = String::from_utf8_lossy(&line).trim().to_owned();
                        command(&line, report, &mut keep);
                    }
                }
            }
        }
    }
}

/// Ends the process by `sig` (wait status "killed by sig"): it is pending-blocked now.
fn die_by(sig: Signal) -> ! {
    let _ = nix::sys::signal::raise(sig);
    let mut one = SigSet::empty();
    one.add(sig);
    // Unblocking delivers the pending signal with its default (fatal) action.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
    exit_now(128 + sig as i32)
}

/// Blocks forever with an empty mask (so any fatal signal ends it). For tree members.
fn block_forever() -> i32 {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    loop {
        nix::unistd::pause();
    }
}

fn command(line: &str, report: Option<&OwnedFd>, keep: &mut Vec<OwnedFd>) {
    let mut it = line.split_ascii_whitespace();
    let word = it.next().unwrap_or("");
    let n: Option<i64> = it.next().and_then(|s| s.parse().ok());
    match (word, n) {
        ("exit", Some(code)) => exit_now(code as i32),
        ("fork-orphans", Some(k)) => {
            for _ in 0..k {
                let mid = fork_run(|| {
                    // The grandchild exits at once; its parent too, so it is an orphan that
                    // the nearest reaper (subreaper or PID 1) must collect.
                    match fork_run(|| 0) {
                        Ok(g) => {
                            say(report, &format!("orphan {}", g.pid));
                            0
                        }
                        Err(_) => 1,
                    }
                });
                wait_briefly(mid);
            }
            say(report, &format!("orphans {k}"));
        }
        ("spawn-tree", Some(k)) => {
            let mut pids = Vec::new();
            for _ in 0..k {
                match fork_run(block_forever) {
                    Ok(c) => {
                        pids.push(c.pid.to_string());
                        keep.push(c.pidfd);
                    }
                    Err(e) => say(report, &format!("error spawn-tree: {e}")),
                }
            }
            say(report, &format!("tree {}", pids.join(" ")));
        }
        ("setsid-daemon", None) => {
            let mid = fork_run(|| {
                match fork_run(|| {
                    let _ = nix::unistd::setsid();
                    say(report, &format!("daemon {}", rustix::process::getpid().as_raw_nonzero()));
                    block_forever()
                }) {
                    Ok(_) => 0,
                    Err(_) => 1,
                }
            });
            wait_briefly(mid);
        }
        _ => say(report, &format!("error unknown command {line:?}")),
    }
}

/// Reaps an intermediate child of a double fork (it exits at once; bounded anyway).
fn wait_briefly(child: std::io::Result<racelab_sys::ns::Forked>) {
    if let Ok(c) = child
        && poll_readable(c.pidfd.as_fd(), Duration::from_secs(5)).unwrap_or(false)
    {
        let _ = crate::proc::try_reap(c.pidfd.as_fd());
    }
}
