//! The workload program on real processes: ready line, signals, commands.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{SigSet, Signal};
use racelab_sandbox::workload::sig_bit;
use racelab_sandbox::{ReportLine, Workload};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};

const T: Duration = Duration::from_secs(5);

/// A running workload with its report and control FIFOs.
struct Running {
    child: KillOnDrop,
    pidfd: OwnedFd,
    report: OwnedFd,
    ctl: OwnedFd,
    buf: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn fifo(dir: &Path, name: &str) -> (std::path::PathBuf, OwnedFd) {
    let p = dir.join(name);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Read-write: opening never blocks, and the other side closing is no EOF.
    let fd = rustix::fs::open(&p, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).unwrap();
    (p, fd)
}

fn start(ignore_term: bool, block: Option<Signal>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (rp, report) = fifo(dir.path(), "report");
    let (cp, ctl) = fifo(dir.path(), "ctl");
    let mut cmd = Workload::new(RUNNER).ignore_term(ignore_term).report(rp).ctl(cp).command();
    // std passes this thread's blocked mask to the child: block around spawn, then restore.
    let mut set = SigSet::empty();
    if let Some(s) = block {
        set.add(s);
    }
    set.thread_block().unwrap();
    let spawned = cmd.spawn();
    set.thread_unblock().unwrap();
    let child = spawned.unwrap();
    let pidfd =
        rustix::process::pidfd_open(Pid::from_raw(child.id() as i32).unwrap(), PidfdFlags::empty())
            .unwrap();
    Running { child: KillOnDrop(child), pidfd, report, ctl, buf: Vec::new(), _dir: dir }
}

impl Running {
    fn line(&mut self) -> ReportLine {
        let deadline = Instant::now() + T;
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line).trim().to_owned();
                return ReportLine::parse(&text).unwrap_or_else(|| panic!("bad line {text:?}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no report line within {T:?}");
            let mut fds = [PollFd::new(&self.report, PollFlags::IN)];
            rustix::event::poll(&mut fds, Some(&Timespec::try_from(left).unwrap())).unwrap();
            let mut b = [0u8; 512];
            if !fds[0].revents().is_empty() {
                let n = rustix::io::read(&self.report, &mut b).unwrap();
                self.buf.extend_from_slice(&b[..n]);
            }
        }
    }

    fn send(&self, cmd: &str) {
        rustix::io::write(&self.ctl, format!("{cmd}\n").as_bytes()).unwrap();
    }

    fn signal(&self, sig: Signal) {
        let s = rustix::process::Signal::from_named_raw(sig as i32).unwrap();
        rustix::process::pidfd_send_signal(&self.pidfd, s).unwrap();
    }

    /// (exit code, terminating signal) once it ended.
    fn end(&mut self) -> (Option<i32>, Option<i32>) {
        assert!(ended_within(&self.pidfd, T), "the workload did not end");
        let st = rustix::process::waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED)
            .unwrap()
            .unwrap();
        (st.exit_status(), st.terminating_signal())
    }
}

#[test]
fn the_ready_line_shows_the_inherited_mask_and_the_workload_still_gets_the_signal() {
    let mut w = start(false, Some(Signal::SIGUSR2));
    let ReportLine::Ready { pid, sigblk, .. } = w.line() else { panic!("no ready line") };
    assert_eq!(pid, w.child.0.id() as i32);
    assert_eq!(sigblk & sig_bit(Signal::SIGUSR2 as i32), sig_bit(Signal::SIGUSR2 as i32));
    w.signal(Signal::SIGUSR2);
    assert_eq!(w.line(), ReportLine::Signal(Signal::SIGUSR2 as i32));
    w.signal(Signal::SIGTERM);
    assert_eq!(w.line(), ReportLine::Signal(15));
    assert_eq!(w.line(), ReportLine::Exiting(128 + 15));
    assert_eq!(w.end(), (Some(128 + 15), None), "SIGTERM ends it with 128 + 15");
}

#[test]
fn with_ignore_term_sigterm_is_reported_and_exit_comes_from_the_control_pipe() {
    let mut w = start(true, None);
    assert!(matches!(w.line(), ReportLine::Ready { sigblk: 0, .. }));
    w.signal(Signal::SIGTERM);
    assert_eq!(w.line(), ReportLine::Signal(15));
    w.send("bogus");
    assert!(matches!(w.line(), ReportLine::Error(_)), "an unknown command is reported");
    w.send("exit 3");
    assert_eq!(w.line(), ReportLine::Exiting(3));
    assert_eq!(w.end(), (Some(3), None));
}

#[test]
fn tree_daemon_and_orphan_commands_make_the_processes_they_announce() {
    let mut w = start(false, None);
    let ReportLine::Ready { pid, .. } = w.line() else { panic!("no ready line") };
    let mut guards = Vec::new();
    w.send("spawn-tree 3");
    let ReportLine::Tree(tree) = w.line() else { panic!("no tree line") };
    assert_eq!(tree.len(), 3);
    for p in &tree {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        let ppid: i32 =
            stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(ppid, pid, "tree member {p} is the workload's child");
        guards.push(open(*p));
    }
    w.send("setsid-daemon");
    let ReportLine::Daemon(d) = w.line() else { panic!("no daemon line") };
    guards.push(open(d));
    let stat = std::fs::read_to_string(format!("/proc/{d}/stat")).unwrap();
    let session: i32 =
        stat.rsplit_once(')').unwrap().1.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(session, d, "the daemon leads its own session");
    w.send("fork-orphans 2");
    let mut orphans = 0;
    loop {
        match w.line() {
            ReportLine::Orphan(_) => orphans += 1,
            ReportLine::OrphansDone => {
                assert_eq!(orphans, 2);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for g in &guards {
        rustix::process::pidfd_send_signal(g, rustix::process::Signal::KILL).unwrap();
        assert!(ended_within(g, T));
    }
}

/// A pidfd for a live descendant (started by this test), to kill it at the end.
fn open(pid: i32) -> OwnedFd {
    rustix::process::pidfd_open(Pid::from_raw(pid).unwrap(), PidfdFlags::empty()).unwrap()
}

#[test]
fn by_default_it_reads_stdin_and_reports_on_stdout() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let mut child = Workload::new(RUNNER)
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || ReportLine::parse(&lines.next().unwrap().unwrap());
    assert!(matches!(next(), Some(ReportLine::Ready { .. })));
    writeln!(stdin, "exit 4").unwrap();
    assert_eq!(next(), Some(ReportLine::Exiting(4)));
    assert_eq!(child.wait().unwrap().code(), Some(4));
}
