//! What an instrumented replay is asked for: the race, the design, the schedule, and how
//! patient the lab is. The bottom of `scenario/`: the caller builds it, every part of the
//! replay reads it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The scenario's name in the runner.
pub const SCENARIO: &str = "replay";

/// How long one replay may take inside the namespace before the lab gives up on the design.
pub const REPLAY_DEADLINE: Duration = Duration::from_millis(1500);

/// What the caller asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayInput {
    /// Race id.
    pub race: String,
    /// Design name.
    pub design: String,
    /// A schedule replacing the race's own (text form); `Some("")` replays with none.
    pub schedule: Option<String>,
    /// How long the lab waits for the design (`None`: [`Patience::DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<Patience>,
}

/// How long the lab waits in one replay: for a parked thread's edge (the hooks' deadline) and
/// for the whole design. Exploration shortens both to what the design needed in its baseline,
/// so a generated schedule that deadlocks costs little; a replay of a found schedule uses the
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patience {
    /// The deadline of every wait at a point.
    pub park: Duration,
    /// How long the design may take before the lab gives up on it.
    pub replay: Duration,
}

impl Patience {
    /// What every replay gets unless told otherwise.
    pub const DEFAULT: Patience =
        Patience { park: Duration::from_secs(1), replay: REPLAY_DEADLINE };
}
