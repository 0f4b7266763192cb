//! The workload program itself (a runner's `__workload` mode, or [`crate::workload_main`] from
//! another `main`). See [`crate::workload`] for its protocol. Single-threaded, so it may fork;
//! every fork runs a tiny closure and `_exit`s.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use racelab_sys::ns::{exit_now, fork_run};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};

/// Exit code for bad usage or a channel that cannot be opened.
const EXIT_USAGE: i32 = 2;
/// Exit code when its own setup failed (mask, signalfd, prctl).
const EXIT_SETUP: i32 = 125;

struct Options {
    ignore_term: bool,
    pdeathsig: bool,
    report: Option<String>,
    ctl: Option<String>,
    /// Commands run right after `ready`, before the command channel is read.
    first: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        ignore_term: false,
        pdeathsig: false,
        report: None,
        ctl: None,
        first: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ignore-term" => o.ignore_term = true,
            "--pdeathsig" => o.pdeathsig = true,
            "--report" => o.report = Some(it.next().ok_or("--report needs a value")?.clone()),
            "--ctl" => o.ctl = Some(it.next().ok_or("--ctl needs a value")?.clone()),
            "--command" => o.first.push(it.next().ok_or("--command needs a value")?.clone()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

/// Where the report lines go: stdout, or a `--report` channel.
enum Report {
    Stdout(std::io::Stdout),
    Channel(OwnedFd),
}

impl Report {
    /// Writes one line with a single write(2) where it fits (a pipe takes up to PIPE_BUF
    /// bytes at once): lines from the forked children sharing the channel never interleave.
    fn say(&self, line: &str) {
        let fd = match self {
            Report::Stdout(s) => s.as_fd(),
            Report::Channel(fd) => fd.as_fd(),
        };
        let text = format!("{line}\n");
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            match rustix::io::write(fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// Where the commands come from: stdin, or a `--ctl` channel.
enum Commands {
    Stdin(std::io::Stdin),
    Channel(OwnedFd),
}

impl Commands {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Commands::Stdin(s) => s.as_fd(),
            Commands::Channel(fd) => fd.as_fd(),
        }
    }
}

/// Opens a channel: `fd:N` reopens an inherited fd through /proc (a pipe or FIFO gives a new fd
/// on the same pipe), which keeps this crate free of `unsafe` fd adoption; a path is a FIFO or
/// a file.
fn open_channel(spec: &str, write: bool) -> std::io::Result<OwnedFd> {
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

/// Runs the workload with `args` (everything after its mode) and never returns.
pub fn main(args: &[String]) -> ! {
    let code = match parse(args) {
        Ok(opts) => run(&opts).unwrap_or_else(|(code, e)| {
            eprintln!("workload: {e}");
            code
        }),
        Err(e) => {
            eprintln!("workload: {e}");
            EXIT_USAGE
        }
    };
    exit_now(code)
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// Its own pid as the namespace of the /proc it sees numbers it (the leftmost `NSpid`).
fn own_pid(status: &str) -> String {
    status_field(status, "NSpid:").split_whitespace().next().unwrap_or("?").to_string()
}

fn run(opts: &Options) -> Result<i32, (i32, String)> {
    // Read what we inherited before changing anything.
    let setup = |e: String| (EXIT_SETUP, e);
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| setup(e.to_string()))?;
    let pid = own_pid(&status);
    let blk = status_field(&status, "SigBlk:");
    let ign = status_field(&status, "SigIgn:");
    let open = |spec: &str, write: bool| {
        open_channel(spec, write).map_err(|e| (EXIT_USAGE, format!("cannot open {spec}: {e}")))
    };
    let report = match &opts.report {
        Some(spec) => Report::Channel(open(spec, true)?),
        None => Report::Stdout(std::io::stdout()),
    };
    let commands = match &opts.ctl {
        Some(spec) => Commands::Channel(open(spec, false)?),
        None => Commands::Stdin(std::io::stdin()),
    };

    let mut all = SigSet::all();
    all.remove(Signal::SIGCHLD); // stays default: we reap our own forks by pidfd below
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None).map_err(|e| setup(e.to_string()))?;
    let sfd =
        SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC).map_err(|e| setup(e.to_string()))?;
    if opts.pdeathsig {
        // Tied to the thread that created this process (prctl(2)), whichever one that was.
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(|e| setup(format!("prctl(PR_SET_PDEATHSIG): {e}")))?;
    }
    report.say(&format!("ready {pid} {blk} {ign}"));
    serve(opts, &report, &commands, &sfd).map_err(setup)
}

/// Reports signals and runs commands until a stop signal or `exit` ends it; the exit code.
fn serve(
    opts: &Options,
    report: &Report,
    commands: &Commands,
    sfd: &SignalFd,
) -> Result<i32, String> {
    for line in &opts.first {
        if let Some(code) = command(line, report) {
            report.say(&format!("exiting {code}"));
            return Ok(code);
        }
    }
    let commands_fd = commands.fd();
    let mut commands_open = true;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let mut fds = vec![PollFd::new(sfd, PollFlags::IN)];
        if commands_open {
            fds.push(PollFd::new(&commands_fd, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let sig_ready = fds[0].revents().contains(PollFlags::IN);
        let cmd_ready = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        if sig_ready && let Ok(Some(info)) = sfd.read_signal() {
            let signo = info.ssi_signo as i32;
            report.say(&format!("sig {signo}"));
            let stops = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP].map(|s| s as i32);
            if stops.contains(&signo) && !opts.ignore_term {
                report.say(&format!("exiting {}", 128 + signo));
                return Ok(128 + signo);
            }
        }
        if cmd_ready {
            let mut chunk = [0u8; 512];
            let got = match rustix::io::read(commands_fd, &mut chunk) {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                Err(_) => None,
            };
            match got {
                Some(n) => pending.extend_from_slice(&chunk[..n]),
                // No more commands (a last line without its newline still counts); signals
                // are still served.
                None => {
                    commands_open = false;
                    pending.push(b'\n');
                }
            }
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line[..nl]).trim().to_owned();
                if let Some(code) = command(&line, report) {
                    report.say(&format!("exiting {code}"));
                    return Ok(code);
                }
            }
        }
    }
}

/// The pid of the process behind `pidfd` as the lab sees it: the `Pid:` line of the pidfd's
/// fdinfo is in the PID namespace of the /proc it is read from (the lab's), whereas fork's
/// return value is in ours, which differs when we run under a PID 1 of a namespace of its own.
fn lab_pid(pidfd: &OwnedFd, ours: i32) -> i32 {
    use std::os::fd::AsRawFd;
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
        })
        .filter(|p: &i32| *p > 0)
        .unwrap_or(ours)
}

