//! The lab's side of every replay, shared by both scenarios (instrumented designs in
//! [`crate::scenario`], unmodified programs in [`crate::blackbox`]): init's clock, pipes, a
//! wait on one fd, a nonblocking line reader, the timeline's notes, and the workload's pipes
//! (commands in, report lines out, into the [`ChildLog`]). Below both scenarios, so neither
//! borrows from the other.

use crate::child_log::ChildLog;
use crate::evidence;
use crate::truth::Truth;
use crate::verdict::Verdict;
use racelab_hooks::{Event, EventKind, Trace};
use racelab_sandbox::Victim;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

/// Init's clock: `CLOCK_MONOTONIC` in ns, comparable with the designs' trace.
pub(crate) fn now() -> u64 {
    racelab_sandbox::now_ns()
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Whether `fd` becomes readable (a pidfd: its process ended) within `timeout`.
pub(crate) fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec::try_from(timeout).ok();
    matches!(rustix::event::poll(&mut fds, ts.as_ref()), Ok(n) if n > 0)
}

/// A nonblocking fd read line by line.
pub(crate) struct Lines {
    pub(crate) fd: OwnedFd,
    buf: Vec<u8>,
    pub(crate) eof: bool,
}

impl Lines {
    pub(crate) fn new(fd: OwnedFd) -> Lines {
        let _ = rustix::io::ioctl_fionbio(&fd, true);
        Lines { fd, buf: Vec::new(), eof: false }
    }

    /// Reads everything the fd has now (to `EAGAIN` or end of file).
    pub(crate) fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match rustix::io::read(&self.fd, &mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return, // EAGAIN: nothing more now
            }
        }
    }

    /// The next complete line read so far, without its newline.
    pub(crate) fn next_line(&mut self) -> Option<String> {
        let nl = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=nl).collect();
        Some(String::from_utf8_lossy(&line[..nl]).into_owned())
    }

    /// Nothing is waiting to be read: no partial line kept, and the fd is not readable.
    pub(crate) fn is_idle(&self) -> bool {
        self.buf.is_empty() && !readable(std::os::fd::AsFd::as_fd(&self.fd), Duration::ZERO)
    }

    /// A poll entry for the fd, unless it reached its end.
    pub(crate) fn poll_entry(&self) -> Option<rustix::event::PollFd<'_>> {
        (!self.eof).then(|| rustix::event::PollFd::new(&self.fd, rustix::event::PollFlags::IN))
    }
}

/// The timeline init writes as a replay goes: notes from the lab, the child and the program,
/// all as pid 1, tid 1 (init speaks for them).
#[derive(Debug, Default)]
pub(crate) struct Notes(Vec<Event>);

impl Notes {
    /// Adds a note, timed now.
    pub(crate) fn note(&mut self, actor: &str, subject: &str, detail: String) {
        self.note_at(now(), actor, subject, detail);
    }

    /// Adds a note of something that happened at `time_ns` (init's clock), learnt later.
    pub(crate) fn note_at(&mut self, time_ns: u64, actor: &str, subject: &str, detail: String) {
        self.0.push(Event {
            time_ns,
            pid: 1,
            tid: 1,
            actor: actor.to_string(),
            kind: EventKind::Note,
            subject: subject.to_string(),
            detail,
            peer: None,
        });
    }

    /// The notes merged by time with the design's trace (the hooks' or the syscall points').
    pub(crate) fn merged_with(self, design: Option<&Trace>) -> Trace {
        let mut parts = vec![Trace { events: self.0, dropped: 0 }];
        parts.extend(design.cloned());
        Trace::merge(parts)
    }
}

/// The oracle's conclusion closes the timeline, so a reader sees what broke where.
pub(crate) fn close_timeline(trace: &mut Trace, verdict: &Verdict) {
    trace.events.push(verdict.closing_event(now()));
}

/// The workload's pipes as init holds them: the write end of its commands, the read end of
/// its report lines.
pub(crate) struct ChildPipes {
    input: OwnedFd,
    pub(crate) output: Lines,
}

impl ChildPipes {
    /// `input` is the write end of the child's command pipe, `output` the read end of its
    /// report pipe.
    pub(crate) fn new(input: OwnedFd, output: OwnedFd) -> ChildPipes {
        ChildPipes { input, output: Lines::new(output) }
    }

    /// Reads every line the child wrote so far into its log, each also a note ("child says").
    pub(crate) fn read(&mut self, log: &mut ChildLog, notes: &mut Notes) {
        self.output.fill();
        while let Some(line) = self.output.next_line() {
            log.absorb(&line, now());
            notes.note("child", "says", line);
        }
    }

    /// Sends the child one command line.
    pub(crate) fn write(&self, line: &str) -> Result<(), String> {
        rustix::io::write(&self.input, format!("{line}\n").as_bytes())
            .map(|_| ())
            .map_err(|e| format!("writing to the child: {e}"))
    }
}

/// The end of the lab's `orphans` action, once the child said `orphans-done`: every orphan has
/// exited (bounded), so their SIGCHLDs are pending (and coalesced) when the design goes on.
pub(crate) fn orphans_exited(log: &ChildLog, notes: &mut Notes) -> Result<(), String> {
    evidence::wait_exited(&log.orphans, Duration::from_secs(1))?;
    // Each orphan's pidfd is readable; its writer section (and so its SIGCHLD) may not have
    // ended. One wait covers them all: every one of those sections had begun.
    evidence::exit_notified();
    notes.note("lab", "orphans", format!("{} orphans exited", log.orphans.len()));
    Ok(())
}

/// What became of each victim (I1's ground truth), into the truth and the timeline.
pub(crate) fn record_victim_fates(victims: &[Victim], truth: &mut Truth, notes: &mut Notes) {
    for (pid, fate) in evidence::victim_fates(victims) {
        notes.note("lab", "victim", format!("the process that took PID {pid} ended as {fate:?}"));
        truth.victims.push((pid, fate));
    }
}
