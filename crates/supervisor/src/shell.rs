//! The OS shell around the state machine: one thread, one `poll` over the child's pidfd and a
//! signalfd, timers as poll deadlines. It turns kernel facts into [`Event`]s and executes the
//! machine's [`Action`]s through [`Kernel`], the only place that touches the child.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::lab_points::point;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use racelab_sys::spawn::{Grouping, SpawnError, SpawnRequest, spawn};
use rustix::event::{PollFd, PollFlags, poll};

use crate::machine::{Action, Event, Machine, Policy, SpawnFailure, Timer, Tree};
use crate::report::{ExitStatus, Report};
use crate::{Config, Containment, ErrorKind, SupervisorError};

mod kernel;
mod output;
use kernel::Kernel;
use output::Output;

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

/// One supervision: from `start` (signals blocked, child spawned) to `wait`'s report. Lives on
/// the thread that started it (the mask guard restores that thread's mask).
pub(crate) struct Session {
    /// The child and its machine; `None` when the program could not be started.
    run: Option<Run>,
    /// The report of a program that could not be started (`ExecFailed`, `NotFound`).
    early: Option<Report>,
    sigfd: SignalFd,
    reap_orphans: bool,
    kill_wait: Duration,
    /// The captured streams (none unless the config asks for them), and how long they are
    /// read after the child's end.
    output: Output,
    output_wait: Duration,
    /// `wait` returned its report: nothing is left for `Drop` to clean up.
    finished: bool,
    /// Last field: the mask is restored after the child and its tree were dealt with.
    _mask: MaskGuard,
}

/// The running part of a session: the machine, the kernel binding, timers, the report once
/// the machine has finished.
struct Run {
    m: Machine,
    k: Kernel,
    t: Timers,
    r: Option<Report>,
    start: Instant,
}

/// What a drain of the zombie children left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// `ECHILD`: this process has no child at all any more.
    NoChild,
    /// Children remain, none of them (yet) a zombie we may reap here.
    Running,
}

