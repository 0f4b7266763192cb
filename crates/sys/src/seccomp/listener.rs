//! Installing a filter with a listener, and the [`Listener`] that receives and answers
//! notifications (`SECCOMP_IOCTL_NOTIF_*`, see `seccomp_unotify(2)`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use syscalls::Sysno;

use super::filter::{Filter, FilterError, Program};

/// What a non-fatal signal does to a thread parked in a notified syscall. See the module docs
/// of [`crate::seccomp`] for the observed semantics and the tests that pin them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ParkedSignals {
    /// The kernel default: a signal interrupts the wait (the notification disappears, its id
    /// becomes invalid), the handler runs, and with `SA_RESTART` the syscall restarts and
    /// notifies again with a NEW id, same tid; without `SA_RESTART` the syscall fails with
    /// `EINTR`. `SIGSTOP` stops the thread and `SIGCONT` restarts the syscall the same way.
    #[default]
    Interrupt,
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19+): once the listener has received
    /// the notification, the thread waits killable only: non-fatal signals stay pending (no
    /// handler runs) until the syscall is answered. Before it is received, a signal still
    /// interrupts it as with [`ParkedSignals::Interrupt`]. `SIGSTOP` waits too (the thread
    /// stops after the answer). A fatal signal always ends the wait.
    DeferUntilAnswered,
}

/// Why [`install_listener`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The filter does not compile.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// `prctl` or `seccomp` refused (see [`install_program`]).
    #[error("installing the seccomp filter: {0}")]
    Kernel(#[from] io::Error),
}

