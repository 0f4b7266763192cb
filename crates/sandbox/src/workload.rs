//! The workload program, from the caller's side: a [`Workload`] builder for the command line,
//! and [`ReportLine`] to read what it reports.
//!
//! The workload is the design-under-test's child: a small program (the runner executable's
//! hidden `__workload` mode, see `workload_main.rs`) driven over FIFOs or inherited fds:
//! - `--report <path | fd:N>`: it writes one line per event: `ready <pid> sigblk=<hex>
//!   sigign=<hex>` at start (the mask and ignored set it INHERITED at exec, read from
//!   /proc/self/status before it changes anything), `sig <N>` for each signal it receives,
//!   `tree <pid>...`, `orphan <pid>`, `orphans <n>`, `daemon <pid>`, `error <text>`;
//! - `--ctl <path | fd:N>`: it reads commands, one per line: `exit <code>`, `fork-orphans <n>`
//!   (n double-forked grandchildren that exit at once), `spawn-tree <n>` (n children that block
//!   forever), `setsid-daemon` (a grandchild in its own session, blocking forever);
//! - `--ignore-term`: SIGTERM is reported but does not end it.
//!
//! Signals: it blocks HUP, INT, QUIT, USR1, USR2, ALRM and TERM (replacing the inherited mask),
//! resets their dispositions to default and reads them from a signalfd: no handler, no window.
//! After reporting, TERM (unless ignored), INT, HUP and QUIT end it by the same signal (so its
//! wait status says "killed by N"); USR1, USR2 and ALRM are only reported.
//!
//! SIGPIPE: Rust's runtime sets SIGPIPE to ignored before `main`, so the workload cannot see
//! whether it inherited it ignored; its bit (0x1000) is cleared from the reported `sigign`.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::modes::WORKLOAD_MODE;

/// Where the workload reports to, or reads commands from.
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

/// The workload's command line: `runner __workload [--ignore-term] [--report C] [--ctl C]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    runner: PathBuf,
    ignore_term: bool,
    report: Option<Channel>,
    ctl: Option<Channel>,
}

impl Workload {
    /// A workload run by `runner` (an executable whose main calls [`crate::runner_main`]).
    pub fn new(runner: impl Into<PathBuf>) -> Workload {
        Workload { runner: runner.into(), ignore_term: false, report: None, ctl: None }
    }

    /// Whether SIGTERM is only reported (true) or ends the workload (false, the default).
    pub fn ignore_term(mut self, yes: bool) -> Workload {
        self.ignore_term = yes;
        self
    }

    /// Where to report events.
    pub fn report(mut self, channel: impl Into<Channel>) -> Workload {
        self.report = Some(channel.into());
        self
    }

    /// Where to read commands from.
    pub fn ctl(mut self, channel: impl Into<Channel>) -> Workload {
        self.ctl = Some(channel.into());
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
        if let Some(r) = &self.report {
            v.push("--report".into());
            v.push(r.arg());
        }
        if let Some(c) = &self.ctl {
            v.push("--ctl".into());
            v.push(c.arg());
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
    /// It started: its pid (in its own namespace) and the mask / ignored set it inherited.
    Ready {
        /// Its pid.
        pid: i32,
        /// `SigBlk` at exec, as a bit set (bit N-1 = signal N).
        sigblk: u64,
        /// `SigIgn` at exec, SIGPIPE's bit cleared.
        sigign: u64,
    },
    /// It received this signal.
    Signal(i32),
    /// `spawn-tree` started these children.
    Tree(Vec<i32>),
    /// `fork-orphans`: one grandchild left as an orphan.
    Orphan(i32),
    /// `fork-orphans` finished making this many orphans.
    Orphans(usize),
    /// `setsid-daemon`: the daemon's pid.
    Daemon(i32),
    /// A command it could not run.
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
                let mut hex = |key: &str| {
                    it.next()?.strip_prefix(key).and_then(|h| u64::from_str_radix(h, 16).ok())
                };
                let sigblk = hex("sigblk=")?;
                let sigign = hex("sigign=")?;
                Some(ReportLine::Ready { pid, sigblk, sigign })
            }
            "sig" => num(it.next()).map(ReportLine::Signal),
            "tree" => {
                it.map(|p| p.parse().ok()).collect::<Option<Vec<i32>>>().map(ReportLine::Tree)
            }
            "orphan" => num(it.next()).map(ReportLine::Orphan),
            "orphans" => it.next()?.parse().ok().map(ReportLine::Orphans),
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
        let w =
            Workload::new("/r").ignore_term(true).report(PathBuf::from("/a")).ctl(Channel::Fd(7));
        let args: Vec<String> = w.args().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(args, ["__workload", "--ignore-term", "--report", "/a", "--ctl", "fd:7"]);
    }

    #[test]
    fn report_lines_parse() {
        assert_eq!(
            ReportLine::parse("ready 7 sigblk=0000000000004000 sigign=0"),
            Some(ReportLine::Ready { pid: 7, sigblk: 0x4000, sigign: 0 })
        );
        assert_eq!(ReportLine::parse("sig 15"), Some(ReportLine::Signal(15)));
        assert_eq!(ReportLine::parse("tree 3 4"), Some(ReportLine::Tree(vec![3, 4])));
        assert_eq!(ReportLine::parse("daemon 9"), Some(ReportLine::Daemon(9)));
        assert_eq!(ReportLine::parse("bogus"), None);
        assert_eq!(sig_bit(15), 0x4000);
    }
}
