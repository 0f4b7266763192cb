//! The machine's timers (duration, grace, kill wait) as deadlines for the loop's `poll`. The
//! bottom of the shell: plain time arithmetic, no kernel object.

use std::time::{Duration, Instant};

use crate::machine::Timer;

/// The machine's timers as deadlines.
#[derive(Default)]
pub(super) struct Timers([Option<Instant>; 3]);

impl Timers {
    fn slot(t: Timer) -> usize {
        match t {
            Timer::Duration => 0,
            Timer::Grace => 1,
            Timer::KillWait => 2,
        }
    }
    pub(super) fn arm(&mut self, t: Timer, at: Instant) {
        self.0[Self::slot(t)] = Some(at);
    }
    pub(super) fn cancel(&mut self, t: Timer) {
        self.0[Self::slot(t)] = None;
    }
    pub(super) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, (*d)?)))
            .filter(|(_, d)| *d <= now)
            .min_by_key(|(_, d)| *d)?;
        self.0[i] = None;
        Some([Timer::Duration, Timer::Grace, Timer::KillWait][i])
    }
}

/// `d` as a poll timeout.
pub(super) fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}
