//! The OS shell around the state machine: one thread, one `poll` over the child's pidfd and a
//! signalfd, timers as poll deadlines. It turns kernel facts into [`Event`]s and executes the
//! machine's [`Action`]s through [`Kernel`], the only place that touches the child.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use racelab_hooks::point;
use racelab_sys::spawn::{Grouping, SpawnError, SpawnRequest, spawn};
use rustix::event::{PollFd, PollFlags, poll};

use crate::machine::{Action, Event, Machine, Policy, SpawnFailure, Timer, Tree};
use crate::report::{ExitStatus, Report};
use crate::{Config, Containment, ErrorKind, SupervisorError};

mod kernel;
use kernel::Kernel;

/// Restores the calling thread's signal mask when `run` returns, whatever the path.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

fn cstring(s: &OsStr) -> Result<CString, SupervisorError> {
    CString::new(s.as_bytes()).map_err(|e| {
        SupervisorError::new(
            ErrorKind::InvalidArgument,
            format!("argument {s:?} contains NUL"),
            std::io::Error::other(e),
        )
    })
}

pub(crate) fn supervise(
    config: &Config,
    program: &OsStr,
    args: &[OsString],
) -> Result<Report, SupervisorError> {
    // Single-threaded: the lab must never park this thread waiting for another of our actors.
    racelab_hooks::bind_thread(&["main", "escalation", "duration", "signal", "reaper", "poll"]);
    let start = Instant::now();
    let prog = cstring(program)?;
    let mut argv = vec![prog.clone()];
    for a in args {
        argv.push(cstring(a)?);
    }

    // An inherited SIG_IGN for SIGCHLD would make the kernel auto-reap: statuses lost (I7).
    racelab_sys::spawn::reset_to_default(Signal::SIGCHLD)
        .map_err(|e| SupervisorError::new(ErrorKind::Signals, "reset SIGCHLD to SIG_DFL", e))?;
    let mut set = SigSet::empty();
    for s in &config.forward {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    // Q4: block BEFORE spawn. A signal that arrives from here on, spawn included, stays pending
    // and is read from the signalfd by the loop below, which runs once the pidfd is held.
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| SupervisorError::new(ErrorKind::Signals, "block forwarded signals", e))?;
    let _mask = MaskGuard(old);
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| SupervisorError::new(ErrorKind::Signals, "signalfd", e))?;
    point!(main.handler_installed);

    let is_init = rustix::process::getpid().as_raw_nonzero().get() == 1;
    let reap_orphans = is_init || config.subreaper;
    if config.subreaper && !is_init {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| SupervisorError::new(ErrorKind::Signals, "PR_SET_CHILD_SUBREAPER", e))?;
    }

    let cgroup = match config.containment {
        Containment::Cgroup => Some(kernel::CgroupLeaf::create()?),
        _ => None,
    };
    let tree = match config.containment {
        Containment::None => Tree::ChildOnly,
        Containment::Group => Tree::Group,
        Containment::Cgroup => Tree::Cgroup,
        Containment::PidNamespace => Tree::PidNamespace,
    };
    let mut reset: Vec<Signal> = config.forward.clone();
    reset.extend([Signal::SIGCHLD, Signal::SIGPIPE]);
    let dir_fd = cgroup.as_ref().map(|c| c.dir_fd.as_fd());
    let req = SpawnRequest {
        program: &prog,
        argv: &argv,
        grouping: if tree == Tree::Group { Grouping::NewGroup } else { Grouping::Inherit },
        cgroup_dir: dir_fd,
        cgroup_procs: None,
        new_pid_namespace: config.containment == Containment::PidNamespace,
        reset_signals: &reset,
        reset_all_signals: true,
        die_with_parent: config.die_with_supervisor,
    };
    let mut machine = Machine::new(Policy {
        timeout: config.timeout,
        grace: config.grace,
        kill_wait: config.kill_wait,
        stop_signal: config.stop_signal,
        tree,
    });
    // The pidfd comes from clone3(CLONE_PIDFD), created atomically with the child: there is no
    // instant at which the child exists and we do not hold a handle that pins its identity.
    let spawned = match spawn_with_fallback(&req, cgroup.as_ref()) {
        Ok(s) => s,
        Err(e) => return spawn_failed(&mut machine, start, e, config),
    };
    point!(main.spawned);
    point!(main.pid_stored);
    let mut k = Kernel::new(spawned.pid, spawned.pidfd, cgroup, tree);
    let mut timers = Timers::default();
    let mut report = None;
    apply(
        &mut machine,
        &mut k,
        &mut timers,
        &mut report,
        start,
        Event::Spawned { pid: spawned.pid },
    );

    while report.is_none() {
        wait_for_events(&k.pidfd, &sigfd, timers.next())?;
        // 1. The truth first: an exit seen in this round beats a timer due in this round
        // (Q3: a child that exits right at the deadline is not killed and not called forced).
        check_main_exit(&mut machine, &mut k, &mut timers, &mut report, start);
        // 2. Signals, SIGCHLD included (it coalesces: one read may stand for many exits).
        while report.is_none() {
            let info = match sigfd.read_signal() {
                Ok(Some(info)) => info,
                Ok(None) => break,
                Err(e) => return Err(SupervisorError::new(ErrorKind::Wait, "read signalfd", e)),
            };
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
            if sig == Signal::SIGCHLD {
                point!(reaper.woke);
                if reap_orphans {
                    drain(&mut machine, &mut k, &mut timers, &mut report, start);
                } else {
                    check_main_exit(&mut machine, &mut k, &mut timers, &mut report, start);
                }
                continue;
            }
            point!(signal.handler_entered);
            apply(&mut machine, &mut k, &mut timers, &mut report, start, Event::Signal(sig));
        }
        // 3. Timers that are due.
        while report.is_none() {
            let Some(t) = timers.take_due(Instant::now()) else { break };
            if t == Timer::Duration {
                point!(duration.expired);
            }
            apply(&mut machine, &mut k, &mut timers, &mut report, start, Event::Timer(t));
        }
    }
    if reap_orphans {
        drain(&mut machine, &mut k, &mut timers, &mut report, start);
    }
    let mut report = report.unwrap_or_else(|| unreachable_report(start));
    report.orphans_reaped = k.orphans_reaped;
    report.warnings.append(&mut k.warnings);
    if report.reason == crate::StopReason::Unkillable {
        report.survivors = k.survivors();
        let names: Vec<String> = report
            .survivors
            .iter()
            .map(|s| format!("{} ({}) state {}", s.pid, s.name, s.state))
            .collect();
        report.warnings.push(format!("unkillable: {}", names.join(", ")));
        k.abandon();
    }
    Ok(report)
}

