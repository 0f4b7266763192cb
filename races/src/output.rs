//! What one replay hands back across the process boundary (as JSON, from the runner to the
//! caller): the verdict, the merged trace, the design's report and the schedule that ran. Both
//! scenarios produce it; the matrix, the docs pages and exploration read it.

use crate::design_report::DesignReport;
use crate::verdict::Verdict;
use racelab_hooks::Trace;
use serde::{Deserialize, Serialize};

/// What comes back across the process boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayOutput {
    /// The oracle's verdict.
    pub verdict: Verdict,
    /// The design's and the lab's events, merged by time.
    pub trace: Trace,
    /// The design's own report, when it returned one.
    pub design_report: Option<DesignReport>,
    /// The schedule that ran, in canonical text form.
    pub schedule: String,
    /// Time from fork of the design to verdict, in ns.
    pub wall_ns: u64,
}

impl ReplayOutput {
    /// A replay that ended before the design ran: `verdict` with an empty trace, no report,
    /// `wall_ns` from the caller.
    pub fn early(verdict: Verdict, schedule: String, wall_ns: u64) -> ReplayOutput {
        ReplayOutput { verdict, trace: Trace::default(), design_report: None, schedule, wall_ns }
    }
}
