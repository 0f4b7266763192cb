//! racelab-supervisor: the reference supervisor, a library that runs one child program to
//! completion and survives every race in racelab's catalog (RACES.md).
//!
//! What it is for: running a command with a timeout, forwarding signals to it, stopping it
//! (stop signal, grace period, SIGKILL, cgroup.kill, then an honest "unkillable" report) without
//! ever signalling a recycled PID, without leaving its tree behind, and reaping every zombie when
//! it is PID 1 or a subreaper. The `supervise` binary is a thin CLI over [`run`]. A program
//! that wants to ask for the stop itself embeds a [`Supervisor`]: [`Supervisor::start`],
//! [`Supervisor::stop`], [`Supervisor::wait`] (`run` is `start` then `wait`).
//!
//! What it is not for: running several children, restarting them, or being called from several
//! threads at once. It is not async: [`run`] and [`Supervisor::wait`] block the calling thread.
//!
//! # How it works
//!
//! * [`machine`]: a pure state machine (events in, actions out, no kernel calls) decides every
//!   kill and the stop reason in the same step. Property tests drive it with random event orders.
//! * `shell` (private): one thread, one `poll` over a pidfd for the child and a signalfd for the
//!   forwarded signals and SIGCHLD; timers are poll deadlines. The forwarded signals are blocked
//!   BEFORE the child is spawned, so one that arrives during spawn waits in the signalfd (Q4).
//!   The child is created by `clone3(CLONE_PIDFD)`, so the pidfd exists from the first instant,
//!   and every signal to the child goes through it (Q1). The child's status is peeked with
//!   `waitid(WNOWAIT)`, the tree is swept while the leader is still an unreaped zombie, and only
//!   then is it reaped.
//! * containment ([`Containment`]): a process group, a cgroup v2 leaf, or a PID namespace.
//!
//! docs/supervisor.md explains which choice closes which race.
//!
//! # Embedding
//!
//! ```no_run
//! use std::ffi::{OsStr, OsString};
//! use std::time::Duration;
//! use racelab_supervisor::{Config, Containment, run};
//!
//! let config = Config {
//!     timeout: Some(Duration::from_secs(5)),
//!     grace: Duration::from_millis(500),
//!     containment: Containment::Group,
//!     ..Config::default()
//! };
//! let report = run(&config, OsStr::new("sleep"), &[OsString::from("10")]).expect("supervise");
//! println!("{:?} -> exit code {}", report.reason, report.exit_code(false));
//! ```
//!
//! Or, to decide when to stop from the supervising thread:
//!
//! ```no_run
//! use std::ffi::{OsStr, OsString};
//! use racelab_supervisor::{Config, StopReason, Supervisor};
//!
//! let args = [OsString::from("60")];
//! let mut sup = Supervisor::start(&Config::default(), OsStr::new("sleep"), &args).expect("start");
//! // ... the program decides the work is no longer wanted ...
//! sup.stop(); // SIGTERM to the child's group now; SIGKILL after the grace if it must
//! let report = sup.wait().expect("wait");
//! assert_eq!(report.reason, StopReason::Interrupted);
//! ```
//!
//! Signals: `run` blocks the forwarded signals (and SIGCHLD) in the CALLING thread for its
//! duration (a [`Supervisor`]: from `start` until `wait` returns) and reads them from a
//! signalfd. A process-directed signal (`kill(pid, SIGTERM)`) is delivered to any thread that
//! does not block it, so an embedding program must block them in all its threads (block them in
//! `main` before starting any thread) or have only one thread; the same holds for SIGCHLD when
//! orphans are reaped (subreaper, PID 1), or an orphan's exit may be noticed late.
//! `run` also resets SIGCHLD's disposition to `SIG_DFL` for the process (an inherited `SIG_IGN`
//! makes the kernel reap children, losing their status), and must be the only code in the
//! process that waits for children while it runs (no `waitpid(-1)` elsewhere).

#![forbid(unsafe_code)]

// The lab's named points: armed only when this package is built with its own `hooks` feature
// (the lab's copy, `racelab-supervisor-lab`); otherwise they compile to nothing.
#[cfg_attr(feature = "hooks", path = "lab_points/enabled.rs")]
#[cfg_attr(not(feature = "hooks"), path = "lab_points/disabled.rs")]
mod lab_points;
pub mod machine;
mod proc;
pub mod report;
mod shell;

use std::ffi::{OsStr, OsString};
use std::marker::PhantomData;
use std::time::Duration;

pub use nix::sys::signal::Signal;
pub use report::{Captured, ExitStatus, Report, SentSignal, StopReason, Survivor, Target};

