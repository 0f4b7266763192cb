//! The one place that chooses between std and loom. Under `cfg(loom)` the atomics are loom's,
//! the futex is modelled by a loom mutex ("the bucket lock") and condvar with the kernel's
//! compare-then-sleep contract, and the clock stands still (deadlines never pass inside a
//! model, so a lost wake-up is a deadlock loom reports).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// `n` atomics set to 0. Outside loom they come from zero-filled memory that is faulted in
/// only where a run writes (see `racelab_sys::mem`): the trace ring is 2.6 MB and most runs
/// write a few hundred records of it.
#[cfg(not(loom))]
pub(crate) fn zeroed<T: racelab_sys::mem::ZeroIsValid>(n: usize) -> Box<[T]> {
    racelab_sys::mem::zeroed_slice(n)
}

/// A model's atomics are loom's own objects: build each one.
#[cfg(loom)]
pub(crate) fn zeroed<T: ModelZero>(n: usize) -> Box<[T]> {
    (0..n).map(|_| T::zero()).collect()
}

/// Loom atomics that start at 0.
#[cfg(loom)]
pub(crate) trait ModelZero {
    fn zero() -> Self;
}

#[cfg(loom)]
impl ModelZero for AtomicU32 {
    fn zero() -> Self {
        AtomicU32::new(0)
    }
}

#[cfg(loom)]
impl ModelZero for AtomicU64 {
    fn zero() -> Self {
        AtomicU64::new(0)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (vDSO, async-signal-safe).
#[cfg(not(loom))]
pub(crate) fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)
}

/// A model has no time: deadlines never pass.
#[cfg(loom)]
pub(crate) fn now_ns() -> u64 {
    0
}

/// The calling thread's kernel id (one syscall, async-signal-safe).
#[cfg(not(loom))]
pub(crate) fn current_tid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Models pass tids explicitly (loom threads share one OS thread); the global hit path that
/// calls this is not part of any model.
#[cfg(loom)]
pub(crate) fn current_tid() -> u32 {
    0
}

/// Sleeps while `*word == expected`, at most `timeout_ns`. Spurious returns are fine: callers
/// re-check. Errors (EAGAIN: the word changed; EINTR: a signal; ETIMEDOUT) all mean "re-check".
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: u64) {
    let timeout = rustix::time::Timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as i64,
        tv_nsec: (timeout_ns % 1_000_000_000) as i64,
    };
    let _ = rustix::thread::futex::wait(
        word,
        rustix::thread::futex::Flags::PRIVATE,
        expected,
        Some(&timeout),
    );
}

#[cfg(loom)]
loom::lazy_static! {
    /// The model's futex: one "hash bucket" lock and its queue, shared by every word.
    static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

/// The futex contract, modelled: compare the word under the bucket lock and sleep (no
/// timeout: a model has no time, so a lost wake-up shows up as a loom deadlock).
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout_ns: u64) {
    let bucket = FUTEX.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if word.load(Ordering::SeqCst) == expected {
        drop(FUTEX.1.wait(bucket));
    }
}

/// Wakes every thread sleeping on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    let _ =
        rustix::thread::futex::wake(word, rustix::thread::futex::Flags::PRIVATE, i32::MAX as u32);
}

/// The model's wake: take the bucket lock, wake every sleeper (of any word: they re-check).
#[cfg(loom)]
pub(crate) fn futex_wake_all(_word: &AtomicU32) {
    let _bucket = FUTEX.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    FUTEX.1.notify_all();
}