impl Session {
    pub(crate) fn start(
        config: &Config,
        program: &OsStr,
        args: &[OsString],
    ) -> Result<Session, SupervisorError> {
        // Single-threaded: the lab must never park this thread waiting for another of our actors.
        crate::lab_points::bind_thread(&[
            "main",
            "escalation",
            "duration",
            "signal",
            "reaper",
            "poll",
        ]);
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
        // Q4: block BEFORE spawn. A signal that arrives from here on, spawn included, stays
        // pending and is read from the signalfd by the loop in `wait`, once the pidfd is held.
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .map_err(|e| SupervisorError::new(ErrorKind::Signals, "block forwarded signals", e))?;
        let mask = MaskGuard(old);
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        let sigfd = SignalFd::with_flags(&set, flags)
            .map_err(|e| SupervisorError::new(ErrorKind::Signals, "signalfd", e))?;
        point!(main.handler_installed);

        let is_init = rustix::process::getpid().as_raw_nonzero().get() == 1;
        let reap_orphans = is_init || config.subreaper;
        if config.subreaper && !is_init {
            rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|e| {
                SupervisorError::new(ErrorKind::Signals, "PR_SET_CHILD_SUBREAPER", e)
            })?;
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
        // The write ends live until the spawn returned: then only the child's tree holds them.
        let (output, child_ends) = Output::create(config.capture_stdout, config.capture_stderr)?;
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
            stdout: child_ends.stdout.as_ref().map(|f| f.as_fd()),
            stderr: child_ends.stderr.as_ref().map(|f| f.as_fd()),
            // P1: the lab's point between the clone and PR_SET_PDEATHSIG (none outside the lab).
            child_hook: crate::lab_points::CHILD_HOOK,
        };
        let mut machine = Machine::new(Policy {
            timeout: config.timeout,
            grace: config.grace,
            kill_wait: config.kill_wait,
            stop_signal: config.stop_signal,
            tree,
        });
        let mut session = Session {
            run: None,
            early: None,
            sigfd,
            reap_orphans,
            kill_wait: config.kill_wait,
            output,
            output_wait: config.output_wait,
            finished: false,
            _mask: mask,
        };
        // The pidfd comes from clone3(CLONE_PIDFD), created atomically with the child: there is
        // no instant at which the child exists and we do not hold a handle that pins its
        // identity.
        let spawned = spawn_with_fallback(&req, cgroup.as_ref());
        // The child has its copies of the write ends now (or failed): ours must go, or the
        // captured streams could never reach their end of file.
        drop(child_ends);
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                session.early = Some(spawn_failed(&mut machine, start, e, config)?);
                return Ok(session);
            }
        };
        point!(main.spawned);
        point!(main.pid_stored);
        let k = Kernel::new(spawned.pid, spawned.pidfd, cgroup, tree);
        let mut run = Run { m: machine, k, t: Timers::default(), r: None, start };
        run.apply(Event::Spawned { pid: spawned.pid });
        session.run = Some(run);
        Ok(session)
    }

    /// The main child's pid (for display: it may be reused once the child is reaped).
    pub(crate) fn pid(&self) -> Option<i32> {
        self.run.as_ref().map(|r| r.k.pid)
    }

    /// A stop request from the supervising thread, executed at once.
    pub(crate) fn stop(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        // The truth first, as in the loop: a child that already exited is reported as exited,
        // not as stopped by this request.
        run.check_main_exit();
        run.apply(Event::Stop);
    }

    /// The event loop, to the end: the report, once the child is reaped and its tree is gone.
    pub(crate) fn wait(&mut self) -> Result<Report, SupervisorError> {
        let Some(run) = self.run.as_mut() else {
            self.finished = true;
            let mut report =
                self.early.take().unwrap_or_else(|| unreachable_report(Instant::now()));
            report.captured = self.output.drain(self.output_wait, &mut report.warnings);
            return Ok(report);
        };
        while run.r.is_none() {
            wait_for_events(&run.k.pidfd, &self.sigfd, &self.output.open_fds(), run.t.next())?;
            // Output first, so that a child writing much never blocks on a full pipe.
            self.output.read_available();
            // 1. The truth first: an exit seen in this round beats a timer due in this round
            // (Q3: a child that exits right at the deadline is not killed and not called forced).
            run.check_main_exit();
            // 2. Signals, SIGCHLD included (it coalesces: one read may stand for many exits).
            while run.r.is_none() {
                let info = match self.sigfd.read_signal() {
                    Ok(Some(info)) => info,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(SupervisorError::new(ErrorKind::Wait, "read signalfd", e));
                    }
                };
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
                if sig == Signal::SIGCHLD {
                    point!(reaper.woke);
                    if self.reap_orphans {
                        run.drain();
                    } else {
                        run.check_main_exit();
                    }
                    continue;
                }
                point!(signal.handler_entered);
                run.apply(Event::Signal(sig));
            }
            // 3. Timers that are due.
            while run.r.is_none() {
                let Some(t) = run.t.take_due(Instant::now()) else { break };
                if t == Timer::Duration {
                    point!(duration.expired);
                }
                run.apply(Event::Timer(t));
            }
        }
        let mut report = run.r.take().unwrap_or_else(|| unreachable_report(run.start));
        let unkillable = report.reason == crate::StopReason::Unkillable;
        if unkillable {
            report.survivors = run.k.survivors();
            run.k.abandon();
        }
        settle(run, self.reap_orphans);
        report.orphans_reaped = run.k.orphans_reaped;
        report.warnings.append(&mut run.k.warnings);
        // H1: the tree is swept (and, as a reaper, its orphans reaped); what is left holding the
        // pipe is outside the containment, so the read to the end of file is bounded.
        report.captured = self.output.drain(self.output_wait, &mut report.warnings);
        if unkillable {
            let names: Vec<String> = report
                .survivors
                .iter()
                .map(|s| format!("{} ({}) state {}", s.pid, s.name, s.state))
                .collect();
            report.warnings.push(format!("unkillable: {}", names.join(", ")));
        }
        self.finished = true;
        Ok(report)
    }
}

