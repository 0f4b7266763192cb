//! Passing one fd over a Unix socket (`SCM_RIGHTS`), e.g. a seccomp listener from the launcher
//! to the lab.
//!
//! No `unsafe` here: rustix's `sendmsg`/`recvmsg` take the control-message buffer from the
//! caller, so [`send_fd`] works on a stack buffer and allocates nothing: it is safe between
//! `fork` and `execve` of a multi-threaded parent (rustix issues the raw syscall itself, no libc
//! lock). nix's `sendmsg` would not do there: it allocates the control buffer (`vec!`) on every
//! call. It lives in this crate, next to [`crate::seccomp`], because the launcher calls it on
//! that post-fork path.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The one data byte that carries the fd (a stream socket cannot carry ancillary data alone).
const TAG: u8 = b'F';

/// Why [`recv_fd`] got no fd.
#[derive(Debug, thiserror::Error)]
pub enum RecvFdError {
    /// End of stream: the peer closed its end without sending (it died or failed before).
    #[error("the peer closed the socket without sending an fd")]
    PeerClosed,
    /// A message arrived without exactly one fd (or with truncated control data).
    #[error("the message carried no fd, or more than one")]
    NoFd,
    /// `recvmsg(2)` failed.
    #[error("recvmsg: {0}")]
    Io(#[from] io::Error),
}

/// `sendmsg(2)` of one byte with `fd` attached (`SCM_RIGHTS`). The receiver gets a new fd for
/// the same open file; the sender's `fd` stays open (close it if it was only for passing).
///
/// Allocation-free and async-signal-safe (see the module docs). `EINTR` is retried.
pub fn send_fd(socket: impl AsFd, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
    }
    let iov = [IoSlice::new(&[TAG])];
    loop {
        match rustix::net::sendmsg(socket.as_fd(), &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `recvmsg(2)` of one message sent by [`send_fd`]: returns the fd, close-on-exec
/// (`MSG_CMSG_CLOEXEC`). Blocks until a message or end of stream arrives: poll the socket
/// first to bound the wait. `EINTR` is retried.
pub fn recv_fd(socket: impl AsFd) -> Result<OwnedFd, RecvFdError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let msg = loop {
        let mut iov = [IoSliceMut::new(&mut byte)];
        match rustix::net::recvmsg(socket.as_fd(), &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
        {
            Ok(m) => break m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(RecvFdError::Io(e.into())),
        }
    };
    // Take every fd that arrived (so none leaks open), then judge.
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(got) = m {
            fds.extend(got);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Err(RecvFdError::PeerClosed);
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() != 1 {
        return Err(RecvFdError::NoFd);
    }
    Ok(fds.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap()
    }

    #[test]
    fn a_passed_pipe_end_works_in_the_receiver_and_is_cloexec() {
        let (a, b) = pair();
        let (rd, wr) = rustix::pipe::pipe().unwrap();
        send_fd(&a, wr.as_fd()).unwrap();
        drop(wr);
        let got = recv_fd(&b).unwrap();
        let flags = rustix::io::fcntl_getfd(&got).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        rustix::io::write(&got, b"hi").unwrap();
        drop(got);
        let mut buf = [0u8; 4];
        assert_eq!(rustix::io::read(&rd, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
    }

    #[test]
    fn a_closed_peer_is_peer_closed() {
        let (a, b) = pair();
        drop(a);
        assert!(matches!(recv_fd(&b), Err(RecvFdError::PeerClosed)));
    }

    #[test]
    fn a_message_without_fd_is_no_fd() {
        let (a, b) = pair();
        rustix::io::write(&a, b"x").unwrap();
        assert!(matches!(recv_fd(&b), Err(RecvFdError::NoFd)));
    }
}
