//! The workload program, from the caller's side: a [`Workload`] builder for its command line,
//! and [`ReportLine`] to read what it reports. The program itself is `workload_main.rs`, run by
//! a runner executable's hidden `__workload` mode ([`crate::runner_main`]) or, from another
//! `main`, by [`crate::workload_main`].
//!
//! The workload is the supervised child of every replay and every test of a supervisor: one
//! small program, one protocol, for the races scenarios (under an instrumented design, or
//! under an unmodified program such as tini or piano, which pass stdin and stdout through),
//! the legacy replicas' tests and this crate's tests.
//!
//! # Channels
//!
//! It reads commands from its stdin and reports on its stdout, unless told otherwise:
//! `--ctl <path | fd:N>` and `--report <path | fd:N>` name a FIFO, a file (a report is appended
//! to it) or an inherited fd instead.
//!
//! # Report lines, one `write(2)` each
//!
//! - `ready <pid> <SigBlk> <SigIgn>` at start: its pid as the namespace of the /proc it sees
//!   numbers it (the leftmost `NSpid`: the lab's, even under a nested PID 1), and the blocked
//!   and ignored sets it INHERITED at exec, as /proc/self/status prints them (16 hex digits),
//!   read before it changes anything. The SIGPIPE bit (0x1000) of `SigIgn` is set by Rust's
//!   runtime before `main`, not by the parent.
//! - `sig <N>` for every signal it receives;
//! - `exiting <code>` right before it exits;
//! - `orphan <pid>` per orphan it made, then `orphans-done`;
//! - `tree <pid>...` once its tree is up; `daemon <pid>` from the daemon, in its own session;
//! - `error <text>`: a command it could not carry out (it goes on).
//!
//! # Commands, one per line
//!
//! On the command channel, and first of all the ones given with `--command <cmd>` (repeatable;
//! for a parent that passes no usable stdin). `exit <code>`; `fork-orphans <n>` (n double forks whose grandchildren exit at once: orphans
//! for the nearest reaper); `spawn-tree <n>` (n children that only SIGKILL ends);
//! `setsid-daemon` (a grandchild in a session of its own, that only SIGKILL ends). At the end of
//! its commands it keeps serving signals.
//!
//! # Signals
//!
//! It blocks every catchable signal but SIGCHLD and reads them from a signalfd: no handler, no
//! window, and a signal is reported even when it is PID 1 of a nested namespace (blocked
//! signals are queued, not dropped). A signal its parent left ignored is never seen (its bit
//! shows in the ready line's `SigIgn`). SIGTERM, SIGINT and SIGHUP end it with 128+N (after
//! `sig N` and `exiting 128+N`) unless `--ignore-term`; the rest are only reported.
//! With `--pdeathsig` it arms PR_SET_PDEATHSIG(SIGKILL) before it says ready, as a worker that
//! ties its life to its parent's does (P2): `ready` then means the signal is armed.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::modes::WORKLOAD_MODE;

/// Where the workload reports to, or reads commands from, instead of stdout or stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// A path: a FIFO (opened read-write for `--ctl`, so it never sees EOF) or a regular file
    /// (appended to for `--report`).
    Path(PathBuf),
    /// A file descriptor the workload inherits (the caller must keep it open across exec:
    /// std's `Command` cannot; `racelab_sys::spawn` and a forked PID 1 can). The workload
    /// reopens it through `/proc/self/fd/N`.
    Fd(RawFd),
}

impl Channel {
    fn arg(&self) -> OsString {
        match self {
            Channel::Path(p) => p.clone().into_os_string(),
            Channel::Fd(fd) => format!("fd:{fd}").into(),
        }
    }
}

impl From<&Path> for Channel {
    fn from(p: &Path) -> Channel {
        Channel::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for Channel {
    fn from(p: PathBuf) -> Channel {
        Channel::Path(p)
    }
}

/// The workload's command line: `runner __workload [--ignore-term] [--pdeathsig] [--report C]
/// [--ctl C] [--command CMD]...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    runner: PathBuf,
    ignore_term: bool,
    pdeathsig: bool,
    report: Option<Channel>,
    ctl: Option<Channel>,
    first: Vec<String>,
}

impl Workload {
    /// A workload run by `runner` (an executable whose main calls [`crate::runner_main`]),
    /// on stdin and stdout.
    pub fn new(runner: impl Into<PathBuf>) -> Workload {
        Workload {
            runner: runner.into(),
            ignore_term: false,
            pdeathsig: false,
            report: None,
            ctl: None,
            first: Vec::new(),
        }
    }

    /// Whether SIGTERM, SIGINT and SIGHUP are only reported (true) or end the workload with
    /// 128+N (false, the default).
    pub fn ignore_term(mut self, yes: bool) -> Workload {
        self.ignore_term = yes;
        self
    }

    /// Whether it arms PR_SET_PDEATHSIG(SIGKILL) before it says ready.
    pub fn pdeathsig(mut self, yes: bool) -> Workload {
        self.pdeathsig = yes;
        self
    }

    /// Where to report events (default: stdout).
    pub fn report(mut self, channel: impl Into<Channel>) -> Workload {
        self.report = Some(channel.into());
        self
    }

