//! Primitives the benchmarks (package `racelab-benches`) need and that cannot be written without
//! `unsafe`: a timestamp slot in shared memory, raw `fork` children that do nothing but stamp and
//! `_exit` or block, and a SIGCHLD self-pipe.
//!
//! Why raw: a latency floor must not measure a library. The child's last instruction is a store
//! of `CLOCK_MONOTONIC` into a `MAP_SHARED` page; the parent compares it with the instant it
//! learned of the exit. Nothing here is used outside benchmarks.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, Signal};

/// `CLOCK_MONOTONIC` in nanoseconds (`clock_gettime(2)`), the clock every timestamp of the
/// benchmarks uses, in the parent and in the children.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

/// One `u64` timestamp slot in a `MAP_SHARED` page, visible to the parent and to a child (a
/// forked one through an anonymous mapping, an exec'd one through an inherited memfd).
#[derive(Debug)]
pub struct SharedStamp {
    slot: NonNull<AtomicU64>,
}

// SAFETY: the slot points into a shared mapping owned by this value for its whole life and is
// only accessed through an `AtomicU64`, which is safe to share and send between threads.
unsafe impl Send for SharedStamp {}
// SAFETY: see `Send`: every access is atomic.
unsafe impl Sync for SharedStamp {}

const PAGE: usize = 4096;

impl SharedStamp {
    /// A fresh `MAP_SHARED | MAP_ANONYMOUS` page (`mmap(2)`): shared with children forked after
    /// this call.
    pub fn anonymous() -> io::Result<SharedStamp> {
        Self::map(libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1)
    }

    /// Maps the first page of `fd` (`mmap(2)`, `MAP_SHARED`), e.g. a memfd inherited across
    /// exec. The file must be at least 8 bytes long (`ftruncate` it first).
    pub fn from_fd(fd: BorrowedFd<'_>) -> io::Result<SharedStamp> {
        Self::map(libc::MAP_SHARED, fd.as_raw_fd())
    }

    fn map(flags: c_int, fd: RawFd) -> io::Result<SharedStamp> {
        // SAFETY: a new mapping chosen by the kernel (addr NULL) cannot alias any Rust object;
        // the result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), PAGE, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let slot = NonNull::new(ptr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(SharedStamp { slot })
    }

    fn atomic(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped readable and writable for as long as `self` lives, is page
        // aligned (so aligned for u64), and is only ever accessed atomically.
        unsafe { self.slot.as_ref() }
    }

    /// Stores `CLOCK_MONOTONIC` now and returns it.
    pub fn store_now(&self) -> u64 {
        let now = monotonic_ns();
        self.atomic().store(now, Ordering::SeqCst);
        now
    }

    /// The stored timestamp, 0 if none since [`SharedStamp::clear`].
    pub fn load(&self) -> u64 {
        self.atomic().load(Ordering::SeqCst)
    }

    /// Resets the slot to 0.
    pub fn clear(&self) {
        self.atomic().store(0, Ordering::SeqCst);
    }
}

impl Drop for SharedStamp {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page `map` created; no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.slot.as_ptr().cast(), PAGE);
        }
    }
}

