//! The names a runner executable answers to (its hidden `argv[1]` modes and built-in scenario)
//! and PID 1's own exit codes: the bottom of the crate, shared by the caller's side and the
//! runner's.

/// The `argv[1]` that selects a sandbox run in [`crate::runner_main`].
pub const RUN_MODE: &str = "__run";
/// The `argv[1]` that selects a runner server ([`crate::Server`]) in [`crate::runner_main`].
pub const SERVE_MODE: &str = "__serve";
/// The `argv[1]` that selects the workload program in [`crate::runner_main`].
pub const WORKLOAD_MODE: &str = "__workload";
/// The built-in scenario [`crate::Capabilities::probe`] runs.
pub const PROBE_SCENARIO: &str = "__probe";
/// PID 1's exit code when the runner was already dead when it armed `PR_SET_PDEATHSIG`.
pub const EXIT_PARENT_GONE: i32 = 75;
/// PID 1's exit code when it could not set up the namespace (mounts, cgroup).
pub const EXIT_SETUP: i32 = 70;
