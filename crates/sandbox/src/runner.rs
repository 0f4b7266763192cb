//! The runner's side: `__run` (dispatched by [`crate::runner_main`]) builds the sandbox, forks PID 1, enforces the deadline and prints one JSON report.
//!
//! The runner is a fresh exec and stays single-threaded: that is what makes `unshare` of a user
//! namespace legal and `fork` safe here.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::PidfdFlags;
use serde_json::Value;

use crate::init::Init;
use crate::interrupt::RUNNER_ABORT_GRACE;
use crate::modes::{EXIT_PARENT_GONE, EXIT_SETUP, PROBE_SCENARIO};
use crate::proc::{Fate, poll_readable, try_reap};
use crate::spec::{Fault, Pid1Message, Report, RunArgs, UserNs};
use crate::stop::Stop;

/// How long the runner waits for a SIGKILLed PID 1 (and its namespace) to be gone.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The scenario table of a runner: name, input, PID 1's context -> output or error message.
pub type Scenarios<'a> = &'a dyn Fn(&str, Value, &mut Init) -> Result<Value, String>;

/// One run as `runner __run <json>` does it (also what a [`crate::Server`]'s forked runner does).
pub(crate) fn run_mode(json: &str, scenarios: Scenarios<'_>) -> ! {
    let report = match serde_json::from_str::<RunArgs>(json) {
        Ok(args) => {
            // The report goes to a private copy of stdout; fd 1 becomes stderr so that nothing
            // a scenario prints can corrupt the one JSON document.
            let out = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3);
            let _ = nix::unistd::dup2_stdout(std::io::stderr());
            let run = Stop::new().and_then(|stop| setup_and_run(&args, scenarios, None, &stop));
            let report = run.unwrap_or_else(|error| {
                eprintln!("racelab-sandbox: setup failed: {error}");
                Report::SetupFailed { error }
            });
            (report, out.ok())
        }
        Err(e) => (Report::SetupFailed { error: format!("bad runner arguments: {e}") }, None),
    };
    let text = serde_json::to_string(&report.0).unwrap_or_default() + "\n";
    let written = match &report.1 {
        Some(fd) => rustix::io::write(fd, text.as_bytes()).is_ok(),
        None => rustix::io::write(std::io::stdout(), text.as_bytes()).is_ok(),
    };
    std::process::exit(if written { 0 } else { 1 })
}

/// Where PID 1's stdout and stderr go when a [`crate::Server`] clones it directly: the write
/// end of a pipe, and the buffer the server drains its read end into while PID 1 runs.
pub(crate) struct Capture<'a> {
    /// Write end: PID 1's fd 1 and 2 (and so its descendants').
    pub write: OwnedFd,
    /// Read end, drained during the run.
    pub read: OwnedFd,
    /// What was read.
    pub text: &'a mut Vec<u8>,
}