fn unreachable_report(start: Instant) -> Report {
    Report {
        reason: crate::StopReason::Unkillable,
        status: None,
        pid: None,
        signals: Vec::new(),
        swept: false,
        survivors: Vec::new(),
        warnings: vec!["internal: loop ended without a report".into()],
        orphans_reaped: 0,
        elapsed_ns: start.elapsed().as_nanos() as u64,
        exec_error: None,
    }
}

fn spawn_with_fallback(
    req: &SpawnRequest<'_>,
    cgroup: Option<&kernel::CgroupLeaf>,
) -> Result<racelab_sys::spawn::Spawned, SpawnError> {
    match (spawn(req), cgroup) {
        // CLONE_INTO_CGROUP refused (old kernel, seccomp): the child joins by writing
        // cgroup.procs itself before exec, so it is inside before it can fork.
        (Err(SpawnError::Clone(e)), Some(cg)) if refused(&e) => {
            let procs = cg.procs_fd().map_err(SpawnError::Clone)?;
            let retry =
                SpawnRequest { cgroup_dir: None, cgroup_procs: Some(procs.as_fd()), ..*req };
            spawn(&retry)
        }
        (r, _) => r,
    }
}

fn refused(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    [Errno::ENOSYS, Errno::EINVAL, Errno::EPERM, Errno::EOPNOTSUPP]
        .iter()
        .any(|n| e.raw_os_error() == Some(*n as i32))
}