/// Blocks until killed: every catchable signal is blocked (inherited), so only SIGKILL ends it.
fn block_forever() -> i32 {
    loop {
        nix::unistd::pause();
    }
}

/// Waits for a child that exits at once (the middle of a double fork), so its child is
/// orphaned now, not later.
fn reap(child: &racelab_sys::ns::Forked) {
    let _ = rustix::process::waitid(
        rustix::process::WaitId::PidFd(child.pidfd.as_fd()),
        rustix::process::WaitIdOptions::EXITED,
    );
}

/// Runs one command; `Some(code)` means exit with it. A command that fails says `error ...`.
fn command(line: &str, report: &Report) -> Option<i32> {
    let mut words = line.split_whitespace();
    let word = words.next()?;
    let n: Option<i32> = words.next().and_then(|a| a.parse().ok());
    let result = match (word, n) {
        ("exit", Some(code)) => return Some(code),
        ("fork-orphans", Some(k)) => fork_orphans(k, report),
        ("spawn-tree", Some(k)) => spawn_tree(k, report),
        ("setsid-daemon", None) => setsid_daemon(report),
        _ => Err(format!("unknown command {line:?}")),
    };
    if let Err(e) = result {
        report.say(&format!("error {e}"));
    }
    None
}

fn fork_orphans(k: i32, report: &Report) -> Result<(), String> {
    for _ in 0..k {
        // The grandchild exits at once; its parent too, so it is an orphan that the nearest
        // reaper (subreaper or PID 1) must collect.
        let middle = fork_run(|| match fork_run(|| 0) {
            Ok(grandchild) => {
                report.say(&format!("orphan {}", lab_pid(&grandchild.pidfd, grandchild.pid)));
                0
            }
            Err(_) => 1,
        })
        .map_err(|e| format!("fork: {e}"))?;
        reap(&middle);
    }
    report.say("orphans-done");
    Ok(())
}

fn spawn_tree(k: i32, report: &Report) -> Result<(), String> {
    let mut pids = Vec::new();
    for _ in 0..k {
        let child = fork_run(block_forever).map_err(|e| format!("fork: {e}"))?;
        pids.push(lab_pid(&child.pidfd, child.pid).to_string());
    }
    report.say(&format!("tree {}", pids.join(" ")));
    Ok(())
}

fn setsid_daemon(report: &Report) -> Result<(), String> {
    let middle = fork_run(|| {
        let daemon = fork_run(|| {
            let _ = nix::unistd::setsid();
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            report.say(&format!("daemon {}", own_pid(&status)));
            block_forever()
        });
        i32::from(daemon.is_err())
    })
    .map_err(|e| format!("fork: {e}"))?;
    reap(&middle);
    Ok(())
}