/// Builds the sandbox and runs the scenario in it; a stop signal read from `stop` ends the run
/// early, cleans up and exits the process (see [`crate::interrupt`]). Two ways to get PID 1
/// into fresh namespaces:
/// - `capture: None` (a single-use runner, exec'd or forked): `unshare` this process's
///   namespaces (a user namespace too when needed), then fork PID 1, which inherits stdio;
/// - `capture: Some(_)` (a server, which lives on): `clone3` PID 1 straight into a new PID and
///   mount namespace, leaving the server's own namespaces as they are, with PID 1's stdio
///   pointed at the capture pipe. Only without a user namespace (the caller checks).
pub(crate) fn setup_and_run(
    args: &RunArgs,
    scenarios: Scenarios<'_>,
    capture: Option<Capture<'_>>,
    stop: &Stop,
) -> Result<Report, String> {
    // An ignored SIGCHLD must not leak into PID 1: it makes the kernel auto-reap, so no wait
    // would ever see a child's status. (The mask is `stop`'s: only the stop signals are
    // blocked, and PID 1 unblocks them first thing.)
    racelab_sys::spawn::reset_to_default(Signal::SIGCHLD)
        .map_err(|e| format!("reset SIGCHLD: {e}"))?;
    let leaf = if args.spec.cgroup { Some(crate::leaf::create_leaf()?) } else { None };
    let user_ns = needs_user_ns(args.spec.user_ns);
    let me = rustix::process::getpid();
    let runner_pidfd = rustix::process::pidfd_open(me, PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open(self): {e}"))?;
    // The namespace PID 1 is born in: the cgroups its processes make carry this inode in their
    // names, and an interrupt's cleanup finds them by it (and by the mounts). After an unshare
    // PID 1 mounts a /proc of its own namespace over this mount namespace's, where /proc/self
    // then names nothing: the mounts are probed now, and /proc/self/ns opened now to read
    // pid_for_children from once PID 1 exists (before, the link does not resolve).
    let mounts = racelab_cgroup::Mounts::probe().ok();
    let ns_dir = rustix::fs::open(
        "/proc/self/ns",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok();
    if capture.is_none() {
        enter_namespaces(user_ns)?;
    } else if user_ns {
        return Err("a server clones PID 1 without a user namespace; this run needs one".into());
    }
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    let start = Instant::now();
    let pid1 =
        || pid1_main(args, wr.as_fd(), runner_pidfd.as_fd(), leaf.as_ref(), user_ns, scenarios);
    let (forked, mut capture) = match capture {
        None => (racelab_sys::ns::fork_run(pid1).map_err(|e| format!("fork of PID 1: {e}"))?, None),
        Some(Capture { write, read, text }) => {
            let namespaces = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
            let forked = racelab_sys::clone3::clone3_run_in(namespaces, || {
                // The server's stdin is its request stream and its stdout its answers: PID 1
                // gets neither.
                let redirected = std::fs::File::open("/dev/null").is_ok_and(|null| {
                    nix::unistd::dup2_stdin(null).is_ok()
                        && nix::unistd::dup2_stdout(&write).is_ok()
                        && nix::unistd::dup2_stderr(&write).is_ok()
                });
                if !redirected {
                    return EXIT_SETUP;
                }
                pid1()
            })
            .map_err(|e| format!("clone3 of PID 1 into new namespaces: {e}"))?;
            drop(write);
            (forked, Some((read, text)))
        }
    };
    drop(wr);
    let pidns = if capture.is_none() {
        ns_dir.as_ref().and_then(|dir| pidns_link(dir, "pid_for_children"))
    } else {
        // A clone3'd PID 1 has a mount namespace of its own, so /proc here is still this
        // namespace's; read now, while PID 1 surely lives (an exiting process has left its
        // namespaces).
        racelab_cgroup::pidns_of(forked.pid).ok()
    };
    if args.spec.announce {
        let cg = leaf.as_ref().map_or("-".into(), |l| l.path().display().to_string());
        // One write(2) for the whole line: PID 1 writes to the same stderr concurrently, and
        // eprintln! may split a formatted line into several writes that interleave with it.
        let line = format!("racelab-sandbox: pid1 {} cgroup {cg}\n", forked.pid);
        match capture.as_mut() {
            Some((_, text)) => text.extend_from_slice(line.as_bytes()),
            None => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            }
        }
    }
    if args.spec.fault == Fault::RunnerDiesBeforePdeathsig {
        // Die now, before PID 1 arms PR_SET_PDEATHSIG: its re-check must notice.
        racelab_sys::ns::exit_now(0);
    }
    let deadline = start + args.spec.deadline;
    let drain = capture.as_mut().map(|(fd, text)| (&*fd, &mut **text));
    let (msg, fate, overran) = match supervise(&forked.pidfd, &rd, deadline, drain, stop) {
        Ok(Supervised::Done(msg, fate, overran)) => (msg, fate, overran),
        Ok(Supervised::Stopped(signo)) => {
            abort_run(&forked.pidfd, mounts.as_ref().zip(pidns), leaf);
            // An interrupted runner ends here, whether exec'd, forked or a server: its caller
            // is being interrupted too (or it was signalled alone, and then it must go).
            racelab_sys::ns::exit_now(crate::stop::exit_code(signo))
        }
        Err(e) => {
            // A runner server lives on after this run: PID 1 (and its namespace with it) must
            // not outlive a failed supervision. A single-use runner would take it down by
            // pdeathsig when it exits; a server must do it itself, and reap it (bounded).
            let _ =
                rustix::process::pidfd_send_signal(&forked.pidfd, rustix::process::Signal::KILL);
            if poll_readable(forked.pidfd.as_fd(), KILL_GRACE).unwrap_or(false) {
                let _ = try_reap(forked.pidfd.as_fd());
            }
            return Err(e);
        }
    };
    let elapsed = start.elapsed().as_nanos() as u64;
    if let Some(leaf) = leaf
        && let Err(e) = leaf.kill_and_remove(Instant::now() + KILL_GRACE)
    {
        eprintln!("racelab-sandbox: removing the cgroup leaf: {e}");
    }
    if overran {
        return Ok(Report::Overran { after_ns: elapsed, leftover: fate.is_none() });
    }
    let msg: Option<Pid1Message> = if msg.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&msg).map_err(|e| format!("PID 1's message: {e}"))?)
    };
    Ok(match (msg, fate) {
        (Some(Pid1Message::Done(Ok(output))), _) => Report::Finished { output, wall_ns: elapsed },
        (Some(Pid1Message::Done(Err(error))), _) => Report::Failed { error, wall_ns: elapsed },
        (Some(Pid1Message::Setup(error)), _) => Report::SetupFailed { error },
        (None, Some(Fate::Exited { code })) => {
            Report::Crashed { status: format!("PID 1 exited with {code} without a result") }
        }
        (None, Some(Fate::Killed { signal })) => {
            Report::Crashed { status: format!("PID 1 killed by signal {signal}") }
        }
        (None, _) => Report::Crashed { status: "PID 1 vanished".into() },
    })
}

