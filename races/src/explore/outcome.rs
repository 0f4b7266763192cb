//! What an exploration is asked (its configuration) and what it gives back (its findings,
//! counts and errors): the types every step of exploration shares, below all of them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use racelab_hooks::{HookError, Schedule, Trace};
use thiserror::Error;

use super::generate::SearchStrategy;
use super::vocabulary::Vocabulary;
use crate::catalog::{DesignId, Race};
use crate::verdict::{Expect, Verdict, Violation};

/// What an exploration does.
#[derive(Debug, Clone)]
pub struct ExploreConfig {
    /// How schedules are drawn.
    pub search: SearchStrategy,
    /// Schedules to draw (at least 1) before concluding there is no violation.
    pub cases: u32,
    /// The proptest RNG's seed.
    pub seed: u64,
    /// Most replays proptest may spend shrinking a failure.
    pub max_shrink_iters: u32,
    /// Replays of the shrunk schedule with the default patience.
    pub confirm: u32,
    /// Where regression files are read (and written, with `record`); `None`: not at all.
    pub regressions: Option<PathBuf>,
    /// Append a new finding to its regression file (when `racelab replay` confirmed it in
    /// most of the `confirm` replays).
    pub record: bool,
    /// Also replay the unforced path up to this many times (the brute-force column).
    pub stress: Option<u32>,
    /// Most wall time the brute-force column may take (`None`: no limit but the count).
    pub stress_budget: Option<Duration>,
}

impl Default for ExploreConfig {
    fn default() -> ExploreConfig {
        ExploreConfig {
            search: SearchStrategy::Random,
            cases: 256,
            seed: 0,
            max_shrink_iters: 256,
            confirm: 5,
            regressions: None,
            record: false,
            stress: None,
            stress_budget: None,
        }
    }
}

/// Errors of an exploration (usage errors and lab failures; a violation is a result).
#[derive(Debug, Error)]
pub enum ExploreError {
    /// The race does not run against this design.
    #[error("{race} does not run against {design} (see `racelab list`)")]
    NotApplicable {
        /// The race id.
        race: &'static str,
        /// The design.
        design: &'static str,
    },
    /// `cases` was 0.
    #[error("exploration needs at least one case")]
    NoCases,
    /// The unforced probe failed in the lab itself.
    #[error("{race} against {design}: the probe replay failed: {message}")]
    Probe {
        /// The race id.
        race: &'static str,
        /// The design.
        design: &'static str,
        /// The lab error.
        message: String,
    },
    /// proptest aborted the run.
    #[error("proptest aborted the exploration: {reason}")]
    Aborted {
        /// proptest's reason.
        reason: String,
    },
    /// A regression file could not be read or written.
    #[error("regression file {}: {source}", path.display())]
    Regressions {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A regression file holds a line that is not a schedule.
    #[error("regression file {}, line {line}: {source}", path.display())]
    BadRegression {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The parse error.
        source: HookError,
    },
}

/// What the generation phase's replays concluded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every invariant held.
    pub prevented: u32,
    /// An invariant broke (at most 1: exploration stops at the first).
    pub reproduced: u32,
    /// The schedule could not be realised: a cycle (not replayed), or a thread that would have
    /// waited for itself.
    pub unrealizable: u32,
    /// The lab could not force it otherwise (stuck, an action failed, the design hung).
    pub not_forced: u32,
    /// A capability was missing.
    pub skipped: u32,
    /// The lab itself failed.
    pub lab_errors: u32,
}

/// A schedule from a regression file, replayed again.
#[derive(Debug, Clone)]
pub struct KnownHit {
    /// The schedule.
    pub schedule: Schedule,
    /// Its verdict this time.
    pub verdict: Verdict,
}

/// A violation exploration found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The 1-based case that broke an invariant first.
    pub case: u32,
    /// Time from the start of the exploration (probes included) to that replay's verdict.
    pub after: Duration,
    /// The schedule as drawn.
    pub generated: Schedule,
    /// The schedule after shrinking.
    pub shrunk: Schedule,
    /// Replays spent shrinking.
    pub shrink_replays: u32,
    /// The broken invariants with evidence (from the last replay of the shrunk schedule).
    pub violations: Vec<Violation>,
    /// That replay's trace.
    pub trace: Trace,
    /// Replays of the shrunk schedule with the default patience that broke an invariant.
    pub confirmed: u32,
    /// Of how many.
    pub confirm_runs: u32,
}

/// The brute-force column: the empty schedule replayed until the same violation appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stress {
    /// Replays run (the one that broke it included).
    pub replays: u32,
    /// Whether it broke.
    pub hit: bool,
    /// Their wall time.
    pub wall: Duration,
}