/// How the child's tree is contained, and so what a stop can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// No containment: the child stays in the supervisor's group; only the child is signalled.
    None,
    /// The child leads a new process group; signals go to the group (`kill(-pgid)`), sent only
    /// while the leader is unreaped so the pgid cannot have been reused. A descendant that
    /// calls `setsid` (or `setpgid`) escapes: group containment cannot catch it.
    #[default]
    Group,
    /// The child starts in a fresh cgroup v2 leaf (`CLONE_INTO_CGROUP`); escalation ends with
    /// `cgroup.kill`, which reaches every descendant, setsid escapes included. Needs a writable
    /// cgroup v2 hierarchy (root, or delegation).
    Cgroup,
    /// The child is PID 1 of a new PID namespace (`CLONE_NEWPID`): when it dies the kernel kills
    /// everything in the namespace. Needs `CAP_SYS_ADMIN`. Note the kernel's PID 1 rule: a
    /// signal with default disposition sent to a namespace's init is dropped (only SIGKILL gets
    /// through), so a child without a SIGTERM handler is stopped by the SIGKILL after the grace.
    PidNamespace,
}

/// What to run and how to stop it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Send `stop_signal` after this long (`None`: no timeout).
    pub timeout: Option<Duration>,
    /// Grace period between the stop signal and SIGKILL (`--kill-after`). Always bounded.
    pub grace: Duration,
    /// Signal sent when the timeout expires (`--signal`, default SIGTERM).
    pub stop_signal: Signal,
    /// How the child's tree is contained.
    pub containment: Containment,
    /// Become a child subreaper (`PR_SET_CHILD_SUBREAPER`) and reap every orphan. Implied when
    /// the supervisor is PID 1.
    pub subreaper: bool,
    /// Bounded wait after SIGKILL (and again after cgroup.kill) before reporting the child
    /// unkillable.
    pub kill_wait: Duration,
    /// Signals forwarded to the child. SIGINT, SIGTERM, SIGHUP and SIGQUIT also start a stop.
    pub forward: Vec<Signal>,
    /// `PR_SET_PDEATHSIG(SIGKILL)` in the child: if the supervisor is killed, the child (and
    /// with PID namespace containment its whole tree) dies too. Fires when the thread that
    /// called [`run`] exits.
    pub die_with_supervisor: bool,
    /// Capture the child's standard output: it goes to a pipe the supervisor reads while the
    /// child runs (so the child never blocks on a full pipe), into [`Report::captured`].
    /// `false`: the child inherits the supervisor's standard output.
    pub capture_stdout: bool,
    /// The same for standard error.
    pub capture_stderr: bool,
    /// After the child's end and the sweep of its tree, how long the supervisor keeps reading
    /// captured output for its end of file. Every process that inherited the pipe holds it
    /// open, so a descendant the containment could not reach (a `setsid` escape under group
    /// containment) would keep the end of file away forever (H1): past this bound the
    /// supervisor stops reading, closes its end and says so in a warning.
    pub output_wait: Duration,
}

/// The signals forwarded by default.
pub const DEFAULT_FORWARD: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

impl Default for Config {
    fn default() -> Config {
        Config {
            timeout: None,
            grace: Duration::from_secs(10),
            stop_signal: Signal::SIGTERM,
            containment: Containment::Group,
            subreaper: false,
            kill_wait: Duration::from_secs(1),
            forward: DEFAULT_FORWARD.to_vec(),
            die_with_supervisor: true,
            capture_stdout: false,
            capture_stderr: false,
            output_wait: Duration::from_millis(500),
        }
    }
}

/// What kind of failure of the supervisor itself (not of the child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The program or an argument contains a NUL byte.
    InvalidArgument,
    /// Blocking signals, the signalfd, or SIGCHLD's disposition could not be set up.
    Signals,
    /// The requested containment is not permitted here (no privilege, no cgroup v2, ...).
    ContainmentUnavailable,
    /// The child process could not be created.
    Spawn,
    /// Waiting for events failed.
    Wait,
}

/// A failure of the supervisor itself. Exit code 125 in `supervise`.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SupervisorError {
    kind: ErrorKind,
    what: String,
    #[source]
    source: std::io::Error,
}

