//! The oracle: judges a replay from the ground truth the lab collected itself (victim fates,
//! the signals the child reported, /proc after the stop, the trace of points passed), and
//! compares it with the design's own report. It never takes the design's word for what happened.

use crate::catalog::{Race, Stop};
use crate::design::{DesignReport, Reason, Status};
use crate::scenario::Workload;
use crate::verdict::{Invariant, Verdict, Violation};
use racelab_hooks::{EventKind, RunReport, Trace, UnmetReason};
use racelab_sandbox::{Fate, Init, Victim};
use std::time::{Duration, Instant};

/// What the lab saw.
#[derive(Debug, Default)]
pub struct Truth {
    /// Interrupts sent to the design: (time, was the child alive then).
    pub interrupts: Vec<(u64, bool)>,
    /// When the first stop request was made.
    pub stop_requested_at: Option<u64>,
    /// How long past the stop request the design was still running when the bound passed.
    pub overran_bound: Option<u64>,
    /// Time the design spent blocked in lab actions after the stop request (ns): the lab's
    /// time, added to the I4 bound.
    pub lab_held_ns: u64,
    /// The outer process was killed.
    pub outer_killed: bool,
    /// The lab SIGKILLed the design process itself, the child's parent (P1).
    pub design_killed: bool,
    /// The stop request I4 counts from is the child's own end (S1, H1).
    pub bound_from_child_end: bool,
    /// The design did not finish before the replay deadline.
    pub hung: bool,
    /// How the design process ended.
    pub design_exit: Option<Fate>,
    /// Victims: (pid, fate when the run ended).
    pub victims: Vec<(i32, Option<Fate>)>,
    /// Processes of the child's tree alive after the design returned or died: (pid, state, name).
    pub survivors: Vec<(i32, char, String)>,
    /// The lock file was still locked after the stop.
    pub lock_held: bool,
    /// Zombies whose parent is the design, at quiescence.
    pub zombies: Option<Result<usize, String>>,
    /// Things that went wrong in the lab itself.
    pub lab_errors: Vec<String>,
    /// Whether the supervisor sent SIGKILL, when the lab saw it at the syscall (black-box
    /// programs); `None`: read it from the design's escalation points in the trace.
    pub sigkill_seen: Option<bool>,
    /// When the lab saw the supervisor send a stop signal (SIGINT, SIGTERM, SIGHUP) to another
    /// process at the syscall (black-box programs): the times it was let go. Ground truth that
    /// an interrupt was forwarded when the child died of it before its own log began.
    pub stop_signals_sent: Vec<u64>,
    /// Signals delivered one by one to the supervisor once the child was ready (F1): each must
    /// reach the child. (time, signal).
    pub forwarded: Vec<(u64, i32)>,
}

/// The capability a race needs that this machine lacks, if any.
pub fn missing_capability(race: &Race) -> Option<String> {
    if race.setup.stop == Stop::FreezeThenInterrupt && !racelab_cgroup::freezer_v1_usable() {
        return Some("v1 freezer: a writable cgroup v1 freezer hierarchy (root on a hybrid cgroup host) makes the child unkillable".into());
    }
    None
}

fn stat(pid: i32) -> Option<(char, i32, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = s.rsplit_once(')')?;
    let name = head.split_once('(').map(|(_, n)| n.to_string()).unwrap_or_default();
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid, name))
}

fn ns_pids() -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()
}

fn exited_within(pid: i32, until: Instant) -> bool {
    let Some(fd) = pidfd(pid) else { return true };
    let left = until.saturating_duration_since(Instant::now());
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec::try_from(left).ok();
    matches!(rustix::event::poll(&mut fds, ts.as_ref()), Ok(n) if n > 0)
}

/// Processes still alive (not zombies) after `grace`, other than init and the victims: what is
/// left of the child's tree once the design returned or died.
pub fn survivors(init: &Init, victims: &[Victim], grace: Duration) -> Vec<(i32, char, String)> {
    let until = Instant::now() + grace;
    let me = init.pid();
    let candidates: Vec<i32> = ns_pids()
        .into_iter()
        .filter(|p| *p != me && !victims.iter().any(|v| v.pid() == *p))
        .collect();
    candidates
        .into_iter()
        .filter(|&pid| !exited_within(pid, until))
        .filter_map(|pid| stat(pid).filter(|(s, _, _)| *s != 'Z').map(|(s, _, n)| (pid, s, n)))
        .collect()
}

