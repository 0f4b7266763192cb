//! Kill latency: from the stop request to every process of the tree reaped. The tree (the
//! helper and N-1 forked children, all blocked in pause/sleep) is built and confirmed ready
//! before the clock starts. The bench process is a child subreaper, so the orphans of a killed
//! tree are reaped by it and "every process reaped" is `waitid(P_ALL)` reaching ECHILD.
//!
//! Two ways to ask the reference supervisor for the stop, each next to its own floor:
//! [`reference`] calls `Supervisor::stop` on the supervising thread (the supervisor's own work:
//! compared with a raw kill), [`reference_via_sigterm`] has another thread send SIGTERM to the
//! process, which the supervisor reads from its signalfd (that adds a cross-thread signal
//! delivery and wake-up: compared with [`request_then_kill_pid`], a raw kill behind the same
//! request path).

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use racelab_cgroup::{Leaf, Mounts};
use racelab_supervisor::{Config, Containment, Supervisor};
use racelab_sys::spawn::{Grouping, Spawned};
use rustix::process::{Pid, Signal};

use crate::procs::{
    Helper, ReadyPipe, TreeGuard, descendants_via_proc, now_ns, reap_all, wait_ready,
};

/// A built tree: the helper (leader of its own group unless placed otherwise) and its guard.
#[derive(Debug)]
pub struct Tree {
    /// The helper, parent of the other N-1.
    pub leader: Spawned,
    /// Kills and reaps the group if the iteration fails.
    pub guard: TreeGuard,
    /// Number of processes.
    pub size: usize,
}

/// Builds a tree of `size` processes in a new process group (and in `leaf` if given) and
/// returns once every process has reported that it is about to block.
pub fn build_tree(helper: &Helper, size: usize, leaf: Option<&Leaf>) -> io::Result<Tree> {
    let mut ready = ReadyPipe::new()?;
    let dir = leaf.map(Leaf::dir_fd).transpose().map_err(io::Error::other)?;
    let args = vec!["tree".to_string(), size.to_string(), ready.write_arg()];
    let leader = helper.spawn(&args, Grouping::NewGroup, dir.as_ref().map(AsFd::as_fd))?;
    let guard = TreeGuard::new(leader.pid);
    ready.close_write();
    wait_ready(ready.read.as_fd(), size)?;
    Ok(Tree { leader, guard, size })
}

fn pid(p: i32) -> io::Result<Pid> {
    Pid::from_raw(p).ok_or_else(|| io::Error::other("pid 0"))
}

fn expect_reaped(what: &str, got: usize, want: usize) -> io::Result<()> {
    if got != want {
        return Err(io::Error::other(format!("{what}: reaped {got} of {want} processes")));
    }
    Ok(())
}

fn finish(tree: Tree, t0: u64, reaped: usize) -> io::Result<Duration> {
    let t1 = now_ns();
    expect_reaped("kill", reaped, tree.size)?;
    tree.guard.disarm();
    Ok(Duration::from_nanos(t1 - t0))
}

