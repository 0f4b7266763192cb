//! The armed controller end to end: real threads, a real signal handler, real futex parking.
//! One binary; tests take a process-wide lock because one controller is armed at a time.
#![cfg(feature = "hooks")]

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use racelab_hooks::{Actions, ArmOptions, Armed, NoActions, Schedule, arm};

/// Actions attached to points: order, failures, notes.
mod actions;
/// Threads that play several actors: unrealizable edges pass at once.
mod bound;
/// A point inside a signal handler parks and is released.
mod signal_handler;
/// Deadlines, stuck reports, finishing while parked, arming twice.
mod stuck;
/// The two orders of a racy read/write, each forced 1000 of 1000 times.
mod two_orders;

/// Serialises the tests of this binary: the controller is process-wide.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Arms `schedule` with `deadline` on every wait.
pub fn arm_text(schedule: &str, actions: Arc<dyn Actions>, deadline: Duration) -> Armed {
    let schedule = Schedule::parse(schedule).expect("test schedule parses");
    arm(schedule, actions, ArmOptions { deadline, trace_capacity: 1024 }).expect("arm")
}

/// Arms a schedule without actions.
pub fn arm_plain(schedule: &str, deadline: Duration) -> Armed {
    arm_text(schedule, Arc::new(NoActions), deadline)
}

/// A thread whose result is awaited with a deadline, so a controller bug fails the test
/// instead of hanging it.
pub struct Worker<T> {
    rx: mpsc::Receiver<thread::Result<T>>,
    handle: thread::JoinHandle<()>,
}

/// Spawns `f` on a new thread.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Worker<T> {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    Worker { rx, handle }
}

impl<T> Worker<T> {
    /// The thread's result, or a test failure after `timeout`.
    pub fn join_within(self, timeout: Duration) -> T {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(v)) => {
                let _ = self.handle.join();
                v
            }
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => panic!("worker did not finish within {timeout:?}: {e}"),
        }
    }
}

/// The kernel id of the calling thread.
pub fn tid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}