/// Whether `path` is still locked by someone (flock).
pub fn lock_held(path: &str) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => false,
        Err(e) => e == rustix::io::Errno::WOULDBLOCK,
    }
}

/// Waits until every pid in `pids` has exited (or was already reaped), at most `timeout`.
pub fn wait_exited(pids: &[i32], timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout;
    match pids.iter().find(|&&p| !exited_within(p, until)) {
        Some(p) => Err(format!("process {p} did not exit within {timeout:?}")),
        None => Ok(()),
    }
}

/// Whether `pid` has any signal pending (process-wide or for its main thread).
pub fn signal_pending(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines().any(|l| {
            (l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
                && u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16)
                    .is_ok_and(|m| m != 0)
        })
    })
}

const SIGCHLD_BIT: u64 = 1 << (17 - 1);

fn sigchld_pending(pid: i32) -> bool {
    let mut paths = vec![format!("/proc/{pid}/status")];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        paths.extend(tasks.flatten().map(|t| format!("{}/status", t.path().display())));
    }
    paths.iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|s| {
            s.lines().any(|l| {
                (l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
                    && u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16)
                        .is_ok_and(|m| m & SIGCHLD_BIT != 0)
            })
        })
    })
}

fn all_threads_sleeping(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
            })
            .is_some_and(|st| st == "S")
    })
}

/// What became of each victim when the run ended. A signal sent just before the design
/// returned may still be pending (the kill(2) returned, the victim has not run yet): a pending
/// signal is ground truth too, so its effect is waited for (bounded).
pub fn victim_fates(victims: &[Victim]) -> Vec<(i32, Option<Fate>)> {
    victims
        .iter()
        .map(|v| {
            let wait =
                if signal_pending(v.pid()) { Duration::from_secs(1) } else { Duration::ZERO };
            (v.pid(), v.fate(wait).ok())
        })
        .collect()
}

