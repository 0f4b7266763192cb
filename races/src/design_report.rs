//! The design's own report, normalised across designs: the stop reason it gives, the child's
//! status it saw, its exit code and warnings. One of the facts the oracle judges, and the one it
//! never trusts: it compares it with the lab's truth and the child's log.

use serde::{Deserialize, Serialize};

/// A stop reason, normalised across designs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The child ended on its own.
    Exited,
    /// The duration limit ended it.
    Duration,
    /// An interrupt ended it.
    Interrupted,
    /// The design says it had to SIGKILL the child.
    ForcedKill,
    /// The design says the child could not be killed.
    Unkillable,
    /// The design has no notion of a stop reason (it reports a status only).
    Unreported,
    /// The design failed to supervise at all.
    Failed,
}

/// How the child ended, as the design reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// The design's own word. The oracle never trusts it: it compares it with ground truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesignReport {
    /// The stop reason it reports.
    pub reason: Reason,
    /// The child's status it reports (None: it has none).
    pub status: Option<Status>,
    /// The exit code its front end would return.
    pub exit_code: i32,
    /// Warnings it would print.
    pub warnings: Vec<String>,
    /// Its report verbatim, for the record.
    pub raw: String,
}

impl DesignReport {
    /// The report of a design that failed to supervise at all (`what` says why).
    pub fn failed(what: impl std::fmt::Display) -> DesignReport {
        DesignReport {
            reason: Reason::Failed,
            status: None,
            exit_code: 125,
            warnings: Vec::new(),
            raw: what.to_string(),
        }
    }
}