/// One case's verdict, for a progress bar.
#[derive(Debug)]
pub struct Progress<'a> {
    /// The 1-based case.
    pub case: u32,
    /// Its schedule.
    pub schedule: &'a str,
    /// A replay of shrinking (`case` is then the failing case being shrunk).
    pub shrinking: bool,
    /// Its verdict.
    pub verdict: &'a Verdict,
}

/// The result of exploring one race against one design.
#[derive(Debug, Clone)]
pub struct Exploration {
    /// The race.
    pub race: &'static Race,
    /// The design.
    pub design: DesignId,
    /// What the catalog expects of it.
    pub expect: Expect,
    /// How schedules were drawn.
    pub search: SearchStrategy,
    /// The seed.
    pub seed: u64,
    /// The race cannot run here (a missing capability), and why.
    pub skipped: Option<String>,
    /// What the probes showed.
    pub vocabulary: Option<Arc<Vocabulary>>,
    /// The regression file's schedules, replayed first.
    pub known: Vec<KnownHit>,
    /// Verdicts of the drawn cases.
    pub counts: Counts,
    /// Cases drawn (up to and including the first failure).
    pub cases: u32,
    /// The first violation, shrunk.
    pub found: Option<Found>,
    /// The regression file the finding was added to.
    pub added_to: Option<PathBuf>,
    /// Wall time of probes, cases and shrinking (not the stress column).
    pub wall: Duration,
    /// The brute-force column, when asked for.
    pub stress: Option<Stress>,
}

impl Exploration {
    /// Whether a regression schedule broke an invariant again.
    pub fn known_reproduced(&self) -> bool {
        self.known.iter().any(|k| matches!(k.verdict, Verdict::Reproduced { .. }))
    }

    /// Exploration behaved as the catalog expects: a legacy design that has the race showed a
    /// violation (drawn or from the regression file), the reference none. A skipped race
    /// meets it unless `RACELAB_STRICT=1`.
    pub fn as_expected(&self) -> bool {
        if self.skipped.is_some() {
            return std::env::var("RACELAB_STRICT").as_deref() != Ok("1");
        }
        let violated = self.found.is_some() || self.known_reproduced();
        match self.expect {
            Expect::Reproduce(_) => violated,
            Expect::Prevent => !violated,
        }
    }

    /// The command that replays the finding.
    pub fn replay_command(&self) -> Option<String> {
        self.found.as_ref().map(|f| replay_command(self.race, self.design, &f.shrunk))
    }

    /// A few lines: the outcome, the finding and its replay command.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} against {} ({}, seed {}): ",
            self.race.id,
            self.design.name(),
            self.search,
            self.seed
        );
        if let Some(reason) = &self.skipped {
            s.push_str(&format!("skipped: {reason}"));
            return s;
        }
        match &self.found {
            Some(f) => {
                let ids: Vec<&str> = f.violations.iter().map(|v| v.invariant.id()).collect();
                s.push_str(&format!(
                    "{} broken at case {} after {:.1} s\n  shrunk in {} replays, confirmed {}/{}:\n  {}",
                    ids.join(", "),
                    f.case,
                    f.after.as_secs_f64(),
                    f.shrink_replays,
                    f.confirmed,
                    f.confirm_runs,
                    replay_command(self.race, self.design, &f.shrunk)
                ));
                for v in &f.violations {
                    s.push_str(&format!("\n  violated {}: {}", v.invariant, v.evidence));
                }
            }
            None => {
                let c = &self.counts;
                s.push_str(&format!(
                    "no violation in {} cases ({} prevented, {} unrealizable, {} not forced, {} lab errors) in {:.1} s",
                    self.cases,
                    c.prevented,
                    c.unrealizable,
                    c.not_forced,
                    c.lab_errors,
                    self.wall.as_secs_f64()
                ));
            }
        }
        let known = self.known.iter().filter(|k| matches!(k.verdict, Verdict::Reproduced { .. }));
        for k in known {
            s.push_str(&format!(
                "\n  regression still breaks it: {}",
                replay_command(self.race, self.design, &k.schedule)
            ));
        }
        if let Some(st) = &self.stress {
            s.push_str(&format!(
                "\n  stress (no schedule): {} in {} replays ({:.1} s)",
                if st.hit { "broken" } else { "never broken" },
                st.replays,
                st.wall.as_secs_f64()
            ));
        }
        s
    }
}

/// `racelab replay RACE --design D --schedule '...'`.
pub fn replay_command(race: &Race, design: DesignId, schedule: &Schedule) -> String {
    format!("racelab replay {} --design {} --schedule '{}'", race.id, design.name(), schedule)
}
