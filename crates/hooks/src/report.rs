//! What a run leaves behind: the trace, a stuck report when a wait's deadline passed, the edges
//! that were not enforced and the actions that failed. All serializable (the lab reads them from
//! child processes as JSON).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::trace::Trace;

/// Why the controller gave up on the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckReason {
    /// A parked thread's deadline passed.
    Deadline {
        /// The deadline of each wait, in milliseconds.
        deadline_ms: u64,
        /// The thread whose deadline passed first.
        tid: u32,
        /// Where it was parked.
        point: String,
    },
    /// [`Armed::finish`](crate::Armed) was called while threads were still parked.
    FinishedWhileParked,
}

/// A thread that was parked when the run got stuck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedThread {
    /// Kernel thread id.
    pub tid: u32,
    /// The actor of the point it waits at.
    pub actor: String,
    /// The point occurrence it waits at (`main.reaped#2`).
    pub point: String,
    /// The edges into that occurrence that were not met.
    pub waiting_for: Vec<String>,
}

/// Where a run stopped making progress: who was parked where, which edges were unmet, and the
/// trace up to that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckReport {
    /// Why.
    pub reason: StuckReason,
    /// `CLOCK_MONOTONIC` nanoseconds when it was detected.
    pub at_ns: u64,
    /// Every thread that was parked then.
    pub parked: Vec<ParkedThread>,
    /// More threads were parked than the controller has slots for (they are not listed).
    #[serde(default)]
    pub parked_unlisted: u32,
    /// The schedule position: the edges not yet met then.
    pub unmet_edges: Vec<String>,
    /// The schedule, in text form.
    pub schedule: String,
    /// The trace up to the moment the run got stuck.
    pub trace: Trace,
}

impl fmt::Display for StuckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            StuckReason::Deadline { deadline_ms, tid, point } => writeln!(
                f,
                "STUCK: thread {tid} waited {deadline_ms} ms at {point} and the schedule was not met"
            )?,
            StuckReason::FinishedWhileParked => {
                writeln!(f, "STUCK: the run finished while threads were still parked")?
            }
        }
        writeln!(f, "schedule: {}", self.schedule)?;
        writeln!(f, "parked threads:")?;
        if self.parked.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for p in &self.parked {
            writeln!(
                f,
                "  tid {} ({}) at {} waiting for: {}",
                p.tid,
                p.actor,
                p.point,
                p.waiting_for.join(", ")
            )?;
        }
        if self.parked_unlisted > 0 {
            writeln!(f, "  ... and {} more (out of slots)", self.parked_unlisted)?;
        }
        writeln!(f, "unmet edges:")?;
        for e in &self.unmet_edges {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "trace so far:")?;
        f.write_str(&self.trace.to_text())
    }
}

/// Why an edge of the schedule was not enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmetReason {
    /// The later point was never reached (the earlier one passed `before_passes` times).
    AfterNeverReached {
        /// How many times the earlier point was passed.
        before_passes: u32,
    },
    /// The earlier point's actor is bound to the thread that reached the later point: that
    /// thread would have waited for itself, so it passed (see [`bind_thread`](crate::bind_thread)).
    Unrealizable,
    /// The later point passed without the edge because the schedule was abandoned (stuck).
    Abandoned,
}

/// One edge of the schedule that the run did not enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmetEdge {
    /// The edge, in schedule text form.
    pub edge: String,
    /// Why.
    pub reason: UnmetReason,
}

/// A lab action that returned an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionError {
    /// The point occurrence it was attached to.
    pub at: String,
    /// The action, in schedule text form.
    pub action: String,
    /// The thread that ran it.
    pub tid: u32,
    /// The error the action returned.
    pub message: String,
}

/// The outcome of one armed run, returned by [`Armed::finish`](crate::Armed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Everything recorded, in time order (hit records and notes).
    pub trace: Trace,
    /// Present when a wait's deadline passed or threads were parked at finish.
    pub stuck: Option<StuckReport>,
    /// The edges that were not enforced.
    pub unmet_edges: Vec<UnmetEdge>,
    /// The actions that failed.
    pub action_errors: Vec<ActionError>,
    /// Threads that were still inside a point when `finish` gave up waiting for them (an
    /// action that did not return within the deadline). The next `arm` fails while any remain.
    #[serde(default)]
    pub still_inside: u32,
}

impl RunReport {
    /// True when nothing got stuck, every edge was enforced and every action succeeded.
    pub fn is_clean(&self) -> bool {
        self.stuck.is_none()
            && self.unmet_edges.is_empty()
            && self.action_errors.is_empty()
            && self.still_inside == 0
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(stuck) = &self.stuck {
            write!(f, "{stuck}")?;
        }
        for e in &self.unmet_edges {
            writeln!(f, "unmet edge {}: {:?}", e.edge, e.reason)?;
        }
        for e in &self.action_errors {
            writeln!(f, "action {} at {} (tid {}) failed: {}", e.action, e.at, e.tid, e.message)?;
        }
        if self.stuck.is_none() {
            f.write_str(&self.trace.to_text())?;
        }
        Ok(())
    }
}
