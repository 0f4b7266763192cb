//! The data of one armed run that may allocate: the plan (schedule, edges, actions) and the
//! run's off-hit-path state. Below both the controller, which arms and finishes runs, and
//! `collect`, which turns a finished run into its report.

use std::sync::Arc;
use std::time::Duration;

use crate::report::ActionError;
use crate::schedule::{Action, Actions, At, Edge, Schedule};
use crate::trace::Event;

/// Most threads that can be listed as parked at once (more still park, unlisted).
pub const MAX_PARKED: usize = 64;
/// Largest `trace_capacity` (records kept per run; older ones are overwritten).
pub const MAX_TRACE: usize = 1 << 16;

/// How to arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmOptions {
    /// The longest any thread waits at a point before the run is declared stuck. Also bounds
    /// how long [`Armed::finish`](crate::Armed::finish) waits for threads to leave the points.
    pub deadline: Duration,
    /// Trace records kept (the newest win), at most [`MAX_TRACE`].
    pub trace_capacity: usize,
}

impl Default for ArmOptions {
    /// 5 s deadline, 4096 records.
    fn default() -> ArmOptions {
        ArmOptions { deadline: Duration::from_secs(5), trace_capacity: 4096 }
    }
}

/// The schedule as the controller runs it; shared with threads that run actions.
pub(crate) struct Plan {
    pub schedule: Schedule,
    pub edges: Vec<Edge>,
    pub actions: Vec<(At, Action)>,
    pub runner: Arc<dyn Actions>,
}

/// The run's off-hit-path state.
pub(crate) struct Run {
    pub plan: Arc<Plan>,
    pub options: ArmOptions,
    /// (index into `plan.actions`, occurrence, error).
    pub errors: Vec<(usize, ActionError)>,
    pub notes: Vec<Event>,
}
