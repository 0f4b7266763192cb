//! The exploration loop: probes, regressions, proptest's runner over generated schedules on
//! real processes, shrinking, confirmation, and the brute-force stress column.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use racelab_hooks::{EventKind, Schedule, Step};

use super::generate::ScheduleStrategy;
use super::outcome::{
    Counts, Exploration, ExploreConfig, ExploreError, Found, KnownHit, Progress, Stress,
};
use super::regressions;
use super::vocabulary::{ProbeFailure, Vocabulary};
use crate::Replayer;
use crate::catalog::{DesignId, Race};
use crate::output::ReplayOutput;
use crate::verdict::{Invariant, Verdict};

/// Replays of a shrink candidate before it counts as no longer breaking the invariant.
const SHRINK_TRIES: u32 = 2;

/// The proptest RNG of `seed`: the same seed draws the same schedules from the same
/// vocabulary.
fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Mutable state shared with proptest's (`Fn`) test closure.
struct State<'r, 'p> {
    replayer: &'r mut Replayer,
    progress: &'p mut dyn FnMut(Progress),
    counts: Counts,
    /// Cases drawn so far (the generation phase; shrinking replays are counted apart).
    cases: u32,
    /// The first failing case: (case number, time since start, schedule, output).
    first: Option<(u32, Duration, Schedule, ReplayOutput)>,
    /// The output of the last failing replay (the shrunk schedule's, at the end).
    last_failure: Option<(Schedule, ReplayOutput)>,
    shrink_replays: u32,
}

