//! After the report: what is left of the child's tree, reaped as it dies when this process is
//! PID 1 or a subreaper, then the leaf removed. Its own file because it waits for SIGCHLD on a
//! signalfd of its own, after the machine has finished, with a bound of its own.

use std::time::{Duration, Instant};

use crate::lab_points::point;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::{PollFd, PollFlags, poll};

use super::kernel;
use super::run::{Left, Run};
use super::timers::timespec;

/// How often `settle` re-reads the leaf when no SIGCHLD comes: only a fallback for a SIGCHLD
/// taken by another thread that does not block it (a broken embedding contract), so that such
/// a loss costs milliseconds, not the whole `SWEEP_WAIT`.
const RECHECK: Duration = Duration::from_millis(5);

/// After the report (the main child is reaped, or given up on): what is left of its tree.
///
/// As PID 1 or subreaper, the orphans of the killed tree (the sweep wrote cgroup.kill, or sent
/// SIGKILL to the group while its leader was an unreaped zombie) are reaped as their SIGCHLDs
/// arrive, while they die (each wake drains every zombie: SIGCHLD coalesces), until this
/// process has no child left (`ECHILD`: the tree was all ours and is all reaped) or the tree is
/// gone ([`Kernel::tree_alive`]: the leaf is empty, read from cgroup.events directly since its
/// poll notification is rate-limited to about 12 ms; or the group has no member left), bounded
/// by `SWEEP_WAIT`. Then the leaf is removed, at once since it is empty. Without orphan reaping
/// the orphans belong to another reaper, and the removal only waits (bounded) for the leaf to
/// empty. Without containment, one drain reaps the zombies already there.
///
/// Limit: a cgroup is left by a process a moment before it becomes a zombie. When this process
/// also has children outside the tree (so `ECHILD` cannot come), a member that left the cgroup
/// in the instant before the last read may become a zombie just after `wait` returned; the
/// embedding program's next wait collects it. (A group member stays a member as a zombie.)
pub(super) fn settle(run: &mut Run, reap_orphans: bool) {
    let deadline = Instant::now() + kernel::SWEEP_WAIT;
    if reap_orphans {
        // A signalfd for SIGCHLD alone, made only when there is something to wait for: it takes
        // SIGCHLD and leaves any other pending signal where it is (the machine is finished; a
        // late SIGTERM stays pending for the restored mask to decide).
        let mut chld = None;
        while run.drain() == Left::Running && run.k.tree_alive() == Some(true) {
            if chld.is_none() {
                let mut only = SigSet::empty();
                only.add(Signal::SIGCHLD);
                let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
                match SignalFd::with_flags(&only, flags) {
                    Ok(fd) => chld = Some(fd),
                    Err(e) => {
                        run.k.warnings.push(format!("signalfd for SIGCHLD: {e}"));
                        break;
                    }
                }
            }
            let Some(chld) = chld.as_ref() else { break };
            match wait_sigchld(chld, deadline) {
                Wake::Sigchld => point!(reaper.woke),
                Wake::Recheck => {}
                Wake::Deadline => {
                    run.k.warnings.push(format!(
                        "the rest of the tree was still alive {:?} after the sweep; stopped \
                         reaping its orphans",
                        kernel::SWEEP_WAIT
                    ));
                    break;
                }
            }
        }
    }
    run.k.remove_leaf(deadline);
}

/// Why [`wait_sigchld`] returned.
enum Wake {
    Sigchld,
    Recheck,
    Deadline,
}

/// Waits for SIGCHLD on its own signalfd and takes it, at most [`RECHECK`] and never past
/// `deadline`.
fn wait_sigchld(chld: &SignalFd, deadline: Instant) -> Wake {
    if let Ok(Some(_)) = chld.read_signal() {
        return Wake::Sigchld;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Wake::Deadline;
    }
    let mut fds = [PollFd::new(chld, PollFlags::IN)];
    match poll(&mut fds, Some(&timespec(left.min(RECHECK)))) {
        Ok(0) | Err(rustix::io::Errno::INTR) => Wake::Recheck,
        Ok(_) => match chld.read_signal() {
            Ok(Some(_)) => Wake::Sigchld,
            _ => Wake::Recheck,
        },
        Err(_) => Wake::Deadline,
    }
}
