//! What a supervision returns: why it stopped, the child's real status, what was sent when.
//!
//! Serializable with serde (`supervise --report json`). Exit codes follow GNU `timeout`.

use serde::{Deserialize, Serialize};

/// Why the supervision ended. Decided by the state machine in the same step that decided the
/// last kill, so the reason can never deny a kill that was sent (Q3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The child exited on its own (any exit code), no stop was requested.
    Exited,
    /// The child died of a signal the supervisor did not send (a crash, or someone else).
    SignalledExternally,
    /// The timeout expired; the child stopped after the stop signal, within the grace period.
    Duration,
    /// A forwarded stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) reached the supervisor; the
    /// child stopped within the grace period.
    Interrupted,
    /// The grace period ran out: the supervisor sent SIGKILL, and the child died.
    ForcedKill,
    /// The child did not die even after SIGKILL (and cgroup.kill) within the bounded wait.
    Unkillable,
    /// The program exists but could not be executed (permission, format, ...).
    ExecFailed,
    /// The program was not found.
    NotFound,
}

/// How the main child ended, as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// Whom a signal was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The main child, by pidfd (`pidfd_send_signal`): never a recycled PID.
    Child,
    /// The child's process group (`kill(-pgid)`), only while the leader is unreaped.
    Group,
    /// Every process of the child's cgroup (`cgroup.kill`, SIGKILL only).
    Cgroup,
}

/// One signal the supervisor decided to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentSignal {
    /// Nanoseconds since the supervision started (the clock the state machine was given).
    pub at_ns: u64,
    /// Signal number.
    pub signo: i32,
    /// Signal name, e.g. "SIGTERM".
    pub name: String,
    /// Recipient.
    pub target: Target,
}

/// A process still alive when the supervisor gave up (see [`StopReason::Unkillable`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Survivor {
    /// PID in the supervisor's namespace.
    pub pid: i32,
    /// `comm` from `/proc/<pid>/stat`.
    pub name: String,
    /// State letter from `/proc/<pid>/stat` (`D` = uninterruptible, e.g. frozen by a v1 freezer).
    pub state: char,
}

/// The outcome of one supervision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Why it ended.
    pub reason: StopReason,
    /// The main child's real status; `None` when it never ran or could not be stopped.
    pub status: Option<ExitStatus>,
    /// The main child's PID (for display; it may be reused once reaped).
    pub pid: Option<i32>,
    /// Every signal the supervisor sent, in order.
    pub signals: Vec<SentSignal>,
    /// True when leftovers of the tree were killed after the main child exited (containment).
    pub swept: bool,
    /// Processes still alive when the supervisor returned (only for `Unkillable`).
    pub survivors: Vec<Survivor>,
    /// Human-readable warnings (a forced kill, an unkillable tree, a failed cleanup).
    pub warnings: Vec<String>,
    /// Orphans (not the main child) reaped as PID 1 or subreaper.
    pub orphans_reaped: u64,
    /// Nanoseconds from start to the decision that ended the supervision.
    pub elapsed_ns: u64,
    /// The exec error, when the program could not be started.
    pub exec_error: Option<String>,
    /// What the child wrote to its captured streams (`Config::capture_stdout`,
    /// `capture_stderr`); `None` when nothing was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<Captured>,
}

/// The captured output of the child's tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// Standard output, as written (empty when not captured).
    pub stdout: Vec<u8>,
    /// Standard error, as written (empty when not captured).
    pub stderr: Vec<u8>,
    /// Every captured pipe reached its end of file: no process of the tree holds it any more.
    /// `false`: the supervisor stopped reading after `output_wait` (a warning says so).
    pub complete: bool,
    /// More than [`Captured::LIMIT`] bytes came on a stream: the rest was read and dropped.
    pub truncated: bool,
}

impl Captured {
    /// The most bytes kept per stream.
    pub const LIMIT: usize = 16 << 20;
}

impl Report {
    /// The exit code `supervise` uses, following GNU `timeout`: 124 timed out (unless
    /// `preserve_status`), 126 cannot execute, 127 not found, 137 after SIGKILL, 128+N killed
    /// by signal N, else the child's code. An unkillable child gives 125 (the supervisor failed
    /// to stop it).
    pub fn exit_code(&self, preserve_status: bool) -> i32 {
        match self.reason {
            StopReason::NotFound => 127,
            StopReason::ExecFailed => 126,
            StopReason::Unkillable => 125,
            StopReason::ForcedKill => 128 + 9,
            StopReason::Duration if !preserve_status => 124,
            _ => self.status.map_or(125, ExitStatus::shell_code),
        }
    }

    /// True when a SIGKILL was sent to the child or its tree before it exited.
    pub fn forced(&self) -> bool {
        matches!(self.reason, StopReason::ForcedKill | StopReason::Unkillable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(reason: StopReason, status: Option<ExitStatus>) -> Report {
        Report {
            reason,
            status,
            pid: Some(7),
            signals: vec![],
            swept: false,
            survivors: vec![],
            warnings: vec![],
            orphans_reaped: 0,
            elapsed_ns: 0,
            exec_error: None,
            captured: None,
        }
    }

    #[test]
    fn exit_codes_follow_gnu_timeout() {
        assert_eq!(report(StopReason::Exited, Some(ExitStatus::Code(3))).exit_code(false), 3);
        assert_eq!(
            report(StopReason::Duration, Some(ExitStatus::Signal(15))).exit_code(false),
            124
        );
        assert_eq!(report(StopReason::Duration, Some(ExitStatus::Signal(15))).exit_code(true), 143);
        assert_eq!(
            report(StopReason::ForcedKill, Some(ExitStatus::Signal(9))).exit_code(false),
            137
        );
        assert_eq!(report(StopReason::NotFound, None).exit_code(false), 127);
        assert_eq!(report(StopReason::ExecFailed, None).exit_code(false), 126);
        assert_eq!(report(StopReason::Unkillable, None).exit_code(false), 125);
        let sig = report(StopReason::SignalledExternally, Some(ExitStatus::Signal(11)));
        assert_eq!(sig.exit_code(false), 139);
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = report(StopReason::Interrupted, Some(ExitStatus::Code(0)));
        let text = serde_json::to_string(&r).expect("serialize");
        assert!(text.contains("\"reason\":\"interrupted\""), "{text}");
        let back: Report = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, r);
    }
}
