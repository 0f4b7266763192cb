//! How the lab reads ground truth from the kernel at the end of (and during) a replay: what is
//! left alive in the namespace, what became of the victims, whether a lock is held, whether a
//! reaper went quiet and how many zombies it left, and whether this machine offers what a race
//! needs. Never from a design's word: /proc, pidfds and flock only. The scenarios call it; what
//! it finds goes into the [`Truth`](crate::truth::Truth) the oracle judges.

use crate::catalog::{Race, Stop};
use racelab_sandbox::{Fate, Init, Victim};
use std::time::{Duration, Instant};

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
pub fn lock_held(path: &std::path::Path) -> bool {
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

/// The signals pending in a /proc `status` file (its `SigPnd` and `ShdPnd` sets, or'd; 0 when
/// it cannot be read).
fn pending_in(status_path: &str) -> u64 {
    let text = std::fs::read_to_string(status_path).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .fold(0, |all, m| all | m)
}

/// Whether `pid` has any signal pending (process-wide or for its main thread).
pub fn signal_pending(pid: i32) -> bool {
    pending_in(&format!("/proc/{pid}/status")) != 0
}

const SIGCHLD_BIT: u64 = 1 << (17 - 1);

/// Whether SIGCHLD is pending for `pid`, process-wide or for any of its threads.
fn sigchld_pending(pid: i32) -> bool {
    let mut paths = vec![format!("/proc/{pid}/status")];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        paths.extend(tasks.flatten().map(|t| format!("{}/status", t.path().display())));
    }
    paths.iter().any(|p| pending_in(p) & SIGCHLD_BIT != 0)
}

