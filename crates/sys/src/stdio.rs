//! What Rust's runtime start-up does for a Unix process before `main`, for a binary that skips
//! it (`#![no_main]`: `supervise`, whose start-up cost is its figure of merit): standard fds
//! 0-2 open, SIGPIPE ignored. Done here because both need raw libc calls on fds that may not
//! exist, which the rest of the workspace may not make.

use std::io;

use nix::sys::signal::Signal;

/// Opens `/dev/null` on each of fds 0, 1 and 2 that is closed, as std's runtime does before
/// `main` (`std::sys::pal::unix::init`): otherwise the next file opened would land on fd 1 or 2
/// and receive the program's (and its children's) output. One `poll(2)` when all three are
/// open. Errors when `/dev/null` cannot be opened or does not land on the closed fd (std
/// aborts then).
pub fn open_closed_std_fds() -> io::Result<()> {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    loop {
        // SAFETY: `fds` is a live array of three initialised pollfds; a zero timeout never
        // blocks. poll(2) only reads `fd`/`events` and writes `revents`.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
        if r >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // poll itself failed (EINVAL under some sandboxes, ENOMEM): ask each fd, as std does.
        for p in &mut fds {
            // SAFETY: F_GETFD reads the fd's flags, nothing else; a closed fd gives EBADF.
            let closed = unsafe { libc::fcntl(p.fd, libc::F_GETFD) } == -1
                && io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
            p.revents = if closed { libc::POLLNVAL } else { 0 };
        }
        break;
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: a NUL-terminated path literal; the fd returned is owned by the process as
        // fd `p.fd` for good (never closed here), which is the point.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR, 0) };
        if fd != p.fd {
            return Err(if fd < 0 {
                io::Error::last_os_error()
            } else {
                io::Error::other(format!("/dev/null opened as fd {fd}, not {}", p.fd))
            });
        }
    }
    Ok(())
}

/// Sets SIGPIPE to `SIG_IGN`, as std's runtime does before `main`: a write to a closed pipe
/// then fails with `EPIPE` instead of killing the process. A child spawned through
/// [`crate::spawn`] with `reset_all_signals` starts with `SIG_DFL` again.
pub fn ignore_sigpipe() -> io::Result<()> {
    crate::sigaction::ignore(Signal::SIGPIPE).map(|_| ()).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_std_fds_are_left_alone() {
        // The test process has 0-2 open (cargo gives it pipes or a terminal): nothing to do.
        open_closed_std_fds().expect("std fds");
    }
}