/// `fork(2)` a child that sleeps `delay` (so the parent is already waiting), stores
/// `CLOCK_MONOTONIC` into `stamp` and `_exit(0)`s: the store is its last instruction that does
/// anything. Returns the child's pid. The raw floor of "a child exits, the parent learns it".
pub fn fork_stamp_exit(stamp: &SharedStamp, delay: Duration) -> io::Result<i32> {
    let ts = libc::timespec {
        tv_sec: delay.as_secs() as libc::time_t,
        tv_nsec: delay.subsec_nanos() as libc::c_long,
    };
    let slot = stamp.slot.as_ptr();
    // SAFETY: the child only calls async-signal-safe functions (nanosleep, clock_gettime, an
    // atomic store into the shared page, _exit) and never returns into Rust code, so forking a
    // possibly multi-threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; `slot` points into a MAP_SHARED page inherited by fork.
        unsafe {
            libc::nanosleep(&ts, std::ptr::null_mut());
            let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            let ns = (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64;
            (*slot).store(ns, Ordering::SeqCst);
            libc::_exit(0)
        }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// `fork(2)` a child that writes one byte to `ready` and then blocks in `pause(2)` until a
/// signal kills it. Returns the child's pid. Used to build process trees for the kill benches.
pub fn fork_paused(ready: BorrowedFd<'_>) -> io::Result<i32> {
    let fd = ready.as_raw_fd();
    // SAFETY: the child only calls async-signal-safe functions (write, pause, _exit) and never
    // returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; `fd` was valid in the parent and is inherited.
        unsafe {
            if libc::write(fd, b"r".as_ptr().cast(), 1) != 1 {
                libc::_exit(1)
            }
            loop {
                libc::pause();
            }
        }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// An fd that the parent left open across exec for this process (its number given on the
/// command line), checked with `fcntl(F_GETFD)` and borrowed for the rest of the process.
pub fn inherited_fd(fd: RawFd) -> io::Result<BorrowedFd<'static>> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF if `fd` is not open.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::other(format!("fd {fd} is not open")));
    }
    // SAFETY: `fd` is open (checked above) and the caller treats it as inherited for the life
    // of the process: nothing in this process closes it.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// `_exit(2)`: ends the process at once, without atexit handlers or stdio flushing.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// The write end of the installed self-pipe, read by the handler (-1: none).
static SELF_PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn self_pipe_handler(_signo: c_int) {
    let fd = SELF_PIPE_WRITE.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    // SAFETY: write(2) is async-signal-safe; errno is saved and restored so the interrupted
    // code does not see the handler's errno. The pipe is non-blocking: a full pipe drops the
    // byte, which is fine since one pending byte already means "look".
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, b"s".as_ptr().cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// The classic self-pipe: a handler for one signal writes a byte into a non-blocking pipe that
/// an event loop polls. Dropping it restores the previous disposition. One at a time per process.
#[derive(Debug)]
pub struct SelfPipe {
    read: OwnedFd,
    _write: OwnedFd,
    signal: Signal,
    old: SigAction,
}

impl SelfPipe {
    /// Creates the pipe and installs the handler for `signal` (`sigaction(2)`, `SA_RESTART`).
    pub fn install(signal: Signal) -> io::Result<SelfPipe> {
        use rustix::pipe::{PipeFlags, pipe_with};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let prev = SELF_PIPE_WRITE.compare_exchange(
            -1,
            write.as_raw_fd(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        if prev.is_err() {
            return Err(io::Error::other("a SelfPipe is already installed"));
        }
        match crate::sigaction::install_handler(signal, self_pipe_handler, SaFlags::SA_RESTART) {
            Ok(old) => Ok(SelfPipe { read, _write: write, signal, old }),
            Err(e) => {
                SELF_PIPE_WRITE.store(-1, Ordering::SeqCst);
                Err(e.into())
            }
        }
    }

    /// The read end (non-blocking): readable once the signal arrived.
    pub fn read_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.read.as_fd()
    }

    /// Reads every pending byte; returns how many.
    pub fn drain(&self) -> usize {
        let mut buf = [0u8; 64];
        let mut total = 0;
        while let Ok(n) = rustix::io::read(&self.read, &mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    }
}

impl Drop for SelfPipe {
    fn drop(&mut self) {
        // SAFETY: reinstalls the disposition that was in place before `install`, which was a
        // valid disposition of this process.
        let _ = unsafe { nix::sys::signal::sigaction(self.signal, &self.old) };
        SELF_PIPE_WRITE.store(-1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forked_child_stamps_shared_memory_before_exiting() {
        let stamp = SharedStamp::anonymous().expect("mmap");
        let before = monotonic_ns();
        let pid = fork_stamp_exit(&stamp, Duration::ZERO).expect("fork");
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("wait");
        assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)));
        let t = stamp.load();
        assert!(t >= before && t <= monotonic_ns(), "stamp {t} out of range");
    }

    #[test]
    fn self_pipe_becomes_readable_when_the_signal_arrives() {
        let pipe = SelfPipe::install(Signal::SIGWINCH).expect("install");
        nix::sys::signal::raise(Signal::SIGWINCH).expect("raise");
        assert!(pipe.drain() >= 1);
        drop(pipe);
        assert_eq!(SELF_PIPE_WRITE.load(Ordering::SeqCst), -1);
    }
}
