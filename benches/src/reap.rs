//! Reap latency: from the child's last instruction (a CLOCK_MONOTONIC store into shared memory
//! right before `_exit`) to the moment the strategy knows the child's exit status. One function
//! per strategy; each spawns the same exec'd helper and returns one iteration's latency.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use racelab_supervisor::{Config, ExitStatus};
use racelab_sys::bench::{SelfPipe, SharedStamp, fork_stamp_exit};
use racelab_sys::spawn::{Grouping, Spawned};
use rustix::event::{PollFd, PollFlags, poll};

use crate::procs::{Helper, Stamp, now_ns};

/// A wait for the child that takes longer than this is a failure, not a figure.
const DEADLINE: Duration = Duration::from_secs(10);

/// What every reap strategy shares: the helper, the stamp slot, and how long the child sleeps
/// before stamping (long enough for the parent to be waiting already).
#[derive(Debug)]
pub struct ReapEnv {
    /// The helper child.
    pub helper: Helper,
    /// The timestamp slot the child writes.
    pub stamp: Stamp,
    /// The child's sleep before its last instruction.
    pub child_delay: Duration,
    /// xorshift state for the random phase of the polling strategies.
    rng: std::cell::Cell<u64>,
}

impl ReapEnv {
    /// An environment with a fresh stamp slot.
    pub fn new(helper: Helper, child_delay: Duration) -> io::Result<ReapEnv> {
        let rng = std::cell::Cell::new(now_ns() | 1);
        Ok(ReapEnv { helper, stamp: Stamp::new()?, child_delay, rng })
    }

    fn args(&self, delay: Duration) -> Vec<String> {
        vec!["stamp-exit".into(), self.stamp.fd_arg(), delay.as_micros().to_string()]
    }

    fn spawn_after(&self, delay: Duration) -> io::Result<Spawned> {
        self.stamp.clear();
        self.helper.spawn(&self.args(delay), Grouping::Inherit, None)
    }

    fn spawn(&self) -> io::Result<Spawned> {
        self.spawn_after(self.child_delay)
    }

    /// A uniformly random duration in `[0, max)` (zero for a zero `max`).
    fn random_phase(&self, max: Duration) -> Duration {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        if max.is_zero() {
            return Duration::ZERO;
        }
        let max_us = max.as_micros().max(1) as u64;
        Duration::from_micros(x % max_us)
    }
}

fn pid_id(pid: i32) -> Id<'static> {
    Id::Pid(nix::unistd::Pid::from_raw(pid))
}