impl Drop for Session {
    /// A session dropped before `wait` returned (an early return or a panic in the embedding
    /// program, or a failed poll): the tree is SIGKILLed and the child reaped, bounded by
    /// `kill_wait`, so nothing outlives the supervisor's handle.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(run) = self.run.as_mut() {
            run.k.abort(self.kill_wait);
        }
    }
}

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
fn settle(run: &mut Run, reap_orphans: bool) {
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

fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}

impl Run {
    /// Feeds one event to the machine and executes its actions in order.
    fn apply(&mut self, ev: Event) {
        for action in self.m.on(self.start.elapsed(), ev) {
            match action {
                Action::Signal { target, sig } => self.k.signal(target, sig),
                Action::KillTree => self.k.kill_tree(),
                Action::Arm { timer, after } => self.t.arm(timer, Instant::now() + after),
                Action::Cancel(timer) => self.t.cancel(timer),
                Action::Sweep => self.k.sweep(),
                Action::Reap => self.k.reap(),
                Action::Finish(report) => {
                    point!(main.classified);
                    self.r = Some(*report);
                }
            }
        }
    }

    /// Peeks at the main child's status without reaping it (`WNOWAIT`): the pid stays pinned
    /// as a zombie so the machine can still sweep its group safely before `Action::Reap`.
    fn check_main_exit(&mut self) {
        if !self.m.child_alive() {
            return;
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        if let Some(status) = to_status(waitid(Id::PIDFd(self.k.pidfd.as_fd()), flags)) {
            self.apply(Event::Exited(status));
        }
    }

    /// Reaps every zombie child (SIGCHLD coalesces: drain until none is left). While the main
    /// child is unreaped it is never reaped here: when the peek finds it, its status goes to
    /// the machine, which sweeps and reaps it by pidfd; orphans are reaped by their exact pid.
    /// Once the main child is reaped there is no status left to protect, and each orphan is
    /// reaped in one call.
    fn drain(&mut self) -> Left {
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let reap = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
        loop {
            if self.k.reaped {
                match waitid(Id::All, reap) {
                    Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => {
                        self.k.orphans_reaped += 1;
                        point!(reaper.reaped);
                        continue;
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(nix::errno::Errno::ECHILD) => return Left::NoChild,
                    _ => return Left::Running,
                }
            }
            let pid = match waitid(Id::All, peek) {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                    pid.as_raw()
                }
                Err(nix::errno::Errno::ECHILD) => return Left::NoChild,
                _ => return Left::Running,
            };
            if pid == self.k.pid && !self.k.reaped {
                if self.m.child_alive() {
                    self.check_main_exit();
                } else {
                    // Unkillable path gave up on it earlier; nothing more will route it.
                    return Left::Running;
                }
                continue;
            }
            // A zombie we peeked is ours until we reap it: the pid cannot be reused in between.
            let _ = waitid(
                Id::Pid(nix::unistd::Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            );
            self.k.orphans_reaped += 1;
            point!(reaper.reaped);
        }
    }
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
        captured: None,
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

/// poll over the pidfd, the signalfd and the captured output, until `deadline` (or forever when
/// no timer is armed: then the machine is Running with no timeout, and only the child or a
/// signal can end it).
fn wait_for_events(
    pidfd: &OwnedFd,
    sigfd: &SignalFd,
    output: &[std::os::fd::BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> Result<(), SupervisorError> {
    let mut fds = vec![PollFd::new(pidfd, PollFlags::IN), PollFd::new(sigfd, PollFlags::IN)];
    fds.extend(output.iter().map(|fd| PollFd::new(fd, PollFlags::IN)));
    let timeout = deadline.map(|d| timespec(d.saturating_duration_since(Instant::now())));
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(SupervisorError::new(ErrorKind::Wait, "poll pidfd and signalfd", e)),
    }
}

fn to_status(r: nix::Result<WaitStatus>) -> Option<ExitStatus> {
    match r {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitStatus::Signal(sig as i32)),
        _ => None,
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
