//! What piano's two run loops share: options, the report and its consumer (`cmd_run`).
//!
//! Models rocketman-code/piano `src/main.rs`: `enum StopReason`, `struct ChildOutcome`, and
//! the consumer's warning text and exit-code mapping, identical before (`ecca3b9^`) and after
//! (`ecca3b9`, PR #621) the fix. The two loops live in [`crate::global_atomics`] and
//! [`crate::polling_fix`].

use std::ffi::OsString;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::cli::{self, Args};
use crate::error::LegacyError;

/// The warning `cmd_run`/`cmd_profile` print when the child had to be SIGKILLed.
pub const FORCE_KILL_WARNING: &str =
    "warning: program did not respond to SIGTERM -- terminated after --kill-timeout";

/// piano's `--kill-timeout` default.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the child stopped, as the design believes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopReason {
    /// The child exited on its own.
    Normal,
    /// `--duration` expired and the child was sent SIGTERM.
    Duration,
    /// The user interrupted (SIGINT) and the child stopped.
    Interrupted,
    /// The child was SIGKILLed after `--kill-timeout`.
    ForceKilled,
}

/// The design's own report (`ChildOutcome { status, stop_reason }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildOutcome {
    /// The wait status main collected.
    pub status: ExitStatus,
    /// The stop reason main classified.
    pub stop_reason: StopReason,
}

/// `piano run`'s options that matter to the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// The program to run.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// `--duration`: stop the child (SIGTERM) after this long.
    pub duration: Option<Duration>,
    /// `--kill-timeout`: SIGTERM-to-SIGKILL grace; zero disables escalation.
    pub kill_timeout: Duration,
}

impl RunOptions {
    /// Options for `program args` with no duration and the default kill timeout.
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> Self {
        Self { program: program.into(), args, duration: None, kill_timeout: DEFAULT_KILL_TIMEOUT }
    }

    /// Parses `[--duration-ms N] [--kill-timeout-ms N] -- program args...`.
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Self, LegacyError> {
        let parsed = Args::parse(args, &["duration-ms", "kill-timeout-ms"])?;
        let (program, rest) = parsed.command()?;
        let mut opts = Self::new(program, rest);
        opts.duration = parsed.millis("duration-ms")?;
        if let Some(kill_timeout) = parsed.millis("kill-timeout-ms")? {
            opts.kill_timeout = kill_timeout;
        }
        Ok(opts)
    }

    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd
    }

    pub(crate) fn spawn_error(&self, source: std::io::Error) -> LegacyError {
        LegacyError::Spawn { program: self.program.to_string_lossy().into_owned(), source }
    }
}

/// The consumer's exit code: Duration and ForceKilled are intentional stops (0), Interrupted is
/// 130, Normal passes the child's code through (128 + N when a signal killed it).
pub fn exit_code(outcome: &ChildOutcome) -> i32 {
    match outcome.stop_reason {
        StopReason::Duration | StopReason::ForceKilled => 0,
        StopReason::Interrupted => 130,
        StopReason::Normal => cli::shell_code(outcome.status),
    }
}

/// What `cmd_run` does with the report: print the warning on ForceKilled, return the exit code.
pub fn finish(outcome: &ChildOutcome) -> i32 {
    if outcome.stop_reason == StopReason::ForceKilled {
        eprintln!("{FORCE_KILL_WARNING}");
    }
    exit_code(outcome)
}

/// `piano run` as a process, for either piano design: parse `[--duration-ms N]
/// [--kill-timeout-ms N] -- program args`, run, print the warning when force-killed, exit with
/// the mapped code.
pub(crate) fn main_code(
    design: &str,
    run_child: fn(&RunOptions) -> Result<ChildOutcome, LegacyError>,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> i32 {
    match RunOptions::from_args(args).and_then(|opts| run_child(&opts)) {
        Ok(outcome) => finish(&outcome),
        Err(e) => cli::report(design, &e, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_code_maps_intentional_stops_to_zero_and_interrupt_to_130() {
        let status = ExitStatus::from_raw(15);
        let with = |stop_reason| exit_code(&ChildOutcome { status, stop_reason });
        assert_eq!(with(StopReason::Duration), 0);
        assert_eq!(with(StopReason::ForceKilled), 0);
        assert_eq!(with(StopReason::Interrupted), 130);
        let normal =
            ChildOutcome { status: ExitStatus::from_raw(7 << 8), stop_reason: StopReason::Normal };
        assert_eq!(exit_code(&normal), 7);
    }

    #[test]
    fn options_default_to_a_ten_second_kill_timeout() {
        let opts = RunOptions::from_args(["--", "true"].map(OsString::from)).expect("parse");
        assert_eq!(opts.kill_timeout, DEFAULT_KILL_TIMEOUT);
        assert_eq!(opts.duration, None);
    }
}