fn spawn_failed(
    machine: &mut Machine,
    start: Instant,
    e: SpawnError,
    config: &Config,
) -> Result<Report, SupervisorError> {
    let failure = match e {
        SpawnError::Exec { step: "exec", error } => {
            let msg = error.to_string();
            match error.raw_os_error() {
                Some(n) if n == nix::errno::Errno::ENOENT as i32 => SpawnFailure::NotFound(msg),
                _ => SpawnFailure::CannotExecute(msg),
            }
        }
        SpawnError::Exec { step: "cgroup", error } => {
            return Err(SupervisorError::new(
                ErrorKind::ContainmentUnavailable,
                "join the cgroup before exec",
                error,
            ));
        }
        SpawnError::Exec { step, error } => {
            return Err(SupervisorError::new(
                ErrorKind::Spawn,
                format!("child setup ({step})"),
                error,
            ));
        }
        SpawnError::Clone(error) => {
            let kind = match (config.containment, error.raw_os_error()) {
                (Containment::PidNamespace | Containment::Cgroup, Some(_)) => {
                    ErrorKind::ContainmentUnavailable
                }
                _ => ErrorKind::Spawn,
            };
            return Err(SupervisorError::new(
                kind,
                format!("spawn with containment {:?}", config.containment),
                error,
            ));
        }
    };
    let actions = machine.on(start.elapsed(), Event::SpawnFailed(failure));
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Finish(r) => Some(*r),
            _ => None,
        })
        .ok_or_else(|| {
            SupervisorError::new(
                ErrorKind::Spawn,
                "spawn failed",
                std::io::Error::other("no report"),
            )
        })
}

/// poll over the pidfd and the signalfd, until `deadline` (or forever when no timer is armed:
/// then the machine is Running with no timeout, and only the child or a signal can end it).
fn wait_for_events(
    pidfd: &OwnedFd,
    sigfd: &SignalFd,
    deadline: Option<Instant>,
) -> Result<(), SupervisorError> {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN), PollFd::new(sigfd, PollFlags::IN)];
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        }
    });
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(SupervisorError::new(ErrorKind::Wait, "poll pidfd and signalfd", e)),
    }
}

/// Peeks at the main child's status without reaping it (`WNOWAIT`): the pid stays pinned as a
/// zombie so the machine can still sweep its group safely before `Action::Reap`.
fn check_main_exit(
    m: &mut Machine,
    k: &mut Kernel,
    t: &mut Timers,
    r: &mut Option<Report>,
    start: Instant,
) {
    if !m.child_alive() {
        return;
    }
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    if let Some(status) = to_status(waitid(Id::PIDFd(k.pidfd.as_fd()), flags)) {
        apply(m, k, t, r, start, Event::Exited(status));
    }
}

/// Reaps every zombie child (SIGCHLD coalesces: drain until none is left). The main child is
/// never reaped here: when the peek finds it, its status goes to the machine, which sweeps and
/// reaps it by pidfd; orphans are reaped by their exact pid.
fn drain(m: &mut Machine, k: &mut Kernel, t: &mut Timers, r: &mut Option<Report>, start: Instant) {
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        let pid = match waitid(Id::All, peek) {
            Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => pid.as_raw(),
            _ => return,
        };
        if pid == k.pid && !k.reaped {
            if m.child_alive() {
                check_main_exit(m, k, t, r, start);
            } else {
                // Unkillable path gave up on it earlier; nothing more will route it.
                return;
            }
            continue;
        }
        // A zombie we peeked is ours until we reap it: the pid cannot be reused in between.
        let _ = waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        );
        k.orphans_reaped += 1;
        point!(reaper.reaped);
    }
}

fn to_status(r: nix::Result<WaitStatus>) -> Option<ExitStatus> {
    match r {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitStatus::Signal(sig as i32)),
        _ => None,
    }
}

/// Feeds one event to the machine and executes its actions in order.
fn apply(
    m: &mut Machine,
    k: &mut Kernel,
    t: &mut Timers,
    r: &mut Option<Report>,
    start: Instant,
    ev: Event,
) {
    for action in m.on(start.elapsed(), ev) {
        match action {
            Action::Signal { target, sig } => k.signal(target, sig),
            Action::KillTree => k.kill_tree(),
            Action::Arm { timer, after } => t.arm(timer, Instant::now() + after),
            Action::Cancel(timer) => t.cancel(timer),
            Action::Sweep => k.sweep(),
            Action::Reap => k.reap(),
            Action::Finish(report) => {
                point!(main.classified);
                *r = Some(*report);
            }
        }
    }
}

/// The machine's timers as deadlines.
#[derive(Default)]
struct Timers([Option<Instant>; 3]);

impl Timers {
    fn slot(t: Timer) -> usize {
        match t {
            Timer::Duration => 0,
            Timer::Grace => 1,
            Timer::KillWait => 2,
        }
    }
    fn arm(&mut self, t: Timer, at: Instant) {
        self.0[Self::slot(t)] = Some(at);
    }
    fn cancel(&mut self, t: Timer) {
        self.0[Self::slot(t)] = None;
    }
    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    fn take_due(&mut self, now: Instant) -> Option<Timer> {
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
