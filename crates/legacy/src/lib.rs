//! racelab-legacy: faithful replicas of known-broken supervisor designs, instrumented with
//! racelab's named points.
//!
//! Each module replicates one public design, broken in exactly the way the original was: not
//! more (no invented bugs), not less (no accidental fixes). Each starts with a doc comment that
//! names the code it models (project, file, commit), its race windows, and what a faithful
//! replica must keep. The lab drives them through adapters in the `races` package; the oracle
//! never trusts their reports.
//!
//! | design | models | races |
//! |---|---|---|
//! | [`global_atomics`] | piano `run_child` at ecca3b9^ | Q1, Q3, Q4 |
//! | [`polling_fix`] | piano at ecca3b9 (PR #621) | residual: grace 0 waits forever |
//! | [`unbounded_poll`] | buildah `run_common.go` (issue #6786) | O2 |
//! | [`reap_once`] | catatonit < 0.1.5 (issue #4) | Z1 |
//! | [`greedy_reaper`] | exec-sandbox guest-agent `reap_zombies` | Z2 |
//! | [`exec_under_lock`] | rvos `qemu-lock.sh` before d32fae6 | O1 |
//! | [`exec_under_lock_fixed`] | rvos `qemu-lock.sh` at d32fae6 | late traps, kill of a reaped PID |
//! | [`preexec_pdeathsig`] | StackStorm/st2 `on_parent_exit` in the sensor container | P1 |
//! | [`spawner_thread`] | golang/go #27505's report; UniRL c1da41b (issue #275) | P2 |
//! | [`group_kill_after_reap`] | bazel `process-wrapper-legacy.cc` (issue #11910) | G1 |
//! | [`reaping_handler`] | OpenRC `openrc-run.c` `svc_exec` before bae9e685 (pull #898) | S1 |
//! | [`unbounded_drain`] | CPython `subprocess.run` before bpo-37424 (pull #14490) | H1 |
//!
//! Process-wide state is real process-wide state (statics, signal dispositions, subreaper
//! status): run one replica per process, through the `racelab-legacy-wrapper` binary
//! (`racelab-legacy-wrapper MODE [options] -- program args`), never inside a test harness.
//! Every kill goes through [`os::kill`], which refuses to signal strangers outside a racelab
//! sandbox.
//!
//! Points (`racelab_hooks::point!`) compile to nothing unless the `hooks` feature is on.
//!
//! What this crate is not for: supervising anything for real. See `racelab-supervisor`.

pub mod cli;
#[cfg_attr(feature = "hooks", path = "env_schedule/enabled.rs")]
#[cfg_attr(not(feature = "hooks"), path = "env_schedule/disabled.rs")]
pub mod env_schedule;
pub mod error;
pub mod exec_under_lock;
pub mod exec_under_lock_fixed;
pub mod global_atomics;
pub mod greedy_reaper;
pub mod group_kill_after_reap;
pub mod os;
pub mod piano;
pub mod polling_fix;
pub mod preexec_pdeathsig;
pub mod reap_once;
pub mod reaping_handler;
pub mod spawner_thread;
pub mod unbounded_drain;
pub mod unbounded_poll;

pub use error::LegacyError;
pub use piano::{ChildOutcome, RunOptions, StopReason};

/// The modes of `racelab-legacy-wrapper`, with the entry point each runs.
pub const MODES: &[&str] = &[
    "global-atomics",
    "polling-fix",
    "unbounded-poll",
    "reap-once",
    "greedy-reaper",
    "exec-under-lock",
    "exec-under-lock-fixed",
    "preexec-pdeathsig",
    "spawner-thread",
    "group-kill-after-reap",
    "reaping-handler",
    "unbounded-drain",
    "workload",
];

/// Runs `mode` with `args` (everything after the mode) and exits with its code: the wrapper
/// binary's whole body. With the `hooks` feature, a schedule in `RACELAB_LEGACY_SCHEDULE` is
/// armed around the run (see [`env_schedule`]).
pub fn wrapper_main(mode: &str, args: impl IntoIterator<Item = std::ffi::OsString>) -> ! {
    let armed = env_schedule::arm_from_env();
    let code = main_code(mode, args);
    armed.finish();
    std::process::exit(code)
}

/// Runs `mode` with `args` and returns its exit code (modes that `exec` or run a workload do
/// not return).
pub fn main_code(mode: &str, args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    match mode {
        "global-atomics" => global_atomics::main_code(args),
        "polling-fix" => polling_fix::main_code(args),
        "unbounded-poll" => unbounded_poll::main_code(args),
        "reap-once" => reap_once::main_code(args),
        "greedy-reaper" => greedy_reaper::main_code(args),
        "exec-under-lock" => exec_under_lock::main_code(args),
        "exec-under-lock-fixed" => exec_under_lock_fixed::main_code(args),
        "preexec-pdeathsig" => preexec_pdeathsig::main_code(args),
        "spawner-thread" => spawner_thread::main_code(args),
        "group-kill-after-reap" => group_kill_after_reap::main_code(args),
        "reaping-handler" => reaping_handler::main_code(args),
        "unbounded-drain" => unbounded_drain::main_code(args),
        // The lab's one workload program (`racelab_sandbox::workload`), for the replicas'
        // tests: `racelab-legacy-wrapper workload [--ignore-term] [--pdeathsig] ...`.
        "workload" => {
            let args: Vec<String> =
                args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
            racelab_sandbox::workload_main(&args)
        }
        other => {
            eprintln!(
                "racelab-legacy-wrapper: unknown mode {other:?}; modes: {}",
                MODES.join(", ")
            );
            2
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn points_are_live_exactly_when_the_hooks_feature_is_on() {
        assert_eq!(racelab_hooks::ENABLED, cfg!(feature = "hooks"));
    }
}