/// The context switches (voluntary and not) of every thread of `pid`, summed: it stays the
/// same only while no thread of it sleeps, wakes or is preempted.
pub fn context_switches(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
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

/// Returns once the kernel has finished telling the parent of a process whose pidfd just
/// became readable that it ended: its SIGCHLD is queued and its waiters are woken.
///
/// A readable pidfd is not yet that. `exit_notify()` sets the exit state and wakes pidfd
/// pollers (`do_notify_pidfd`, at the top of `do_notify_parent`) before it queues the parent's
/// SIGCHLD, all inside one `write_lock_irq(&tasklist_lock)` section; a lab that polls the pidfd
/// from the other CPU can let the design go on while the signal is still unsent, and a stalled
/// vCPU stretches that to hundreds of microseconds (CI saw S1's handler run after the pid was
/// stored, 1 replay in thousands). `waitid(P_ALL)` takes the same lock for reading before it
/// looks at anything, so it returns only after that section ended. WNOHANG | WNOWAIT: it never
/// blocks and reaps nothing of the lab's own.
pub fn exit_notified() {
    use rustix::process::{WaitId, WaitIdOptions};
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    // ECHILD (the lab has no child) still took the lock: the result does not matter.
    let _ = rustix::process::waitid(WaitId::All, options);
}

/// The zombies of `reaper`, counted after two quiet looks that saw `switches` context switches,
/// if the count is what a quiet reaper left. Looks and count are not one instant: a process
/// that dies between the last look and the count is a zombie its parent has not been told of
/// yet (exploration saw the reference's own main child, SIGINTed, counted as a leaked zombie
/// while main was about to reap it). So the count stands only if, once every exit it saw has
/// finished notifying ([`exit_notified`]), the reaper is still quiet and has not switched
/// context since the looks; otherwise the caller looks again.
pub fn zombies_of_quiet(reaper: i32, switches: u64) -> Option<usize> {
    let zombies = zombies_of(reaper);
    exit_notified();
    (quiet(reaper) && context_switches(reaper) == switches).then_some(zombies)
}

/// The note of a Z1 replay whose supervisor ended before it went quiet after the burst.
pub const NO_COUNT: &str = "the supervisor ended before it went quiet: no zombies to count";

/// Whether `pid` has ended: gone, or a zombie. An ended reaper is never quiet (its state is
/// `Z`, not `S`), and whatever it left is its reaper's to collect, not a zombie it keeps.
pub fn ended(pid: i32) -> bool {
    stat(pid).is_none_or(|(state, _, _)| matches!(state, 'Z' | 'X'))
}

/// Counts zombies whose parent is `reaper` once the burst is over: every orphan has exited,
/// no SIGCHLD is pending for the reaper, and all its threads sleep (it has done what it will do
/// about the notifications it got), in two looks with no context switch of the reaper between
/// them and up to the count ([`zombies_of_quiet`]). The kernel offers no event for "a process
/// went idle", so this re-reads /proc with a short backoff, bounded by a deadline. `None`: the
/// reaper ended first (a stop that came before it went quiet), so there is nothing to count.
pub fn count_zombies_at_quiescence(reaper: i32, orphans: &[i32]) -> Result<Option<usize>, String> {
    let until = Instant::now() + Duration::from_secs(1);
    wait_exited(orphans, Duration::from_secs(1))?;
    let mut backoff = Duration::from_micros(100);
    // Quiet looks in a row, and the reaper's context switches at the last of them.
    let mut stable: (u32, u64) = (0, 0);
    while Instant::now() < until {
        if ended(reaper) {
            return Ok(None);
        }
        if quiet(reaper) {
            let switches = context_switches(reaper);
            // A reaper that slept and woke between two quiet looks was not quiet between them.
            stable = if stable.0 > 0 && stable.1 == switches {
                (stable.0 + 1, switches)
            } else {
                (1, switches)
            };
            // Two consecutive quiet looks: the reaper is blocked waiting for the next SIGCHLD.
            if stable.0 >= 2 {
                match zombies_of_quiet(reaper, switches) {
                    Some(zombies) => return Ok(Some(zombies)),
                    None => stable = (0, 0),
                }
            }
        } else {
            stable = (0, 0);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(2));
    }
    Err(format!("the reaper {reaper} never went quiet within 1 s"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A shell waiting for its one child: a reaper that is quiet until the child ends.
    struct Reaper {
        shell: std::process::Child,
        child: i32,
        /// Opened while the shell, its parent, still waits for it: it names that child.
        child_fd: Option<std::os::fd::OwnedFd>,
    }

    impl Reaper {
        fn start() -> Reaper {
            let mut shell = Command::new("sh")
                .args(["-c", "sleep 1000 & wait"])
                .stdin(Stdio::null())
                .spawn()
                .expect("sh");
            let pid = shell.id() as i32;
            let children = format!("/proc/{pid}/task/{pid}/children");
            let until = Instant::now() + Duration::from_secs(10);
            // Until the shell has its child and sleeps in its wait.
            loop {
                let child = std::fs::read_to_string(&children)
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok());
                if let Some(child) = child
                    && quiet(pid)
                {
                    let child_fd = rustix::process::Pid::from_raw(child).and_then(|p| {
                        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                    });
                    return Reaper { shell, child, child_fd };
                }
                assert!(Instant::now() < until, "the shell never waited for its child");
                let _ = shell.try_wait();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    impl Drop for Reaper {
        /// The shell's child first: orphaned, a `sleep 1000` would outlive the test (and, as a
        /// background job of a shell, it ignores a SIGINT to the suite).
        fn drop(&mut self) {
            if let Some(fd) = &self.child_fd {
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
            let _ = self.shell.kill();
            let _ = self.shell.wait();
        }
    }

    #[test]
    fn a_quiet_reaper_is_counted() {
        let r = Reaper::start();
        let pid = r.shell.id() as i32;
        assert_eq!(zombies_of_quiet(pid, context_switches(pid)), Some(0));
    }

    /// The window exploration found (Z1 against the reference, docs/exploration.md): a child
    /// that dies after the reaper's last quiet look and before the count is a zombie its parent
    /// is about to reap, not one it left. Killed in exactly that window here, every time.
    #[test]
    fn a_child_that_dies_after_the_quiet_looks_voids_the_count() {
        let r = Reaper::start();
        let pid = r.shell.id() as i32;
        let switches = context_switches(pid);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(r.child),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the shell's own child, which this test started");
        wait_exited(&[r.child], Duration::from_secs(10)).expect("the child ends");
        assert_eq!(zombies_of_quiet(pid, switches), None);
    }
}