    /// Where to read commands from (default: stdin).
    pub fn ctl(mut self, channel: impl Into<Channel>) -> Workload {
        self.ctl = Some(channel.into());
        self
    }

    /// A command it runs right after `ready`, before it reads its command channel (after the
    /// ones given before).
    pub fn initial_command(mut self, command: impl Into<String>) -> Workload {
        self.first.push(command.into());
        self
    }

    /// The program to exec.
    pub fn program(&self) -> &Path {
        &self.runner
    }

    /// The arguments after the program (`__workload` first).
    pub fn args(&self) -> Vec<OsString> {
        let mut v = vec![OsString::from(WORKLOAD_MODE)];
        if self.ignore_term {
            v.push("--ignore-term".into());
        }
        if self.pdeathsig {
            v.push("--pdeathsig".into());
        }
        if let Some(r) = &self.report {
            v.push("--report".into());
            v.push(r.arg());
        }
        if let Some(c) = &self.ctl {
            v.push("--ctl".into());
            v.push(c.arg());
        }
        for c in &self.first {
            v.push("--command".into());
            v.push(c.into());
        }
        v
    }

    /// A `std::process::Command` for it. Note: std passes the parent's blocked signal mask to
    /// the child; the workload's ready line shows what it got.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runner);
        cmd.args(self.args());
        cmd
    }
}

/// One line of the workload's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportLine {
    /// It started: its pid (as the /proc it sees numbers it) and the mask / ignored set it
    /// inherited.
    Ready {
        /// Its pid.
        pid: i32,
        /// `SigBlk` at exec, as a bit set (bit N-1 = signal N).
        sigblk: u64,
        /// `SigIgn` at exec (SIGPIPE's bit is the Rust runtime's).
        sigign: u64,
    },
    /// It received this signal.
    Signal(i32),
    /// It is about to exit with this code.
    Exiting(i32),
    /// `fork-orphans`: one grandchild left as an orphan.
    Orphan(i32),
    /// `fork-orphans` finished.
    OrphansDone,
    /// `spawn-tree` started these children.
    Tree(Vec<i32>),
    /// `setsid-daemon`: the daemon's pid.
    Daemon(i32),
    /// A command it could not carry out.
    Error(String),
}

impl ReportLine {
    /// Parses one line (without its newline); `None` for anything else.
    pub fn parse(line: &str) -> Option<ReportLine> {
        let mut it = line.split_ascii_whitespace();
        let word = it.next()?;
        let num = |s: Option<&str>| s.and_then(|s| s.parse::<i32>().ok());
        match word {
            "ready" => {
                let pid = num(it.next())?;
                let mut hex = || u64::from_str_radix(it.next()?, 16).ok();
                let sigblk = hex()?;
                let sigign = hex()?;
                Some(ReportLine::Ready { pid, sigblk, sigign })
            }
            "sig" => num(it.next()).map(ReportLine::Signal),
            "exiting" => num(it.next()).map(ReportLine::Exiting),
            "orphan" => num(it.next()).map(ReportLine::Orphan),
            "orphans-done" => Some(ReportLine::OrphansDone),
            "tree" => {
                it.map(|p| p.parse().ok()).collect::<Option<Vec<i32>>>().map(ReportLine::Tree)
            }
            "daemon" => num(it.next()).map(ReportLine::Daemon),
            "error" => Some(ReportLine::Error(line["error".len()..].trim().to_owned())),
            _ => None,
        }
    }
}

/// Bit for signal `sig` in a /proc `SigBlk`/`SigIgn` set.
pub fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_lists_every_option() {
        let w = Workload::new("/r")
            .ignore_term(true)
            .pdeathsig(true)
            .report(PathBuf::from("/a"))
            .ctl(Channel::Fd(7))
            .initial_command("exit 3");
        let args: Vec<String> = w.args().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            args,
            [
                "__workload",
                "--ignore-term",
                "--pdeathsig",
                "--report",
                "/a",
                "--ctl",
                "fd:7",
                "--command",
                "exit 3"
            ]
        );
        assert_eq!(Workload::new("/r").args(), ["__workload"]);
    }

    #[test]
    fn report_lines_parse() {
        assert_eq!(
            ReportLine::parse("ready 7 0000000000004000 0000000180001000"),
            Some(ReportLine::Ready { pid: 7, sigblk: 0x4000, sigign: 0x1_8000_1000 })
        );
        assert_eq!(ReportLine::parse("sig 15"), Some(ReportLine::Signal(15)));
        assert_eq!(ReportLine::parse("exiting 143"), Some(ReportLine::Exiting(143)));
        assert_eq!(ReportLine::parse("orphan 12"), Some(ReportLine::Orphan(12)));
        assert_eq!(ReportLine::parse("orphans-done"), Some(ReportLine::OrphansDone));
        assert_eq!(ReportLine::parse("tree 3 4"), Some(ReportLine::Tree(vec![3, 4])));
        assert_eq!(ReportLine::parse("daemon 9"), Some(ReportLine::Daemon(9)));
        assert_eq!(ReportLine::parse("error no such"), Some(ReportLine::Error("no such".into())));
        assert_eq!(ReportLine::parse("bogus"), None);
        assert_eq!(sig_bit(15), 0x4000);
    }
}
