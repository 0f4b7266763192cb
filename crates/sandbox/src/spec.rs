//! What a caller asks of a sandbox run ([`Spec`]) and what it gets back ([`RunOutcome`]), plus
//! the wire format between the runner and the caller.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether the sandbox gets its own user namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserNs {
    /// Only when the runner is not root (it needs one to create the PID and mount namespaces).
    #[default]
    Auto,
    /// Always (root too): the caller's uid/gid map to 0 inside, setgroups is denied.
    Always,
    /// Never (an unprivileged runner then fails with a setup error).
    Never,
}

/// A fault the runner injects into its own protocol, for the sandbox's own tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// No fault.
    #[default]
    None,
    /// The runner exits right after forking PID 1, and PID 1 waits for that before it sets
    /// `PR_SET_PDEATHSIG`: the re-check must then see the parent gone and exit with
    /// [`crate::EXIT_PARENT_GONE`] without running the scenario.
    RunnerDiesBeforePdeathsig,
}

/// How to run one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// How long PID 1 may run (from fork to exit). On overrun the runner SIGKILLs it, which
    /// makes the kernel kill the whole namespace.
    pub deadline: Duration,
    /// Put PID 1 (and so everything it forks) in a fresh cgroup v2 leaf, killed and removed
    /// when the run ends (needs a writable cgroup v2 hierarchy).
    pub cgroup: bool,
    /// User namespace policy.
    pub user_ns: UserNs,
    /// Extra time the caller grants the runner beyond `deadline` (exec, namespace setup,
    /// teardown) before it kills the runner itself.
    pub teardown: Duration,
    /// The runner writes `racelab-sandbox: pid1 <host pid> cgroup <path or ->` to stderr right
    /// after fork, before the scenario starts (for tests that watch the processes).
    pub announce: bool,
    /// A fault to inject (tests of the sandbox itself).
    pub fault: Fault,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            deadline: Duration::from_secs(10),
            cgroup: false,
            user_ns: UserNs::Auto,
            teardown: Duration::from_secs(5),
            announce: false,
            fault: Fault::None,
        }
    }
}

impl Spec {
    /// The default spec with another deadline.
    pub fn with_deadline(deadline: Duration) -> Spec {
        Spec { deadline, ..Spec::default() }
    }
}

/// How a sandbox run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The scenario returned a value.
    Finished {
        /// The scenario's result.
        output: Value,
        /// From fork of PID 1 to its result.
        wall: Duration,
        /// What the runner and the scenario wrote to stderr.
        stderr: String,
    },
    /// The scenario returned an error or panicked.
    Failed {
        /// The scenario's error (or "scenario panicked: ...").
        error: String,
        /// From fork of PID 1 to its result.
        wall: Duration,
        /// What the runner and the scenario wrote to stderr.
        stderr: String,
    },
    /// PID 1 ran past the deadline and was killed with its namespace (or the runner itself
    /// did not answer in time and the caller killed it).
    Overran {
        /// When it was killed, from its start.
        after: Duration,
        /// Processes could not be confirmed dead (a task frozen in D state, for instance).
        leftover: bool,
        /// What was written to stderr until then.
        stderr: String,
    },
    /// PID 1 (or the runner) ended without a result.
    Crashed {
        /// "exited with N" or "killed by signal N".
        status: String,
        /// What was written to stderr.
        stderr: String,
    },
}

impl RunOutcome {
    /// The scenario's output if it finished, else the outcome as an error message.
    pub fn into_output(self) -> Result<Value, String> {
        match self {
            RunOutcome::Finished { output, .. } => Ok(output),
            other => Err(format!("{other:?}")),
        }
    }
}

/// The runner's one JSON document on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Report {
    Finished { output: Value, wall_ns: u64 },
    Failed { error: String, wall_ns: u64 },
    Overran { after_ns: u64, leftover: bool },
    Crashed { status: String },
    SetupFailed { error: String },
}

/// What PID 1 sends the runner over the result pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Pid1Message {
    /// Building the namespace failed (mounts, cgroup).
    Setup(String),
    /// The scenario's result.
    Done(Result<Value, String>),
}

/// The runner's arguments, passed as one JSON argument after `__run`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunArgs {
    pub scenario: String,
    pub input: Value,
    pub spec: Spec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_through_json() {
        let r = Report::Overran { after_ns: 5, leftover: false };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""outcome":"overran""#), "{text}");
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
    }
}
