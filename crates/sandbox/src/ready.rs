//! [`ReadyFifo`]: readiness from another process without polling the file system.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::SandboxError;
use crate::proc::poll_readable;

/// A FIFO a process writes a line to once it is set up (a shell script: `echo ready > PATH`; a
/// scenario: [`ReadyFifo::signal`]), which a test waits for with a deadline: no sleep, no
/// polling of the file system.
///
/// The waiting end is opened non-blocking when the FIFO is made, before the writer exists, so
/// the writer's open never blocks, and a FIFO that no writer has opened yet does not read as a
/// hang-up. The FIFO lives in the temporary directory and is removed on drop.
#[derive(Debug)]
pub struct ReadyFifo {
    path: PathBuf,
    read: OwnedFd,
}

impl ReadyFifo {
    /// A fresh FIFO, with the waiting end open.
    pub fn new() -> Result<ReadyFifo, SandboxError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("racelab-ready.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU)
            .map_err(|e| SandboxError::io(format!("mkfifo {}", path.display()), e))?;
        let flags =
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
        match rustix::fs::open(&path, flags, rustix::fs::Mode::empty()) {
            Ok(read) => Ok(ReadyFifo { path, read }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(SandboxError::io(format!("open {}", path.display()), e))
            }
        }
    }

    /// The path the ready process writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until a line was written; `Err(Deadline)` after `within`, `Err(Protocol)` if the
    /// writer closed the FIFO without writing.
    pub fn wait(&self, within: Duration) -> Result<(), SandboxError> {
        let what = || format!("a ready line on {}", self.path.display());
        if !poll_readable(std::os::fd::AsFd::as_fd(&self.read), within)
            .map_err(|e| SandboxError::io(what(), e))?
        {
            return Err(SandboxError::Deadline { what: what(), after: within });
        }
        let mut buf = [0u8; 64];
        match rustix::io::read(&self.read, &mut buf) {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(SandboxError::Protocol {
                message: format!("{} closed without a line", self.path.display()),
                stderr: String::new(),
            }),
            Err(e) => Err(SandboxError::io(what(), e)),
        }
    }

    /// The writer's side: writes one line to the FIFO at `path` (from another process).
    pub fn signal(path: &Path) -> Result<(), SandboxError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"ready\n"))
            .map_err(|e| SandboxError::io(format!("ready line to {}", path.display()), e))
    }
}

impl Drop for ReadyFifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_seen_and_silence_is_a_deadline() {
        let fifo = ReadyFifo::new().unwrap();
        let err = fifo.wait(Duration::from_millis(10)).unwrap_err();
        assert!(matches!(err, SandboxError::Deadline { .. }), "{err}");
        ReadyFifo::signal(fifo.path()).unwrap();
        fifo.wait(Duration::from_secs(1)).unwrap();
        let path = fifo.path().to_path_buf();
        drop(fifo);
        assert!(!path.exists());
    }
}