fn wait_one(id: impl Fn() -> Id<'static>) -> io::Result<usize> {
    loop {
        match waitid(id(), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Signaled(..)) => return Ok(1),
            Ok(other) => return Err(io::Error::other(format!("unexpected status {other:?}"))),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One process: `kill(pid, SIGKILL)`, then `waitid(P_PID)`.
pub fn kill_pid(helper: &Helper) -> io::Result<Duration> {
    let tree = build_tree(helper, 1, None)?;
    let t0 = now_ns();
    rustix::process::kill_process(pid(tree.leader.pid)?, Signal::KILL)?;
    let n = wait_one(|| Id::Pid(nix::unistd::Pid::from_raw(tree.leader.pid)))?;
    finish(tree, t0, n)
}

/// One process: `pidfd_send_signal(SIGKILL)`, then `waitid(P_PIDFD)`.
pub fn kill_pidfd(helper: &Helper) -> io::Result<Duration> {
    let tree = build_tree(helper, 1, None)?;
    let t0 = now_ns();
    rustix::process::pidfd_send_signal(tree.leader.pidfd.as_fd(), Signal::KILL)?;
    let raw = tree.leader.pid;
    let n = loop {
        match waitid(Id::PIDFd(tree.leader.pidfd.as_fd()), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Signaled(..)) => break 1,
            Ok(other) => return Err(io::Error::other(format!("pid {raw}: status {other:?}"))),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    finish(tree, t0, n)
}

/// One process, with the reference's request path: another thread takes t0 and sends SIGTERM
/// to this process; this thread, blocked in `poll` on a signalfd for SIGTERM (as `run` is),
/// wakes, reads it, then `kill(pid, SIGKILL)` and `waitid(P_PID)`. Informational: it shows how
/// much of the reference's single-child figure is the wake-up on a stop request rather than
/// the supervisor's own work. Needs SIGTERM blocked in every thread.
pub fn request_then_kill_pid(helper: &Helper) -> io::Result<Duration> {
    use nix::sys::signal::{SigSet, Signal as NixSignal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    set.add(NixSignal::SIGTERM);
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    let tree = build_tree(helper, 1, None)?;
    let requester = std::thread::spawn(move || -> io::Result<u64> {
        let t0 = now_ns();
        rustix::process::kill_process(rustix::process::getpid(), Signal::TERM)?;
        Ok(t0)
    });
    loop {
        let mut fds = [rustix::event::PollFd::new(&sfd, rustix::event::PollFlags::IN)];
        let ts = rustix::time::Timespec { tv_sec: 10, tv_nsec: 0 };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return Err(io::Error::other("stop request not seen in 10 s")),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if sfd.read_signal()?.is_some() {
            break;
        }
    }
    rustix::process::kill_process(pid(tree.leader.pid)?, Signal::KILL)?;
    let n = wait_one(|| Id::Pid(nix::unistd::Pid::from_raw(tree.leader.pid)))?;
    let t0 = requester.join().map_err(|_| io::Error::other("stop requester panicked"))??;
    finish(tree, t0, n)
}

/// The tree: `kill(-pgid, SIGKILL)`, then reap until ECHILD.
pub fn kill_pgid(helper: &Helper, size: usize) -> io::Result<Duration> {
    let tree = build_tree(helper, size, None)?;
    let t0 = now_ns();
    rustix::process::kill_process_group(pid(tree.leader.pid)?, Signal::KILL)?;
    let n = reap_all()?;
    finish(tree, t0, n)
}

/// The tree in a fresh cgroup v2 leaf: write "1" to cgroup.kill, then reap until ECHILD. The
/// leaf is created before and removed after the timed part.
///
/// A fresh leaf per iteration, because on this kernel (6.18) a child cloned with
/// `CLONE_INTO_CGROUP` into a leaf that was ever killed through cgroup.kill is killed at birth.
pub fn cgroup_kill(helper: &Helper, size: usize) -> io::Result<Duration> {
    let leaf = bench_leaf()?;
    let tree = build_tree(helper, size, Some(&leaf))?;
    let t0 = now_ns();
    leaf.kill().map_err(io::Error::other)?;
    let n = reap_all()?;
    let latency = finish(tree, t0, n)?;
    leaf.remove(Instant::now() + Duration::from_secs(5)).map_err(io::Error::other)?;
    Ok(latency)
}

/// The tree found by walking /proc (every `/proc/<pid>/stat`, parent links), each process
/// killed by pid, then reap until ECHILD.
pub fn proc_walk(helper: &Helper, size: usize) -> io::Result<Duration> {
    let tree = build_tree(helper, size, None)?;
    let t0 = now_ns();
    for p in descendants_via_proc(tree.leader.pid)? {
        // Safe here: every listed process is an unreaped descendant of ours (a static tree).
        let _ = rustix::process::kill_process(pid(p)?, Signal::KILL);
    }
    let n = reap_all()?;
    finish(tree, t0, n)
}

/// Whether cgroup v2 leaves with cgroup.kill can be created here; `Err(why)` otherwise.
pub fn cgroup_available() -> Result<(), String> {
    let base = Mounts::probe()
        .map_err(|e| format!("cannot read the cgroup mounts: {e}"))?
        .v2_base()
        .ok_or("no cgroup v2 hierarchy is mounted")?;
    let leaf =
        Leaf::create(&base, "bench-probe").map_err(|e| format!("cannot create a v2 leaf: {e}"))?;
    let ok = leaf.path().join("cgroup.kill").exists();
    leaf.remove(Instant::now() + Duration::from_secs(1)).map_err(|e| e.to_string())?;
    if ok { Ok(()) } else { Err("the kernel has no cgroup.kill (Linux < 5.14)".into()) }
}

/// A leaf for the raw cgroup.kill floor.
pub fn bench_leaf() -> io::Result<Leaf> {
    let base = Mounts::probe()
        .map_err(io::Error::other)?
        .v2_base()
        .ok_or_else(|| io::Error::other("no cgroup v2"))?;
    Leaf::create(&base, "bench").map_err(io::Error::other)
}

/// The reference supervisor's stop as an embedding program asks for it: the tree runs under
/// `Supervisor::start` (subreaper on, `containment` as given); once every process is ready,
/// t0, `Supervisor::stop()` (on this, the supervising thread: no signal to the supervisor),
/// `Supervisor::wait()`, then this process reaps whatever is left (nothing, when the supervisor
/// reaped the whole tree itself) until ECHILD: t1. Compared with the raw kill floors.
pub fn reference(helper: &Helper, size: usize, containment: Containment) -> io::Result<Duration> {
    let mut ready = ReadyPipe::new()?;
    let args: Vec<OsString> =
        ["tree".to_string(), size.to_string(), ready.write_arg()].map(Into::into).into();
    let config = Config { containment, subreaper: true, ..Config::default() };
    let mut sup = Supervisor::start(&config, helper.program().as_os_str(), &args)
        .map_err(|e| io::Error::other(e.to_string()))?;
    ready.close_write();
    if let Err(e) = wait_ready(ready.read.as_fd(), size) {
        // Dropping the supervisor kills the tree; the orphans come to this subreaper.
        drop(sup);
        let _ = reap_all();
        return Err(e);
    }
    let t0 = now_ns();
    sup.stop();
    let report = sup.wait();
    let rest = reap_all()?;
    let t1 = now_ns();
    reference_done(report, rest, size, t1 - t0)
}

/// Checks a reference run's report (a real status, no warning) and that the whole tree was
/// reaped: the main child, the orphans `wait` reaped, and the `rest` the bench reaped after.
fn reference_done(
    report: Result<racelab_supervisor::Report, racelab_supervisor::SupervisorError>,
    rest: usize,
    size: usize,
    latency_ns: u64,
) -> io::Result<Duration> {
    let report = report.map_err(|e| io::Error::other(e.to_string()))?;
    if report.status.is_none() || !report.warnings.is_empty() {
        return Err(io::Error::other(format!("reference: unexpected report {report:?}")));
    }
    let reaped = 1 + report.orphans_reaped as usize + rest;
    expect_reaped("reference", reaped, size)?;
    Ok(Duration::from_nanos(latency_ns))
}

/// The reference supervisor's stop through a signal, as `supervise` gets it from outside: the
/// tree runs under `racelab_supervisor::run` (subreaper on, `containment` as given); once it is
/// ready another thread takes t0 and sends SIGTERM to this process (every thread blocks
/// SIGTERM, `run` reads it from its signalfd). t1: `run` has returned and every orphan is
/// reaped (ECHILD). Compared with [`request_then_kill_pid`], the same request path in front of
/// a raw kill.
///
/// Needs SIGTERM blocked in every thread of the process (the bench's `main` does it first).
pub fn reference_via_sigterm(
    helper: &Helper,
    size: usize,
    containment: Containment,
) -> io::Result<Duration> {
    let mut ready = ReadyPipe::new()?;
    let args: Vec<OsString> =
        ["tree".to_string(), size.to_string(), ready.write_arg()].map(Into::into).into();
    let read = ready.read.try_clone()?;
    let requester = std::thread::spawn(move || -> io::Result<u64> {
        let r = wait_ready(read.as_fd(), size);
        let t0 = now_ns();
        // Sent even when the tree never got ready: `run` must return either way.
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, Signal::TERM)?;
        r.map(|()| t0)
    });
    let config = Config { containment, subreaper: true, ..Config::default() };
    let report = racelab_supervisor::run(&config, helper.program().as_os_str(), &args);
    let rest = reap_all()?;
    let t1 = now_ns();
    ready.close_write();
    let t0 = requester.join().map_err(|_| io::Error::other("stop requester panicked"))??;
    reference_done(report, rest, size, t1 - t0)
}