/// Compiles `filter` and installs it with [`install_program`]. Allocates: not for the path
/// between `fork` and `execve` of a multi-threaded parent (compile first, then use
/// [`install_program`] there).
pub fn install_listener(filter: &Filter, signals: ParkedSignals) -> Result<Listener, InstallError> {
    let program = filter.compile()?;
    Ok(install_program(&program, signals)?)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)` then `seccomp(SECCOMP_SET_MODE_FILTER,
/// SECCOMP_FILTER_FLAG_NEW_LISTENER [| SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV], program)`: the
/// calling THREAD (and every thread and process it creates, across `execve`) runs `program`
/// on each syscall from now on. Returns the listener, close-on-exec (the kernel creates it with
/// `O_CLOEXEC`), so the exec'd target does not inherit it.
///
/// Async-signal-safe and allocation-free: two raw syscalls on memory prepared before
/// `fork` (the program), so it may run in the child of a multi-threaded parent between `fork`
/// and `execve` (see [`super::notify_in_child`]).
///
/// Errors: `EINVAL` when the kernel lacks `NEW_LISTENER` (< 5.0) or `WAIT_KILLABLE_RECV`
/// (< 5.19); `EBUSY` when a filter with a listener is already installed on this thread (one
/// listener per filter chain: a lab nested under another seccomp supervisor cannot use this);
/// `EFAULT`/`EINVAL` for a malformed program.
///
/// `PR_SET_NO_NEW_PRIVS` is what lets an unprivileged process install a filter. It is
/// irreversible and inherited: a setuid or file-capability program the target execs runs
/// WITHOUT its privileges.
pub fn install_program(program: &Program, signals: ParkedSignals) -> io::Result<Listener> {
    let insns = program.instructions();
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog { len, filter: insns.as_ptr().cast_mut() };
    let mut flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    if signals == ParkedSignals::DeferUntilAnswered {
        flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fprog` points to `len` valid instructions owned by `program`, alive for the call;
    // the kernel copies the program. The return value is a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // No fcntl(FD_CLOEXEC) here: the kernel creates the listener with O_CLOEXEC already
    // (`init_listener`: `get_unused_fd_flags(O_CLOEXEC)`, pinned by a test), and every syscall
    // made after the install runs under the new filter: the fewer, the fewer that a rule could
    // park before the listener has left this process.
    // SAFETY: with NEW_LISTENER, success returns a fresh fd that nothing else owns.
    Ok(Listener { fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) } })
}

/// A notification's id: names one parked syscall until it is answered or withdrawn. Ids are
/// never reused by the same listener (a 64-bit counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotifId(pub u64);

/// A thread parked at the entry of a filtered syscall (`struct seccomp_notif`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// Answer with this id.
    pub id: NotifId,
    /// The parked THREAD's id (a tid, equal to the pid for a single-threaded process), as seen
    /// in the PID namespace of the thread that called [`Listener::recv`] (the kernel's
    /// `task_pid_vnr` at receive time), 0 when the target is not visible from there. Like any
    /// pid it can be recycled once the thread is gone: check [`Listener::id_valid`] after
    /// reading `/proc/<tid>`.
    pub tid: i32,
    /// The syscall number (of `arch`'s table).
    pub nr: i32,
    /// `AUDIT_ARCH_*` of the call (always the native one for this crate's filters).
    pub arch: u32,
    /// The user-space instruction pointer at the syscall.
    pub instruction_pointer: u64,
    /// The six argument registers, unfiltered (an `int` argument's upper half is unspecified).
    pub args: [u64; 6],
}

impl Notification {
    /// The syscall, when `nr` is in the native table.
    pub fn sysno(&self) -> Option<Sysno> {
        usize::try_from(self.nr).ok().and_then(Sysno::new)
    }
}

/// Why a notification operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `ENOENT`: the notification no longer exists: its thread died, or (with
    /// [`ParkedSignals::Interrupt`], or before it was received) a signal interrupted the
    /// syscall; a restarted syscall comes back as a new notification. For `recv`, the pending
    /// notification that made the listener readable vanished this way: wait again.
    #[error("the notification is gone: its thread died or a signal interrupted the syscall")]
    Gone,
    /// Any other error (`EINPROGRESS`: answered twice, or an id that was never received).
    #[error("seccomp notification: {0}")]
    Io(#[from] io::Error),
}

/// What [`Listener::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerEvent {
    /// `POLLIN`: a notification waits for [`Listener::recv`].
    Pending,
    /// `POLLHUP`: no task uses the filter any more, no notification can come: the last one
    /// has exited (Linux 6.11+; before, it had to be reaped).
    AllTargetsGone,
    /// Nothing happened before the timeout.
    TimedOut,
}

/// The listener fd of a seccomp filter (`anon_inode:seccomp notify`). Pollable through
/// [`AsFd`]: `POLLIN` while a notification is pending, `POLLHUP` once every task that runs the
/// filter has exited. Dropping it closes the fd: every parked syscall then fails with
/// `ENOSYS`, and so does every later call that the filter would notify.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

/// `SECCOMP_IOCTL_NOTIF_*` on `fd` with `arg`, `EINTR` retried; the errno on failure.
fn notif_ioctl<T>(fd: BorrowedFd<'_>, request: libc::Ioctl, arg: *mut T) -> Result<(), Errno> {
    loop {
        // SAFETY: `request` is one of the seccomp notification ioctls and `arg` points to the
        // live, properly sized and aligned struct that this request reads or writes.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
        match r {
            0.. => return Ok(()),
            _ => match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            },
        }
    }
}

fn notify_error(e: Errno) -> NotifyError {
    match e {
        Errno::ENOENT => NotifyError::Gone,
        e => NotifyError::Io(e.into()),
    }
}

impl Listener {
    /// Wraps an fd received from the launcher (see [`crate::fdpass`]). The fd must be a seccomp
    /// listener; anything else makes every operation fail (`ENOTTY`/`EINVAL`).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Listener { fd }
    }

    /// The fd, e.g. to send it over a Unix socket.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Waits up to `timeout` (`poll(2)`, `EINTR` retried with the time left) for a pending
    /// notification or for the last filtered task to be gone.
    pub fn wait(&self, timeout: Duration) -> io::Result<ListenerEvent> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = Timespec::try_from(left).map_err(|_| io::Error::other("timeout too large"))?;
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Ok(ListenerEvent::TimedOut),
                Ok(_) => {
                    let got = fds[0].revents();
                    if got.contains(PollFlags::IN) {
                        return Ok(ListenerEvent::Pending);
                    }
                    if got.intersects(PollFlags::HUP | PollFlags::ERR) {
                        return Ok(ListenerEvent::AllTargetsGone);
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `SECCOMP_IOCTL_NOTIF_RECV`: takes the oldest notification not yet received. BLOCKS while
    /// none is pending, even when no task is left: call it after [`Listener::wait`] said
    /// [`ListenerEvent::Pending`] (or poll the fd). [`NotifyError::Gone`] when that notification
    /// vanished in between (thread killed or interrupted): wait again.
    pub fn recv(&self) -> Result<Notification, NotifyError> {
        // SAFETY: `seccomp_notif` is plain integers, for which all-zero is valid; the kernel
        // requires the buffer to be zeroed (EINVAL otherwise).
        let mut raw: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        notif_ioctl(self.fd.as_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut raw)
            .map_err(notify_error)?;
        Ok(Notification {
            id: NotifId(raw.id),
            tid: raw.pid as i32,
            nr: raw.data.nr,
            arch: raw.data.arch,
            instruction_pointer: raw.data.instruction_pointer,
            args: raw.data.args,
        })
    }

    /// `SECCOMP_IOCTL_NOTIF_ID_VALID`: whether `id` still names a parked syscall (received and
    /// not yet answered or withdrawn). Use it after reading `/proc/<tid>` to know the tid was
    /// still the parked thread.
    pub fn id_valid(&self, id: NotifId) -> bool {
        let mut raw = id.0;
        notif_ioctl(self.fd.as_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut raw).is_ok()
    }

    /// Lets the syscall run as if no filter had seen it (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
    pub fn continue_syscall(&self, id: NotifId) -> Result<(), NotifyError> {
        self.send(id, 0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32)
    }

    /// Makes the syscall fail with `errno` without running it.
    pub fn fail_syscall(&self, id: NotifId, errno: Errno) -> Result<(), NotifyError> {
        if errno as i32 <= 0 {
            return Err(NotifyError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        self.send(id, 0, -(errno as i32), 0)
    }

    /// Makes the syscall return `val` without running it (for errors use
    /// [`Listener::fail_syscall`]: a value in -4095..=-1 reads as an errno to libc).
    pub fn return_value(&self, id: NotifId, val: i64) -> Result<(), NotifyError> {
        self.send(id, val, 0, 0)
    }

    /// `SECCOMP_IOCTL_NOTIF_SEND`.
    fn send(&self, id: NotifId, val: i64, error: i32, flags: u32) -> Result<(), NotifyError> {
        let mut resp = libc::seccomp_notif_resp { id: id.0, val, error, flags };
        notif_ioctl(self.fd.as_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp)
            .map_err(notify_error)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<OwnedFd> for Listener {
    fn from(fd: OwnedFd) -> Self {
        Listener::from_fd(fd)
    }
}

impl From<Listener> for OwnedFd {
    fn from(l: Listener) -> Self {
        l.fd
    }
}