impl SupervisorError {
    pub(crate) fn new(
        kind: ErrorKind,
        what: impl Into<String>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        SupervisorError { kind, what: what.into(), source: source.into() }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Blocks `signals` in the calling thread (`pthread_sigmask(SIG_BLOCK)`), so that a signal sent
/// before [`run`] starts waits for it instead of killing the process. A binary calls this first
/// thing in `main`, before any thread exists (new threads inherit the mask); [`run`] reads the
/// pending signals from its signalfd.
pub fn block_signals(signals: &[Signal]) -> Result<(), SupervisorError> {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| SupervisorError::new(ErrorKind::Signals, "block signals", e))
}

/// Runs `program` with `args` under supervision and returns when it is over: the child exited
/// and was reaped, or it could not be stopped within the bounds (`Unkillable`), or it could not
/// be executed (`ExecFailed`/`NotFound`, still an `Ok` report). `program` is searched in PATH.
///
/// The same as [`Supervisor::start`] followed by [`Supervisor::wait`]. See the crate docs for
/// the signal-mask contract with the embedding program.
pub fn run(config: &Config, program: &OsStr, args: &[OsString]) -> Result<Report, SupervisorError> {
    Supervisor::start(config, program, args)?.wait()
}

/// One supervision held by the embedding program: started by [`Supervisor::start`], which
/// returns as soon as the child exists; optionally stopped by [`Supervisor::stop`]; ended by
/// [`Supervisor::wait`], which runs the event loop to the report.
///
/// # One thread
///
/// `start`, `stop` and `wait` must be called on the same thread, which is why a `Supervisor` is
/// neither `Send` nor `Sync`: `start` blocks the forwarded signals and SIGCHLD in the calling
/// thread and they stay blocked until `wait` returns (then the thread's previous mask is
/// restored); the signalfd that `wait` reads only sees signals directed at the process or at
/// that thread; and `die_with_supervisor` ties the child to the thread that spawned it. The
/// other contracts of [`run`] hold from `start` to the end of `wait`: no other code in the
/// process waits for children, and SIGCHLD's disposition is `SIG_DFL`.
///
/// # Time only moves in `wait`
///
/// Between `start` and `wait` nothing runs on the supervisor's behalf: the timeout, the grace
/// period and the bounded waits after SIGKILL are deadlines that `wait` acts on. A program that
/// calls `stop` and then does other work before `wait` delays the escalation by that much; the
/// bound "a stop ends within grace + 2 x kill_wait" counts from the later of `stop` and `wait`.
///
/// # Other children of the process
///
/// With `subreaper` (or as PID 1) the supervisor reaps every zombie child of the process, up
/// to a bounded settle step after the report: that is its job as a reaper. A process that
/// embeds it that way must not have children of its own while a `Supervisor` lives (their
/// statuses would be taken and their PIDs freed while the program still holds the numbers).
/// Without `subreaper` only the main child is ever waited for, by pidfd.
///
/// ```compile_fail
/// fn movable_to_another_thread<T: Send>() {}
/// movable_to_another_thread::<racelab_supervisor::Supervisor>(); // error: not Send
/// ```
///
/// # A stop request without a signal
///
/// [`Supervisor::stop`] is the embedding program asking for the stop on the supervising
/// thread: no signal to the supervisor is involved, so it costs no signal delivery and no
/// wake-up of a blocked thread; the machine gets it as [`machine::Event::Stop`] and its actions
/// (the stop signal to the child or its group) are executed before `stop` returns. The stop is
/// the same bounded one a SIGTERM to the supervisor starts (stop signal, grace, SIGKILL,
/// cgroup.kill, `Unkillable`), and the report's reason is [`StopReason::Interrupted`] (or
/// `ForcedKill`/`Unkillable` if it had to escalate; `Exited` if the child had already exited).
///
/// # Dropped without `wait`
///
/// A `Supervisor` dropped before `wait` returned (an early return, a panic) SIGKILLs the child
/// and its tree and reaps the child, waiting at most `kill_wait`; then it restores the mask.
pub struct Supervisor {
    session: shell::Session,
    /// Not `Send`/`Sync`: the signal mask and the signalfd belong to the starting thread.
    _thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("pid", &self.session.pid()).finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Blocks the forwarded signals and SIGCHLD in the calling thread, sets up the signalfd,
    /// the subreaper and the containment, spawns `program` (searched in PATH) with `args`, and
    /// returns at once, holding the child's pidfd. Nothing is waited for: a signal that arrives
    /// from here on waits in the signalfd until [`Supervisor::wait`] reads it.
    ///
    /// A program that cannot be executed is not an error: `wait` returns its `NotFound` or
    /// `ExecFailed` report. Errors are the supervisor's own (signals, containment, spawn).
    pub fn start(
        config: &Config,
        program: &OsStr,
        args: &[OsString],
    ) -> Result<Supervisor, SupervisorError> {
        let session = shell::Session::start(config, program, args)?;
        Ok(Supervisor { session, _thread: PhantomData })
    }

    /// The child's pid, `None` when it could not be started. For display and logs only: once
    /// the child is reaped the number may name another process. Signal it through
    /// [`Supervisor::stop`], never by this number.
    pub fn pid(&self) -> Option<i32> {
        self.session.pid()
    }

    /// Asks for the stop, from the supervising thread, and executes it at once: the configured
    /// `stop_signal` (with SIGCONT) to the child, or to its group with group containment (with
    /// cgroup containment to the leader only, unless the stop signal is SIGKILL: then one
    /// cgroup.kill for the whole tree). The grace period starts now; [`Supervisor::wait`]
    /// escalates if it runs out. A second request, or one after the child exited, changes
    /// nothing.
    pub fn stop(&mut self) {
        self.session.stop();
    }

    /// Runs the event loop until the supervision is over and returns the report: the child was
    /// reaped (and, with containment, the rest of its tree killed and, as PID 1 or subreaper,
    /// reaped), or it could not be stopped within the bounds (`Unkillable`). Restores the
    /// calling thread's signal mask before returning.
    pub fn wait(mut self) -> Result<Report, SupervisorError> {
        self.session.wait()
    }
}