/// Whether a replay's trace shows an edge the controller found unrealizable (a thread that
/// would have waited for itself).
fn has_unrealizable(out: &ReplayOutput) -> bool {
    out.trace.events.iter().any(|e| e.kind == EventKind::Unrealizable)
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
    let Some(&(_, expect)) = race.designs.iter().find(|(d, _)| *d == design) else {
        return Err(ExploreError::NotApplicable { race: race.id, design: design.name() });
    };
    if config.cases == 0 {
        return Err(ExploreError::NoCases);
    }
    let start = Instant::now();
    let mut exploration = Exploration {
        race,
        design,
        expect,
        search: config.search,
        seed: config.seed,
        skipped: None,
        vocabulary: None,
        known: Vec::new(),
        counts: Counts::default(),
        cases: 0,
        found: None,
        added_to: None,
        wall: Duration::ZERO,
        stress: None,
    };

    // 1. What earlier runs found, first.
    let file = config.regressions.as_ref().map(|dir| regressions::path(dir, race, design));
    if let Some(file) = &file {
        for schedule in regressions::load(file)? {
            let out = replayer.replay(race, design, Some(&schedule.to_string()));
            exploration.known.push(KnownHit { schedule, verdict: out.verdict });
        }
    }

    // 2. What the design passes when nobody forces anything.
    let vocabulary = match Vocabulary::learn(replayer, race, design) {
        Ok(v) => Arc::new(v),
        Err(ProbeFailure::Skipped(reason)) => {
            exploration.skipped = Some(reason);
            exploration.wall = start.elapsed();
            return Ok(exploration);
        }
        Err(ProbeFailure::Lab(message)) => {
            return Err(ExploreError::Probe { race: race.id, design: design.name(), message });
        }
    };
    exploration.vocabulary = Some(Arc::clone(&vocabulary));
    let patience = Some(vocabulary.patience);

    // 3. Draw, replay, judge; proptest shrinks the first failure.
    let strategy = ScheduleStrategy::new(Arc::clone(&vocabulary), config.search);
    let proptest_config = Config {
        cases: config.cases,
        max_shrink_iters: config.max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(proptest_config, rng(config.seed));
    let state = RefCell::new(State {
        replayer,
        progress,
        counts: Counts::default(),
        cases: 0,
        first: None,
        last_failure: None,
        shrink_replays: 0,
    });
    let result = runner.run(&strategy, |steps: Vec<Step>| {
        let mut st = state.borrow_mut();
        let shrinking = st.first.is_some();
        if shrinking {
            st.shrink_replays += 1;
        } else {
            st.cases += 1;
        }
        let schedule = Schedule { steps };
        if schedule.validate().is_err() {
            // A cycle: no run could ever meet it. Not replayed, counted, skipped.
            if !shrinking {
                st.counts.unrealizable += 1;
            }
            return Ok(());
        }
        let text = schedule.to_string();
        let mut out = st.replayer.replay_with(race, design, Some(&text), patience);
        // A shrink candidate that lost the violation gets a second chance: a schedule that
        // forces most of a race but not all of it reproduces only most of the time, and one
        // unlucky replay must not keep a needless step in the minimal schedule.
        for _ in 1..if shrinking { SHRINK_TRIES } else { 1 } {
            if matches!(out.verdict, Verdict::Reproduced { .. }) {
                break;
            }
            st.shrink_replays += 1;
            out = st.replayer.replay_with(race, design, Some(&text), patience);
        }
        let case = st.cases;
        (st.progress)(Progress { case, schedule: &text, shrinking, verdict: &out.verdict });
        if !shrinking {
            match &out.verdict {
                Verdict::Reproduced { .. } => st.counts.reproduced += 1,
                // Part of the schedule could not be enforced (a thread would have waited for
                // itself): whatever the verdict, this schedule did not happen as written.
                _ if has_unrealizable(&out) => st.counts.unrealizable += 1,
                Verdict::Prevented => st.counts.prevented += 1,
                Verdict::NotForced { .. } => st.counts.not_forced += 1,
                Verdict::Skipped { .. } => st.counts.skipped += 1,
                Verdict::LabError { .. } => st.counts.lab_errors += 1,
            }
        }
        match &out.verdict {
            Verdict::Reproduced { violations } => {
                let ids: Vec<&str> = violations.iter().map(|v| v.invariant.id()).collect();
                let why = format!("{} broken by {text}", ids.join(", "));
                if !shrinking {
                    let case = st.cases;
                    st.first = Some((case, start.elapsed(), schedule.clone(), out.clone()));
                }
                st.last_failure = Some((schedule, out));
                Err(TestCaseError::fail(why))
            }
            _ => Ok(()),
        }
    });
    let st = state.into_inner();
    let replayer = st.replayer;
    exploration.counts = st.counts;
    exploration.cases = st.cases;
    match result {
        Ok(()) => {}
        Err(TestError::Abort(reason)) => {
            return Err(ExploreError::Aborted { reason: reason.to_string() });
        }
        Err(TestError::Fail(reason, steps)) => {
            let shrunk = Schedule { steps };
            // Only a reproduced verdict fails a case; anything else (a panic in the lab) is
            // proptest's failure, not a finding.
            let Some((case, after, generated, first_out)) = st.first else {
                return Err(ExploreError::Aborted { reason: reason.to_string() });
            };
            let (violations, trace) = match st.last_failure {
                Some((s, out)) if s == shrunk => match out.verdict {
                    Verdict::Reproduced { violations } => (violations, out.trace),
                    _ => (Vec::new(), out.trace),
                },
                _ => match first_out.verdict {
                    Verdict::Reproduced { violations } => (violations, first_out.trace),
                    _ => (Vec::new(), first_out.trace),
                },
            };
            // 4. Does the shrunk schedule show it with `racelab replay`'s own patience?
            let text = shrunk.to_string();
            let confirmed = (0..config.confirm)
                .filter(|_| {
                    matches!(
                        replayer.replay(race, design, Some(&text)).verdict,
                        Verdict::Reproduced { .. }
                    )
                })
                .count() as u32;
            let found = Found {
                case,
                after,
                generated,
                shrunk,
                shrink_replays: st.shrink_replays,
                violations,
                trace,
                confirmed,
                confirm_runs: config.confirm,
            };
            // A regression file is a gate: keep only what `racelab replay` shows most of the
            // time. A finding confirmed less often is reported, not kept.
            let steady = found.confirm_runs == 0 || found.confirmed * 2 > found.confirm_runs;
            if let (Some(file), true, true) = (&file, config.record, steady) {
                let ids: Vec<&str> = found.violations.iter().map(|v| v.invariant.id()).collect();
                let note = format!(
                    "{}: {}, seed {}, case {}, confirmed {}/{}",
                    ids.join(", "),
                    config.search,
                    config.seed,
                    found.case,
                    found.confirmed,
                    found.confirm_runs
                );
                if regressions::append(file, race, design, &found.shrunk, &note)? {
                    exploration.added_to = Some(file.clone());
                }
            }
            exploration.found = Some(found);
        }
    }
    exploration.wall = start.elapsed();

    // 5. The brute-force column: the unforced path, again and again.
    if let Some(cap) = config.stress {
        let want: Vec<Invariant> = match (&exploration.found, expect) {
            (Some(f), _) => f.violations.iter().map(|v| v.invariant).collect(),
            (None, crate::verdict::Expect::Reproduce(list)) => list.to_vec(),
            (None, crate::verdict::Expect::Prevent) => Vec::new(),
        };
        let budget = config.stress_budget;
        exploration.stress = Some(stress(replayer, race, design, &want, cap, budget, patience));
    }
    Ok(exploration)
}

/// Replays the empty schedule (with exploration's patience) until it breaks every invariant
/// of `want` (any invariant when `want` is empty), at most `cap` times and, with a `budget`,
/// no longer than that.
pub(super) fn stress(
    replayer: &mut Replayer,
    race: &Race,
    design: DesignId,
    want: &[Invariant],
    cap: u32,
    budget: Option<Duration>,
    patience: Option<crate::scenario::Patience>,
) -> Stress {
    let start = Instant::now();
    let mut replays = 0;
    while replays < cap && budget.is_none_or(|b| start.elapsed() < b) {
        replays += 1;
        let out = replayer.replay_with(race, design, Some(""), patience);
        let got = out.verdict.invariants();
        if !got.is_empty() && want.iter().all(|w| got.contains(w)) {
            return Stress { replays, hit: true, wall: start.elapsed() };
        }
    }
    Stress { replays, hit: false, wall: start.elapsed() }
}
