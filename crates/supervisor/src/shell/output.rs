//! Captured output: the pipes the child's standard output and error go to, read while the child
//! runs and drained, within a bound, after its end.
//!
//! Why the bound (H1): a pipe's end of file comes only when every process holding its write end
//! has closed it, and every descendant of the child inherits it. A caller that reads "to the
//! end" after killing the child waits for the whole tree, including a grandchild the kill did
//! not reach (CPython's `subprocess.run` before bpo-37424, Go's `Cmd.Wait` before `WaitDelay`).
//! Here the tree is swept before the drain starts, and the drain gives up after `output_wait`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};

use crate::lab_points::point;
use crate::report::Captured;
use crate::{ErrorKind, SupervisorError};

/// The read ends of the captured streams, and what came through them.
#[derive(Default)]
pub(super) struct Output {
    /// (is stderr, read end); `None` once it reached its end of file.
    streams: Vec<(bool, Option<OwnedFd>)>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

/// The write ends the child gets as its standard output and error (dropped by the caller right
/// after the spawn, so that the child's tree holds the only copies).
#[derive(Default)]
pub(super) struct ChildEnds {
    pub(super) stdout: Option<OwnedFd>,
    pub(super) stderr: Option<OwnedFd>,
}

impl Output {
    /// Pipes for the streams to capture (none: nothing is captured, and nothing is read).
    pub(super) fn create(
        stdout: bool,
        stderr: bool,
    ) -> Result<(Output, ChildEnds), SupervisorError> {
        let mut out = Output::default();
        let mut ends = ChildEnds::default();
        for (wanted, is_stderr) in [(stdout, false), (stderr, true)] {
            if !wanted {
                continue;
            }
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| SupervisorError::new(ErrorKind::Spawn, "pipe for output", e))?;
            rustix::io::ioctl_fionbio(&r, true)
                .map_err(|e| SupervisorError::new(ErrorKind::Spawn, "nonblocking pipe", e))?;
            out.streams.push((is_stderr, Some(r)));
            if is_stderr {
                ends.stderr = Some(w);
            } else {
                ends.stdout = Some(w);
            }
        }
        Ok((out, ends))
    }

    /// The read ends still open, for the event loop's poll.
    pub(super) fn open_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.streams.iter().filter_map(|(_, fd)| fd.as_ref().map(|f| f.as_fd())).collect()
    }

    /// Reads what is there now on every open stream, without blocking; closes a stream at its
    /// end of file.
    pub(super) fn read_available(&mut self) {
        // Nothing captured (`supervise`'s default): no buffer either. Zeroing 8 KiB of stack
        // costs two page faults on a fresh stack, on the path from the child's exit to the
        // report.
        if self.streams.iter().all(|(_, fd)| fd.is_none()) {
            return;
        }
        let mut buf = [0u8; 8192];
        for (is_stderr, slot) in &mut self.streams {
            let Some(fd) = slot.as_ref() else { continue };
            loop {
                match rustix::io::read(fd, &mut buf) {
                    Ok(0) => {
                        *slot = None;
                        break;
                    }
                    Ok(n) => {
                        let into = if *is_stderr { &mut self.stderr } else { &mut self.stdout };
                        let room = Captured::LIMIT.saturating_sub(into.len());
                        into.extend_from_slice(&buf[..n.min(room)]);
                        self.truncated |= n > room;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    // EAGAIN: nothing more now. Another error ends this stream.
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => {
                        *slot = None;
                        break;
                    }
                }
            }
        }
    }

    /// After the child's end (its tree swept): reads on until every stream's end of file or
    /// `wait` has passed, whichever is first, and returns what was captured (`None` when
    /// nothing was). A stream still open at the bound is closed with a warning.
    pub(super) fn drain(&mut self, wait: Duration, warnings: &mut Vec<String>) -> Option<Captured> {
        if self.streams.is_empty() {
            return None;
        }
        point!(output.drain_started);
        let deadline = Instant::now() + wait;
        let complete = loop {
            self.read_available();
            let open = self.open_fds();
            if open.is_empty() {
                point!(output.eof);
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            let mut fds: Vec<PollFd<'_>> =
                open.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    warnings.push(format!("captured output: poll: {e}"));
                    break false;
                }
            }
        };
        if !complete {
            warnings.push(format!(
                "captured output: still held open {wait:?} after the child's end (a process \
                 outside the contained tree has the pipe); stopped reading"
            ));
            for (_, slot) in &mut self.streams {
                *slot = None;
            }
        }
        Some(Captured {
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
            complete,
            truncated: self.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_captured_means_no_pipe_and_no_report() {
        let (mut out, ends) = Output::create(false, false).expect("create");
        assert!(ends.stdout.is_none() && ends.stderr.is_none());
        assert!(out.open_fds().is_empty());
        assert_eq!(out.drain(Duration::from_millis(10), &mut Vec::new()), None);
    }

    #[test]
    fn the_drain_reads_to_the_end_of_file_once_every_writer_is_gone() {
        let (mut out, ends) = Output::create(true, true).expect("create");
        let (w_out, w_err) = (ends.stdout.expect("stdout"), ends.stderr.expect("stderr"));
        rustix::io::write(&w_out, b"out").expect("write");
        rustix::io::write(&w_err, b"err").expect("write");
        drop((w_out, w_err));
        let mut warnings = Vec::new();
        let c = out.drain(Duration::from_secs(5), &mut warnings).expect("captured");
        assert_eq!((c.stdout.as_slice(), c.stderr.as_slice()), (&b"out"[..], &b"err"[..]));
        assert!(c.complete && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_writer_that_stays_bounds_the_drain_and_leaves_a_warning() {
        let (mut out, ends) = Output::create(true, false).expect("create");
        let w = ends.stdout.expect("stdout");
        rustix::io::write(&w, b"partial").expect("write");
        let mut warnings = Vec::new();
        let c = out.drain(Duration::from_millis(20), &mut warnings).expect("captured");
        assert_eq!(c.stdout, b"partial");
        assert!(!c.complete);
        assert!(warnings[0].contains("still held open"), "{warnings:?}");
        drop(w);
    }
}