/// SIGKILLs every process of the namespace but init and the victims (their fates were taken):
/// the end of a replay.
pub fn kill_the_rest(init: &Init, victims: &[Victim]) {
    for pid in init.ns_pids() {
        if pid != 1 && !victims.iter().any(|v| v.pid() == pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether `pid` has exited (or was already reaped).
pub fn exited(pid: i32) -> bool {
    exited_within(pid, Instant::now())
}

/// Whether `reaper` is quiet now: no SIGCHLD pending and all its threads asleep.
pub fn quiet(reaper: i32) -> bool {
    !sigchld_pending(reaper) && all_threads_sleeping(reaper)
}

/// The zombies whose parent is `reaper`, now.
pub fn zombies_of(reaper: i32) -> usize {
    ns_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|(s, pp, _)| s == 'Z' && pp == reaper))
        .count()
}

/// Counts zombies whose parent is `reaper` once the burst is over: every orphan has exited,
/// no SIGCHLD is pending for the reaper, and all its threads sleep (it has done what it will do
/// about the notifications it got). The kernel offers no event for "a process went idle", so
/// this re-reads /proc with a short backoff, bounded by a deadline.
pub fn count_zombies_at_quiescence(reaper: i32, orphans: &[i32]) -> Result<usize, String> {
    let until = Instant::now() + Duration::from_secs(1);
    wait_exited(orphans, Duration::from_secs(1))?;
    let mut backoff = Duration::from_micros(100);
    let mut stable = 0;
    while Instant::now() < until {
        if !sigchld_pending(reaper) && all_threads_sleeping(reaper) {
            stable += 1;
            // Two consecutive quiet looks: the reaper is blocked waiting for the next SIGCHLD.
            if stable >= 2 {
                let n = ns_pids()
                    .into_iter()
                    .filter(|&p| stat(p).is_some_and(|(s, pp, _)| s == 'Z' && pp == reaper))
                    .count();
                return Ok(n);
            }
        } else {
            stable = 0;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(2));
    }
    Err(format!("the reaper {reaper} never went quiet within 1 s"))
}

/// A SIGKILL was sent: the escalation passed the point right before its kill call. (The point
/// after the call may never be recorded: once the child dies the design can return and exit
/// before that thread runs again.) A sweep (`sweep.*`: the leftovers of the tree killed after
/// the child's own end) is not a kill of the child and does not count.
fn kill_was_sent(trace: &Trace) -> bool {
    trace.events.iter().any(|e| {
        e.kind == EventKind::Pass
            && (e.subject.starts_with("escalation.before_kill")
                || e.subject.starts_with("escalation.kill_sent"))
    })
}

fn is_stop_signal(s: i32) -> bool {
    [libc_sig::SIGINT, libc_sig::SIGTERM, libc_sig::SIGHUP].contains(&s)
}

mod libc_sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

/// The verdict for one replay.
pub fn judge(
    race: &Race,
    needs_warning: bool,
    truth: &Truth,
    w: &Workload,
    report: Option<&DesignReport>,
    hooks: Option<&RunReport>,
    trace: &Trace,
) -> Verdict {
    if !truth.lab_errors.is_empty() {
        return Verdict::LabError { message: truth.lab_errors.join("; ") };
    }
    let mut v = Vec::new();
    let mut add = |invariant: Invariant, evidence: String| {
        if race.invariants.contains(&invariant) {
            v.push(Violation { invariant, evidence });
        }
    };
    // I1: a victim that took a recycled PID must not be signalled.
    for (pid, fate) in &truth.victims {
        if let Some(Fate::Killed { signal }) = fate {
            add(
                Invariant::I1NoStraySignal,
                format!(
                    "the victim that took PID {pid} after the child was reaped was killed by signal {signal}"
                ),
            );
        }
    }
    // I2: a SIGKILL sent means the report says so (and the warning is printed), and vice versa.
    if let Some(r) = report {
        let killed = truth.sigkill_seen.unwrap_or_else(|| kill_was_sent(trace));
        let says_forced = matches!(r.reason, Reason::ForcedKill | Reason::Unkillable);
        if killed && !says_forced {
            add(
                Invariant::I2TrueStopReason,
                format!(
                    "SIGKILL was sent (escalation.kill_sent passed) but the design reports {:?}",
                    r.reason
                ),
            );
        } else if killed && needs_warning && r.warnings.is_empty() {
            add(Invariant::I2TrueStopReason, "SIGKILL was sent but no warning was printed".into());
        } else if !killed
            && r.reason == Reason::ForcedKill
            && race.invariants.contains(&Invariant::I2TrueStopReason)
        {
            add(
                Invariant::I2TrueStopReason,
                "the design reports a forced kill that never happened".into(),
            );
        } else if !killed && !says_forced && killed_unasked(truth, w) {
            add(
                Invariant::I2TrueStopReason,
                format!(
                    "the child was SIGKILLed while its parent lived, and nothing decided it (it \
                     died with no exit of its own and no catchable signal; no stop was requested \
                     and no escalation ran); the design reports {:?} with status {:?}",
                    r.reason, r.status
                ),
            );
        }
    }
    // I3: an interrupt that reached the supervisor while the child lived reaches the child.
    // The child's own log is the evidence, and it starts with its `ready` line: a child that
    // never said ready may have died of the forwarded signal before it could log it (a
    // supervisor that forwards an interrupt from spawn on kills it mid-exec). Exploration
    // found the reference "violating" I3 that way; it is unobservable, not a violation.
    let mut unobservable = None;
    // A black-box program's forward is seen at its kill syscall: that is the evidence then.
    let forwarded_at_syscall = |at: u64| truth.stop_signals_sent.iter().any(|&t| t >= at);
    if let Some(&(at, true)) = truth.interrupts.first()
        && w.ready_line.is_none()
        && race.invariants.contains(&Invariant::I3InterruptDelivered)
        && !forwarded_at_syscall(at)
    {
        unobservable = Some(
            "the child never said ready, so whether the interrupt reached it cannot be observed (it may have died of it before its signal log started)".to_string(),
        );
    } else if let Some(&(at, true)) = truth.interrupts.first()
        // A child that ended by itself (the lab's `exit`) before it saw a stop signal was not
        // left untold by the design: I3 asks that a live child be told, not that the design
        // beat the child's own exit (exploration found the lab holding the design inside an
        // action until the child had exited, which no design can beat).
        && w.exiting.is_none()
        && !(w.ready_line.is_none() && forwarded_at_syscall(at))
    {
        let got = w.signals.iter().any(|&(t, s)| t >= at && is_stop_signal(s));
        if !got {
            add(
                Invariant::I3InterruptDelivered,
                format!(
                    "SIGINT reached the supervisor while the child lived; the child never saw SIGINT/SIGTERM/SIGHUP (it saw {:?})",
                    w.signals.iter().map(|(_, s)| *s).collect::<Vec<_>>()
                ),
            );
        }
    }
    // I3 for signals forwarded one by one: each reaches the child as itself.
    let lost: Vec<String> = truth
        .forwarded
        .iter()
        .filter(|&&(at, sig)| !w.signals.iter().any(|&(t, s)| t >= at && s == sig))
        .map(|&(_, sig)| racelab_hooks::syscall_point::signal_name(sig).unwrap_or("?").to_string())
        .collect();
    if !lost.is_empty() {
        add(
            Invariant::I3InterruptDelivered,
            format!(
                "the child never saw {} sent to the supervisor (it saw {:?})",
                lost.join(", "),
                w.signals.iter().map(|(_, s)| *s).collect::<Vec<_>>()
            ),
        );
    }
    // I4: bounded stop.
    if let Some(over) = truth.overran_bound {
        let after = if truth.bound_from_child_end { "the child ended" } else { "the stop request" };
        add(
            Invariant::I4BoundedStop,
            format!(
                "still running {} ms after {after} (bound {} ms)",
                over / 1_000_000,
                race.setup.bound.as_millis()
            ),
        );
    }
    // I5: nothing of the child's tree is left once the supervisor returned or died.
    if !truth.survivors.is_empty() {
        let list: Vec<String> =
            truth.survivors.iter().map(|(p, s, n)| format!("{p} ({n}, state {s})")).collect();
        let lock = if truth.lock_held { "; the lock is still held" } else { "" };
        add(
            Invariant::I5NoSurvivors,
            format!("survivors after the supervisor ended: {}{lock}", list.join(", ")),
        );
    } else if truth.lock_held {
        add(Invariant::I5NoSurvivors, "the lock is still held after the stop".into());
    }
    // I6: no zombies whose parent is the supervisor.
    match &truth.zombies {
        Some(Ok(n)) if *n > 0 => add(
            Invariant::I6NoZombies,
            format!("{n} zombies whose parent is the supervisor remain at quiescence"),
        ),
        Some(Err(e)) => return Verdict::LabError { message: e.clone() },
        _ => {}
    }
    // I7: the reported status is the child's real one.
    if let (Some(code), Some(r)) = (w.exiting, report)
        && r.status != Some(Status::Code(code))
    {
        add(
            Invariant::I7TrueExitStatus,
            format!("the child exited with {code}; the design reports {:?}", r.status),
        );
    }

    let not_forced = schedule_problem(hooks);
    if !v.is_empty() {
        return match not_forced {
            Some(why) => {
                Verdict::NotForced { why: format!("{why} (violations seen anyway: {v:?})") }
            }
            None => Verdict::Reproduced { violations: v },
        };
    }
    if let Some(why) = not_forced.or(unobservable) {
        return Verdict::NotForced { why };
    }
    if truth.hung {
        return Verdict::NotForced {
            why: "the design never finished and no invariant broke".into(),
        };
    }
    if report.is_none()
        && !truth.outer_killed
        && !truth.design_killed
        && truth.overran_bound.is_none()
    {
        return Verdict::LabError {
            message: format!("the design sent no report (it ended {:?})", truth.design_exit),
        };
    }
    Verdict::Prevented
}

/// Ground truth that the child was SIGKILLed with nobody asking (P2): it is dead, it never
/// announced an exit of its own and saw no catchable stop signal (the workload reports both
/// before it ends), no stop was requested, and the design's process was not killed.
fn killed_unasked(truth: &Truth, w: &Workload) -> bool {
    w.pid.is_some()
        && !w.alive()
        && w.exiting.is_none()
        && !w.signals.iter().any(|&(_, s)| is_stop_signal(s))
        && truth.interrupts.is_empty()
        && !truth.outer_killed
        && !truth.design_killed
}

/// A schedule that was not realised: a stuck wait, a failed action.
fn schedule_problem(hooks: Option<&RunReport>) -> Option<String> {
    let h = hooks?;
    if let Some(stuck) = &h.stuck {
        return Some(format!("stuck: {stuck}"));
    }
    if let Some(e) = h.action_errors.first() {
        return Some(format!("action {} at {} failed: {}", e.action, e.at, e.message));
    }
    if let Some(e) = h.unmet_edges.iter().find(|e| e.reason == UnmetReason::Abandoned) {
        return Some(format!("edge {} abandoned", e.edge));
    }
    None
}