/// Checks a wait result: `Some(())` once the child exited with 0.
fn exited(r: nix::Result<WaitStatus>) -> io::Result<Option<()>> {
    match r {
        Ok(WaitStatus::Exited(_, 0)) => Ok(Some(())),
        Ok(WaitStatus::StillAlive) => Ok(None),
        Ok(other) => Err(io::Error::other(format!("helper ended badly: {other:?}"))),
        Err(nix::errno::Errno::EINTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn poll_one(fd: impl AsFd, started: Instant) -> io::Result<()> {
    let left = DEADLINE.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "child exit not seen in 10 s"));
    }
    let ts = rustix::time::Timespec::try_from(left).unwrap_or_default();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match poll(&mut fds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The raw floor: the waiting thread blocks in `waitid(P_PID, WEXITED)`.
pub fn blocking_waitid(env: &ReapEnv) -> io::Result<Duration> {
    let child = env.spawn()?;
    loop {
        if exited(waitid(pid_id(child.pid), WaitPidFlag::WEXITED))?.is_some() {
            return env.stamp.latency_to(now_ns());
        }
    }
}

/// The same floor with a raw `fork` child (a copy of this bench process, no exec): for
/// comparison with TARGETS.md, measured with a small C program.
pub fn fork_blocking_waitid(stamp: &SharedStamp, delay: Duration) -> io::Result<Duration> {
    stamp.clear();
    let pid = fork_stamp_exit(stamp, delay)?;
    loop {
        if exited(waitid(pid_id(pid), WaitPidFlag::WEXITED))?.is_some() {
            let now = now_ns();
            let t = stamp.load();
            if t == 0 || t > now {
                return Err(io::Error::other("fork child wrote no stamp"));
            }
            return Ok(Duration::from_nanos(now - t));
        }
    }
}

/// `poll` on the pidfd (readable when the child exits), then `waitid(P_PIDFD, WNOHANG)`.
pub fn pidfd_poll(env: &ReapEnv) -> io::Result<Duration> {
    let child = env.spawn()?;
    let started = Instant::now();
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
    loop {
        poll_one(&child.pidfd, started)?;
        if exited(waitid(Id::PIDFd(child.pidfd.as_fd()), flags))?.is_some() {
            return env.stamp.latency_to(now_ns());
        }
    }
}

/// A SIGCHLD handler writes a byte into a self-pipe; the loop polls the pipe, then
/// `waitid(P_PID, WNOHANG)`. `pipe` is installed once per benchmark.
pub fn sigchld_self_pipe(env: &ReapEnv, pipe: &SelfPipe) -> io::Result<Duration> {
    pipe.drain();
    let child = env.spawn()?;
    let started = Instant::now();
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
    loop {
        poll_one(pipe.read_fd(), started)?;
        pipe.drain();
        if exited(waitid(pid_id(child.pid), flags))?.is_some() {
            return env.stamp.latency_to(now_ns());
        }
    }
}

/// SIGCHLD blocked and read from a signalfd, then `waitpid(pid, WNOHANG)`.
#[derive(Debug)]
pub struct SigchldFd {
    fd: SignalFd,
    old: SigSet,
}

impl SigchldFd {
    /// Blocks SIGCHLD in the calling thread and opens the signalfd; dropping restores the mask.
    pub fn new() -> io::Result<SigchldFd> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(SigchldFd { fd, old })
    }

    fn drain(&self) {
        while let Ok(Some(_)) = self.fd.read_signal() {}
    }
}

impl Drop for SigchldFd {
    fn drop(&mut self) {
        self.drain();
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// The signalfd strategy (see [`SigchldFd`]).
pub fn signalfd(env: &ReapEnv, sfd: &SigchldFd) -> io::Result<Duration> {
    sfd.drain();
    let child = env.spawn()?;
    let started = Instant::now();
    loop {
        poll_one(&sfd.fd, started)?;
        sfd.drain();
        let r = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(child.pid),
            Some(WaitPidFlag::WNOHANG),
        );
        if exited(r)?.is_some() {
            return env.stamp.latency_to(now_ns());
        }
    }
}

/// Sleep `interval`, then `waitid(P_PID, WNOHANG)`, until the child is seen.
///
/// The child's exit falls at a uniformly random phase of the polling period (its sleep gets a
/// random extra in `[0, interval)`), as it does for a real poller, which runs independently of
/// the child; without it the exit would always land right after the first sleep began.
pub fn sleep_poll(env: &ReapEnv, interval: Duration) -> io::Result<Duration> {
    let child = env.spawn_after(env.child_delay + env.random_phase(interval))?;
    let started = Instant::now();
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
    loop {
        std::thread::sleep(interval);
        if exited(waitid(pid_id(child.pid), flags))?.is_some() {
            return env.stamp.latency_to(now_ns());
        }
        if started.elapsed() > DEADLINE {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "child exit not seen in 10 s"));
        }
    }
}

/// The reference supervisor: from the child's stamp until `racelab_supervisor::run` RETURNS
/// (its loop saw the pidfd, peeked the status, swept the group, reaped, built the report).
/// An upper bound on "its event loop has the status", which is not observable from outside
/// without hook points.
pub fn reference(env: &ReapEnv, config: &Config) -> io::Result<Duration> {
    env.stamp.clear();
    let args: Vec<std::ffi::OsString> =
        env.args(env.child_delay).into_iter().map(Into::into).collect();
    let report = racelab_supervisor::run(config, env.helper.program().as_os_str(), &args)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let now = now_ns();
    if report.status != Some(ExitStatus::Code(0)) {
        return Err(io::Error::other(format!("reference: unexpected report {report:?}")));
    }
    env.stamp.latency_to(now)
}

/// A legacy design run through its wrapper binary (`racelab-legacy-wrapper MODE -- helper ...`:
/// the replicas own process-wide state, one per process). The latency runs until the WRAPPER is
/// reaped by the bench, so it includes one extra process exit and reap (about one
/// blocking-waitid floor) on top of the design's own notice. `poll_period`: the design's polling
/// period, for a random exit phase (see [`sleep_poll`]); zero for a design that blocks.
pub fn legacy_wrapper(
    env: &ReapEnv,
    wrapper: &std::path::Path,
    mode: &str,
    poll_period: Duration,
) -> io::Result<Duration> {
    let delay = env.child_delay + env.random_phase(poll_period);
    let mut args = vec![mode.to_string(), "--".into(), env.helper.path.to_string_lossy().into()];
    args.extend(env.args(delay));
    env.stamp.clear();
    let child = crate::procs::spawn_program(wrapper, &args, Grouping::Inherit, None)?;
    loop {
        if exited(waitid(pid_id(child.pid), WaitPidFlag::WEXITED))?.is_some() {
            return env.stamp.latency_to(now_ns());
        }
    }
}
