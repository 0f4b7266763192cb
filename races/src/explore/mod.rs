//! Exploration: the lab finds a bad interleaving by itself, on real processes, and hands back
//! the shortest schedule that shows it.
//!
//! # Background
//!
//! Every race of the [catalog](crate::catalog) is replayed from a schedule a person wrote after
//! reading the bug report. That proves the fix for races we know. Exploration asks the other
//! question: given a design and a race's setup (the child, the timers, the stop), is there
//! *any* schedule over the design's named points that breaks an invariant? It draws schedules
//! at random with proptest, replays each one exactly like `racelab replay` does (a fresh PID
//! namespace, real signals, real PID reuse), judges it with the same oracle, and when one
//! breaks an invariant, lets proptest shrink it to a minimal schedule you can paste:
//!
//! ```text
//! $ racelab explore Q4 --design global_atomics
//! Q4 against global_atomics (random, seed 0): I3 broken at case 15 after 5.6 s
//!   shrunk in 3 replays, confirmed 5/5:
//!   racelab replay Q4 --design global_atomics --schedule 'on main.spawned: interrupt(design)'
//!   violated I3 interrupt delivered: SIGINT reached the supervisor while the child lived; the child never saw SIGINT/SIGTERM/SIGHUP (it saw [])
//! ```
//!
//! # The model
//!
//! 1. **Probes** ([`Vocabulary`]): a design only passes some points, some of them several
//!    times. Three probe replays show which: the empty schedule (the unforced path), one where
//!    the child exits at the first point reached (a design that would wait forever for its
//!    child shows the rest of its points), and one interrupted at the last point (its
//!    interrupt path). The traces list every point passed, with occurrences and threads.
//! 2. **Schedules** ([`ScheduleStrategy`]): a `Vec<Step>` of happens-before edges between
//!    point occurrences of *different* threads (within one thread an edge is program order or
//!    a thread waiting for itself) and the lab actions the race's setup makes meaningful:
//!    `exit(child)`, `ready(child)`, `interrupt(design)`, `recycle(child)` where the oracle
//!    watches victims (I1), `orphans(child)` where the child forks them, `kill(outer)` where
//!    there is an outer process. Two ways to draw the edges ([`SearchStrategy`]): uniformly
//!    at random, or PCT-style (random thread priorities and `d - 1` priority change points,
//!    the resulting order written as edges). The actions are drawn the same way in both.
//! 3. **Replays**: with a shortened [`Patience`](crate::scenario::Patience), from what the
//!    probes needed, so a schedule that deadlocks costs a fraction of a second. A schedule
//!    with a cycle is never replayed; one whose thread would wait for itself, or that gets
//!    stuck, comes back `not forced`: both are counted and exploration moves on.
//! 4. **Shrinking** ([`StepsTree`]): proptest's runner drives it: drop each step in turn while
//!    the violation persists, then lower each occurrence toward `#1`.
//! 5. **Confirmation and memory**: the shrunk schedule is replayed again with the default
//!    patience (what `racelab replay` does), and kept in
//!    `races/proptest-regressions/explore/<race>-<design>.txt`, which every later run
//!    replays before drawing anything new ([`regressions`]).
//!
//! # Writing an exploration
//!
//! ```no_run
//! use races::explore::{ExploreConfig, SearchStrategy};
//! use races::{Replayer, RunAs, catalog::{self, DesignId}};
//! # fn runner() -> std::path::PathBuf { "races-runner".into() }
//! let mut replayer = Replayer::new(&runner(), RunAs::Caller);
//! let race = catalog::find("Z2").unwrap();
//! let config = ExploreConfig { cases: 50, seed: 3, ..ExploreConfig::default() };
//! let found = races::explore::explore(&mut replayer, race, DesignId::GreedyReaper, &config, &mut |_| {})?;
//! assert!(found.as_expected(), "{}", found.summary());
//! # Ok::<(), races::explore::ExploreError>(())
//! ```
//!
//! `cargo test -p races --test explore` runs a bounded, seeded exploration of each design this
//! way: one race per legacy design must break, the reference must not.
//!
//! # Running it
//!
//! `racelab explore [RACE...] [--design D] [--cases N] [--seed S] [--strategy random|pct|both]
//! [--depth D] [--stress]`. Exit 0 when exploration behaved as the catalog expects (a
//! violation for each legacy design that has the race, none for the reference), 1 otherwise (a
//! reference violation is printed with its replay command), 2 for a usage error.
//! `--stress` adds the brute-force column: the unforced path replayed until the same violation
//! appears, or a cap. docs/exploration.md has the figures.
//!
//! # Debugging a finding
//!
//! Paste the printed `racelab replay ... --schedule '...'` command; add `--format mermaid`
//! for the timeline. A finding confirmed less than every time is timing-dependent beyond the
//! schedule: the trace shows which thread ran ahead. `--no-regressions` explores from scratch.
//!
//! # Limitations
//!
//! - The probes see only what a design does in three runs; a point reached only on some other
//!   path never appears in a generated schedule (the traces of later replays are not learned).
//! - PCT assumes every thread is always runnable; the lab cannot see a thread the kernel
//!   blocks (a reap before the child died), so some PCT orders deadlock and come back
//!   `not forced`.
//! - The same seed draws the same schedules only from the same vocabulary: a design whose
//!   occurrence counts vary from run to run (Z1's reaper wakes) draws slightly different ones.
//! - Lab actions are never attached to points of the `signal` actor, which may sit in a
//!   signal handler.

mod generate;
pub mod regressions;
mod run;
mod vocabulary;

pub use generate::{MAX_RANDOM_EDGES, ScheduleStrategy, SearchStrategy, StepsTree, pct_order};
pub use vocabulary::{Probe, ThreadKey, Vocabulary, actions_for};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use racelab_hooks::{HookError, Schedule, Trace};
use thiserror::Error;

use crate::Replayer;
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

/// Explores `race` against `design`: regressions first, then probes, then up to
/// `config.cases` drawn schedules; the first that breaks an invariant is shrunk, confirmed and
/// (with `config.record`) kept. Usage errors (a design the race does not run against, zero
/// cases) and lab failures are errors; a violation is a result.
pub fn explore(
    replayer: &mut Replayer,
    race: &'static Race,
    design: DesignId,
    config: &ExploreConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Exploration, ExploreError> {
    run::explore(replayer, race, design, config, progress)
}
