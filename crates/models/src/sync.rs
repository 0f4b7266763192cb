//! The one place that chooses between std and loom. Under `cfg(loom)` every atomic, mutex,
//! condvar, `Arc` and thread of the models is loom's, so loom sees (and permutes) every step
//! that another thread could observe; otherwise they are std's and a model runs once, on real
//! threads, in whatever order the OS picks.
//!
//! The trace (`kernel::Trace`) deliberately uses `std::sync::Mutex` in both builds: it is ghost
//! state that only records what happened, so it must not add interleavings of its own.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::{self, JoinHandle};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// std's `Arc` in both builds: loom's counts every clone and drop as a step it permutes, and
/// the models' sharing is not under test (their threads are all joined before the end).
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::thread::{self, JoinHandle};

/// Wakes one waiting thread; a wake-up with nobody waiting is kept for the next wait.
#[cfg(loom)]
pub(crate) use loom::sync::Notify;

/// Wakes one waiting thread; a wake-up with nobody waiting is kept for the next wait.
#[cfg(not(loom))]
#[derive(Default)]
pub(crate) struct Notify {
    pending: Mutex<bool>,
    cond: Condvar,
}

#[cfg(not(loom))]
impl Notify {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn notify(&self) {
        *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.cond.notify_one();
    }

    pub(crate) fn wait(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*pending {
            pending = self.cond.wait(pending).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *pending = false;
    }
}
