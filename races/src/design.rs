//! The Design adapter: one small interface every design is driven through, returning the
//! design's own report ([`crate::design_report`]) for the oracle to compare with ground truth.
//!
//! An adapter runs inside the design process (a child of the lab's init, one design per
//! process: the legacy replicas keep real process-wide state). It starts the workload under
//! supervision with the race's options and returns the design's own report. External events
//! (interrupts, terminations) are real signals the lab sends to this process.

use crate::catalog::{DesignId, Setup, Stop};
use crate::design_report::{DesignReport, Reason, Status};
use racelab_legacy::{RunOptions, StopReason as PianoReason, piano};
use racelab_supervisor_lab as reference;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// The reference's grace when the race asks for none: piano's `--kill-timeout 0` means "never
/// escalate"; the reference always bounds its wait, so it gets its own bound instead.
const REFERENCE_DEFAULT_GRACE: Duration = Duration::from_millis(200);

fn std_status(status: std::process::ExitStatus) -> Option<Status> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => Some(Status::Code(c)),
        (None, Some(s)) => Some(Status::Signal(s)),
        _ => None,
    }
}

/// What a design supervises, and how: the race's options, the program and its arguments, the
/// runner executable (which also runs the legacy wrappers) and the lock file of the
/// lock-wrapper designs (O1).
#[derive(Debug, Clone, Copy)]
pub struct Supervised<'a> {
    /// The race's options.
    pub setup: &'a Setup,
    /// The runner executable.
    pub runner: &'a Path,
    /// The program to supervise (the workload).
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [OsString],
    /// The lock file of O1's designs.
    pub lockfile: &'a Path,
}

/// Runs `design` over `job`'s program, in this (dedicated) process.
///
/// Returns only for designs that return: the exec-based wrapper replaces this process.
pub fn run(design: DesignId, job: &Supervised<'_>) -> DesignReport {
    let Supervised { setup, program, args, lockfile, .. } = *job;
    match design {
        DesignId::GlobalAtomics | DesignId::PollingFix => {
            let mut opts = RunOptions::new(program.as_os_str(), args.to_vec());
            opts.duration = setup.duration;
            opts.kill_timeout = setup.grace;
            let outcome = if design == DesignId::GlobalAtomics {
                racelab_legacy::global_atomics::run_child(&opts)
            } else {
                racelab_legacy::polling_fix::run_child(&opts)
            };
            match outcome {
                Ok(o) => DesignReport {
                    reason: match o.stop_reason {
                        PianoReason::Normal => Reason::Exited,
                        PianoReason::Duration => Reason::Duration,
                        PianoReason::Interrupted => Reason::Interrupted,
                        PianoReason::ForceKilled => Reason::ForcedKill,
                    },
                    status: std_status(o.status),
                    exit_code: piano::exit_code(&o),
                    warnings: if o.stop_reason == PianoReason::ForceKilled {
                        vec![piano::FORCE_KILL_WARNING.to_string()]
                    } else {
                        Vec::new()
                    },
                    raw: format!("{o:?}"),
                },
                Err(e) => DesignReport::failed(e),
            }
        }
        DesignId::UnboundedPoll => {
            match racelab_legacy::unbounded_poll::run(program.as_os_str(), args) {
                Ok(status) => DesignReport {
                    reason: Reason::Unreported,
                    status: std_status(status),
                    exit_code: racelab_legacy::cli::shell_code(status),
                    warnings: Vec::new(),
                    raw: format!("{status:?}"),
                },
                Err(e) => DesignReport::failed(e),
            }
        }
        DesignId::ReapOnce | DesignId::GreedyReaper => {
            let result = if design == DesignId::ReapOnce {
                racelab_legacy::reap_once::run(program.as_os_str(), args)
            } else {
                racelab_legacy::greedy_reaper::run(program.as_os_str(), args)
            };
            match result {
                Ok(code) => DesignReport {
                    reason: Reason::Unreported,
                    // These agents report a code only: a lost status shows as their made-up -1.
                    status: Some(Status::Code(code)),
                    exit_code: code,
                    warnings: Vec::new(),
                    raw: format!("exit code {code}"),
                },
                Err(e) => DesignReport::failed(e),
            }
        }
        DesignId::ExecUnderLock => {
            // Replaces this process with the program, which inherits the lock: never returns.
            racelab_legacy::wrapper_main(LOCK_MODE, lock_wrapper_args(lockfile, program, args))
        }
        DesignId::PreexecPdeathsig
        | DesignId::SpawnerThread
        | DesignId::GroupKillAfterReap
        | DesignId::ReapingHandler
        | DesignId::UnboundedDrain => run_next_five(design, job),
        DesignId::Reference => run_reference(job),
    }
}

