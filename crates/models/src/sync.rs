//! The one place that chooses between std and loom. Under `cfg(loom)` every lock, condvar,
//! park and thread of the models is loom's, so loom sees (and permutes) every step that
//! another thread could observe; otherwise they are std's and a model runs once, on real
//! threads, in whatever order the OS picks.
//!
//! Threads that wait for each other park (`thread::park`, which loom 0.7 never wakes
//! spuriously) rather than wait on `loom::sync::Notify`, whose every wait may also wake
//! spuriously: one more branch for loom to explore each time.
//!
//! The trace (`record::Trace`) deliberately uses `std::sync::Mutex` in both builds: it is ghost
//! state that only records what happened, so it must not add interleavings of its own.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::{self, JoinHandle, Thread};

#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// std's `Arc` in both builds: loom's counts every clone and drop as a step it permutes, and
/// the models' sharing is not under test (their threads are all joined before the end).
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::thread::{self, JoinHandle, Thread};

/// A `SeqCst` atomic `u32`, as the models need it: every access sees the latest value, in one
/// total order. loom 0.7 treats `SeqCst` loads and stores as `AcqRel` (its README, "Unsupported
/// features"), so a loom `AtomicU32` would let a load return a value older than a `SeqCst`
/// store that came before it: with piano's globals that made loom report a Q4 the real
/// program cannot have (the handler reading `CHILD_PID == 0` after main stored the PID).
/// Under loom the cell is a loom `Mutex`, which is sequentially consistent and still one
/// scheduling point per access.
#[cfg(loom)]
pub(crate) struct SeqCstCell(Mutex<u32>);

#[cfg(loom)]
impl SeqCstCell {
    pub(crate) fn new(value: u32) -> Self {
        SeqCstCell(Mutex::new(value))
    }

    pub(crate) fn load(&self) -> u32 {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn store(&self, value: u32) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = value;
    }
}

/// A `SeqCst` atomic `u32` (outside loom, simply that).
#[cfg(not(loom))]
pub(crate) struct SeqCstCell(std::sync::atomic::AtomicU32);

#[cfg(not(loom))]
impl SeqCstCell {
    pub(crate) fn new(value: u32) -> Self {
        SeqCstCell(std::sync::atomic::AtomicU32::new(value))
    }

    pub(crate) fn load(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn store(&self, value: u32) {
        self.0.store(value, std::sync::atomic::Ordering::SeqCst);
    }
}