/// The inode a pid namespace link in the directory `dir` names (`pid:[4026532175]`).
fn pidns_link(dir: &OwnedFd, name: &str) -> Option<u64> {
    let link = rustix::fs::readlinkat(dir, name, Vec::new()).ok()?;
    let text = link.to_str().ok()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Ends an interrupted run: PID 1 and its namespace, and every cgroup they made, gone within
/// [`RUNNER_ABORT_GRACE`]. `pidns`: the cgroup mounts and PID 1's namespace (`None` if either
/// could not be read: then the front end collects what the namespace made, as a dead lab's;
/// not here, where /proc may be PID 1's and would hide every other namespace).
fn abort_run(
    pid1: &OwnedFd,
    pidns: Option<(&racelab_cgroup::Mounts, u64)>,
    leaf: Option<racelab_cgroup::Leaf>,
) {
    let deadline = Instant::now() + RUNNER_ABORT_GRACE;
    // SIGKILL first: from here on PID 1 runs no code of the lab, so it freezes no task and
    // makes no group after the thaw below (the kernel kills the rest of the namespace when
    // PID 1 exits).
    let _ = rustix::process::pidfd_send_signal(pid1, rustix::process::Signal::KILL);
    let collect = || {
        if let Some((mounts, ns)) = pidns {
            let _ = racelab_cgroup::remove_cgroups_of_pidns(mounts, ns, deadline);
        }
    };
    // Before waiting for PID 1: a frozen task keeps its namespace's init from exiting until it
    // is thawed.
    collect();
    let half = deadline.saturating_duration_since(Instant::now()) / 2;
    if !poll_readable(pid1.as_fd(), half).unwrap_or(false) {
        // PID 1 may have been inside a syscall that made or froze a group when the SIGKILL
        // came (it acts on it only on the way out): collect again, then wait the rest.
        collect();
        let _ = poll_readable(pid1.as_fd(), deadline.saturating_duration_since(Instant::now()));
    }
    let _ = try_reap(pid1.as_fd());
    if let Some(leaf) = leaf
        && let Err(e) = leaf.kill_and_remove(deadline)
    {
        eprintln!("racelab-sandbox: removing the cgroup leaf of an interrupted run: {e}");
    }
}

/// Whether a run with this policy needs its own user namespace (to be root inside).
pub(crate) fn needs_user_ns(policy: UserNs) -> bool {
    match policy {
        UserNs::Auto => !rustix::process::geteuid().is_root(),
        UserNs::Always => true,
        UserNs::Never => false,
    }
}

/// unshare(PID + mount [+ user]); with a user namespace, maps the caller's uid/gid to 0.
fn enter_namespaces(user_ns: bool) -> Result<(), String> {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    if user_ns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    nix::sched::unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}"))?;
    if user_ns {
        let w = |path: &str, text: String| {
            std::fs::write(path, &text).map_err(|e| format!("write {text:?} to {path}: {e}"))
        };
        // setgroups must be denied before an unprivileged process may write gid_map.
        w("/proc/self/setgroups", "deny".into())?;
        w("/proc/self/uid_map", format!("0 {uid} 1"))?;
        w("/proc/self/gid_map", format!("0 {gid} 1"))?;
    }
    Ok(())
}