/// The replicas of the next five races (P1, P2, G1, S1, H1).
fn run_next_five(design: DesignId, job: &Supervised<'_>) -> DesignReport {
    let Supervised { setup, program, args, .. } = *job;
    let program = program.as_os_str();
    let timeout = setup.duration.unwrap_or(Duration::from_secs(10));
    let status_only = |status: std::process::ExitStatus| DesignReport {
        reason: Reason::Unreported,
        status: std_status(status),
        exit_code: racelab_legacy::cli::shell_code(status),
        warnings: Vec::new(),
        raw: format!("{status:?}"),
    };
    let timed = |status: std::process::ExitStatus, timed_out: bool, forced: bool, raw: String| {
        DesignReport {
            reason: match (timed_out, forced) {
                (true, true) => Reason::ForcedKill,
                (true, false) => Reason::Duration,
                // The child's end, as the design sees it: exited, or killed by a signal.
                (false, _) => Reason::Exited,
            },
            status: std_status(status),
            exit_code: racelab_legacy::cli::shell_code(status),
            warnings: Vec::new(),
            raw,
        }
    };
    let result = match design {
        // The sensor container polls every 5 s; the lab kills it before it matters.
        DesignId::PreexecPdeathsig => racelab_legacy::preexec_pdeathsig::run(
            program,
            args,
            racelab_legacy::preexec_pdeathsig::POLL_INTERVAL,
        )
        .map(status_only),
        DesignId::SpawnerThread => racelab_legacy::spawner_thread::run(program, args, timeout)
            .map(|o| timed(o.status, o.timed_out, false, format!("{o:?}"))),
        DesignId::GroupKillAfterReap => {
            racelab_legacy::group_kill_after_reap::run(program, args).map(status_only)
        }
        DesignId::ReapingHandler => {
            racelab_legacy::reaping_handler::run(program, args).map(|code| DesignReport {
                reason: Reason::Unreported,
                status: Some(Status::Code(code)),
                exit_code: code,
                warnings: Vec::new(),
                raw: format!("exit code {code}"),
            })
        }
        // run() raises TimeoutExpired after process.kill(): a SIGKILL it decided.
        DesignId::UnboundedDrain => racelab_legacy::unbounded_drain::run(program, args, timeout)
            .map(|o| {
                let raw = format!(
                    "{:?} (timed out: {}, {} bytes of stderr)",
                    o.status,
                    o.timed_out,
                    o.stderr.len()
                );
                timed(o.status, o.timed_out, true, raw)
            }),
        other => {
            return DesignReport::failed(format!("{} is not one of the next five", other.name()));
        }
    };
    result.unwrap_or_else(DesignReport::failed)
}

/// `argv[1]` that makes a runner executable run a legacy wrapper mode (`__legacy
/// exec-under-lock --lockfile L -- ...`): how the reference runs the lock wrapper of O1 under
/// itself. The runner dispatches it ([`crate::runner`]).
pub const LEGACY_MODE: &str = "__legacy";

/// The legacy wrapper mode that takes a lock and execs the program (O1).
const LOCK_MODE: &str = "exec-under-lock";

/// `--lockfile L -- program args`: the lock wrapper's arguments, for both designs of O1.
fn lock_wrapper_args(lockfile: &Path, program: &Path, args: &[OsString]) -> Vec<OsString> {
    let mut argv: Vec<OsString> =
        vec!["--lockfile".into(), lockfile.into(), "--".into(), program.into()];
    argv.extend(args.iter().cloned());
    argv
}

fn run_reference(job: &Supervised<'_>) -> DesignReport {
    let Supervised { setup, runner, program, args, lockfile } = *job;
    if let Err(e) = reference::block_signals(&reference::DEFAULT_FORWARD) {
        return DesignReport::failed(e);
    }
    let mut config = reference::Config {
        timeout: setup.duration,
        grace: if setup.grace.is_zero() { REFERENCE_DEFAULT_GRACE } else { setup.grace },
        subreaper: setup.subreaper,
        kill_wait: Duration::from_millis(100),
        ..reference::Config::default()
    };
    if setup.capture_stderr {
        // H1: the reference captures what the legacy design captures (the child's stderr,
        // which its tree inherits), with its read after the child's end bounded.
        config.capture_stderr = true;
        config.output_wait = Duration::from_millis(100);
    }
    let (program, args): (OsString, Vec<OsString>) = match setup.stop {
        Stop::KillOuter => {
            // The tree is a PID namespace whose init dies with the supervisor: when the
            // supervisor dies no cleanup code has to run for the tree to go (O1, O3).
            config.containment = reference::Containment::PidNamespace;
            config.die_with_supervisor = true;
            if setup.under_lock {
                // The same lock wrapper the legacy design is, now under the reference.
                let mut argv = vec![LEGACY_MODE.into(), LOCK_MODE.into()];
                argv.extend(lock_wrapper_args(lockfile, program, args));
                (runner.into(), argv)
            } else {
                (program.into(), args.to_vec())
            }
        }
        Stop::FreezeThenInterrupt => {
            config.containment = if racelab_cgroup::v2_writable() {
                reference::Containment::Cgroup
            } else {
                reference::Containment::Group
            };
            (program.into(), args.to_vec())
        }
        Stop::None | Stop::KillDesign => (program.into(), args.to_vec()),
    };
    match reference::run(&config, &program, &args) {
        Ok(r) => DesignReport {
            reason: match r.reason {
                reference::StopReason::Exited | reference::StopReason::SignalledExternally => {
                    Reason::Exited
                }
                reference::StopReason::Duration => Reason::Duration,
                reference::StopReason::Interrupted => Reason::Interrupted,
                reference::StopReason::ForcedKill => Reason::ForcedKill,
                reference::StopReason::Unkillable => Reason::Unkillable,
                reference::StopReason::ExecFailed | reference::StopReason::NotFound => {
                    Reason::Failed
                }
            },
            status: r.status.map(|s| match s {
                reference::ExitStatus::Code(c) => Status::Code(c),
                reference::ExitStatus::Signal(s) => Status::Signal(s),
            }),
            exit_code: r.exit_code(false),
            warnings: r.warnings.clone(),
            raw: serde_json::to_string(&r).unwrap_or_default(),
        },
        Err(e) => DesignReport::failed(e),
    }
}