/// How a supervision ended.
enum Supervised {
    /// (message bytes, PID 1's fate if collected, overran).
    Done(Vec<u8>, Option<Fate>, bool),
    /// A stop signal came first (its number); PID 1 still runs.
    Stopped(i32),
}

/// Reads PID 1's message and waits for it to exit, until `deadline`; then SIGKILLs it.
/// `drain`: another pipe to read to EOF meanwhile (PID 1's captured output), so that a
/// chatty scenario never blocks on a full pipe. A stop signal ends it at once.
fn supervise(
    pidfd: &OwnedFd,
    rd: &OwnedFd,
    deadline: Instant,
    mut drain: Option<(&OwnedFd, &mut Vec<u8>)>,
    stop: &Stop,
) -> Result<Supervised, String> {
    let mut msg = Vec::new();
    let mut pipe_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ts = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        if let Some(signo) = stop.pending() {
            return Ok(Supervised::Stopped(signo));
        }
        // PID 1, the stop signals, then its message pipe while open, then its captured output
        // while open.
        let stop_fd = stop.fd();
        let mut fds = vec![PollFd::new(pidfd, PollFlags::IN), PollFd::new(&stop_fd, PollFlags::IN)];
        if pipe_open {
            fds.push(PollFd::new(rd, PollFlags::IN));
        }
        if let Some((fd, _)) = &drain {
            fds.push(PollFd::new(*fd, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if pipe_open && ready[2] {
            pipe_open = read_some(rd, &mut buf, &mut msg)?;
        }
        if drain.is_some() && ready[ready.len() - 1] {
            drain_some(&mut drain, &mut buf)?;
        }
        if ready[0] {
            let fate = try_reap(pidfd.as_fd()).map_err(|e| format!("waitid(PID 1): {e}"))?;
            // Everything in the namespace died before PID 1 became reapable: the pipes' other
            // write ends are closed, so draining to EOF is bounded.
            while pipe_open && poll_readable(rd.as_fd(), KILL_GRACE).unwrap_or(false) {
                pipe_open = read_some(rd, &mut buf, &mut msg)?;
            }
            drain_to_eof(&mut drain, &mut buf)?;
            return Ok(Supervised::Done(msg, fate, false));
        }
    }
    // Overran: SIGKILL to PID 1 makes the kernel kill the whole namespace.
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
    let fate = if poll_readable(pidfd.as_fd(), KILL_GRACE).unwrap_or(false) {
        try_reap(pidfd.as_fd()).ok().flatten()
    } else {
        None
    };
    if fate.is_some() {
        drain_to_eof(&mut drain, &mut buf)?;
    }
    Ok(Supervised::Done(msg, fate, true))
}

/// One read of the captured output; stops draining at EOF.
fn drain_some(drain: &mut Option<(&OwnedFd, &mut Vec<u8>)>, buf: &mut [u8]) -> Result<(), String> {
    if let Some((fd, text)) = drain.as_mut()
        && !read_some(fd, buf, text)?
    {
        *drain = None;
    }
    Ok(())
}

/// Reads the captured output to EOF, each read bounded: called once the namespace is gone.
fn drain_to_eof(
    drain: &mut Option<(&OwnedFd, &mut Vec<u8>)>,
    buf: &mut [u8],
) -> Result<(), String> {
    while let Some((fd, _)) = drain.as_ref() {
        if !poll_readable(fd.as_fd(), KILL_GRACE).unwrap_or(false) {
            break;
        }
        drain_some(drain, buf)?;
    }
    Ok(())
}

/// One read into `msg`; false at EOF.
fn read_some(rd: &OwnedFd, buf: &mut [u8], msg: &mut Vec<u8>) -> Result<bool, String> {
    match rustix::io::read(rd, &mut *buf) {
        Ok(0) => Ok(false),
        Ok(n) => {
            msg.extend_from_slice(&buf[..n]);
            Ok(true)
        }
        Err(rustix::io::Errno::INTR) => Ok(true),
        Err(e) => Err(format!("read from PID 1: {e}")),
    }
}

/// PID 1: arm the parent-death signal, mount /proc, join the cgroup, run the scenario.
fn pid1_main(
    args: &RunArgs,
    out: BorrowedFd<'_>,
    runner: BorrowedFd<'_>,
    leaf: Option<&racelab_cgroup::Leaf>,
    user_ns: bool,
    scenarios: Scenarios<'_>,
) -> i32 {
    // The runner's mask blocks its stop signals: nothing of it may reach the replay.
    if crate::stop::unblock_all().is_err() {
        return EXIT_SETUP;
    }
    if args.spec.fault == Fault::RunnerDiesBeforePdeathsig {
        let _ = poll_readable(runner, Duration::from_secs(10));
    }
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .is_err()
    {
        return EXIT_SETUP;
    }
    // The runner may have died before the prctl above, and then no signal will ever come.
    // getppid() cannot tell (it is 0 here: the parent lives outside this PID namespace), so the
    // re-check is on the runner's pidfd, which is readable once the runner has exited.
    if poll_readable(runner, Duration::ZERO).unwrap_or(true) {
        return EXIT_PARENT_GONE;
    }
    let send = |m: &Pid1Message| {
        let text = serde_json::to_vec(m).unwrap_or_default();
        let _ = rustix::io::write(out, &text);
    };
    let host_pid = match setup_pid1(leaf) {
        Ok(p) => p,
        Err(e) => {
            send(&Pid1Message::Setup(e));
            return EXIT_SETUP;
        }
    };
    let mut init = Init::new(host_pid, user_ns);
    let input = args.input.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        if args.scenario == PROBE_SCENARIO {
            Ok(crate::probe::probe_scenario(&mut init))
        } else {
            scenarios(&args.scenario, input, &mut init)
        }
    }))
    .unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("scenario panicked: {what}"))
    });
    // Drop the handles first: they kill and reap what the scenario left.
    drop(init);
    send(&Pid1Message::Done(result));
    0
}

/// Private mounts, a fresh /proc, the cgroup leaf. Returns PID 1's pid in the host namespace.
fn setup_pid1(leaf: Option<&racelab_cgroup::Leaf>) -> Result<i32, String> {
    use nix::mount::{MsFlags, mount};
    // Before the new /proc hides it, the old one (of the host's PID namespace) names us.
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
        .ok_or("cannot read /proc/self")?;
    // Private first: nothing mounted below may propagate back to the host's mount namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make / private: {e}"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>)
        .map_err(|e| format!("mount a fresh /proc: {e}"))?;
    if let Some(leaf) = leaf {
        leaf.add(0).map_err(|e| format!("join the cgroup leaf: {e}"))?;
    }
    Ok(host_pid)
}
