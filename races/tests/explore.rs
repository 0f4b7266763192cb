//! Bounded, seeded exploration on real processes (issue 12): for each legacy design one race
//! it has must break within a few dozen drawn schedules, and the reference must hold within
//! the bound. The schedules kept in proptest-regressions/explore replay as recorded. A
//! regression of the reference (or an exploration that silently stopped finding anything)
//! turns this red. `RACES_EXPLORE_CASES=N` scales the reference's bound.

use races::catalog::{self, DesignId};
use races::explore::{self, Exploration, ExploreConfig, ExploreError, SearchStrategy};
use races::verdict::Verdict;
use races::{Replayer, RunAs};
use std::path::PathBuf;

fn replayer() -> Replayer {
    Replayer::new(&PathBuf::from(env!("CARGO_BIN_EXE_races-runner")), RunAs::Caller)
}

/// Explores `race` against `design` from scratch (no regression file), seeded.
fn explore(
    race: &str,
    design: DesignId,
    search: SearchStrategy,
    cases: u32,
    seed: u64,
) -> Exploration {
    let race = catalog::find(race).expect("race in the catalog");
    let config = ExploreConfig {
        search,
        cases,
        seed,
        max_shrink_iters: 24,
        confirm: 0,
        regressions: None,
        record: false,
        stress: None,
        stress_budget: None,
    };
    explore::explore(&mut replayer(), race, design, &config, &mut |_| {})
        .unwrap_or_else(|e| panic!("{} against {}: {e}", race.id, design.name()))
}

/// `race` against the legacy `design` breaks within `cases` drawn schedules, and the shrunk
/// schedule is no longer than the one drawn.
fn finds(race: &str, design: DesignId, cases: u32, seed: u64) {
    let e = explore(race, design, SearchStrategy::Random, cases, seed);
    if let Some(reason) = &e.skipped {
        racelab_sandbox::skip_unless(false, "race capability", reason);
        return;
    }
    if e.found.is_none() {
        panic!("exploration found nothing within {cases} cases:\n{}", e.summary());
    }
    finds_checked(&e);
}

/// What a finding must be: shrunk no longer than drawn, with the violations, as expected.
fn finds_checked(e: &Exploration) {
    let found = e.found.as_ref().expect("a finding");
    assert!(found.shrunk.steps.len() <= found.generated.steps.len(), "{}", e.summary());
    assert!(!found.violations.is_empty(), "{}", e.summary());
    assert!(e.as_expected(), "{}", e.summary());
}

/// The reference holds within `cases` drawn schedules of `race`.
fn holds(race: &str, search: SearchStrategy, cases: u32, seed: u64) {
    let cases =
        std::env::var("RACES_EXPLORE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    let e = explore(race, DesignId::Reference, search, cases, seed);
    assert!(e.found.is_none(), "BUG FOUND IN THE REFERENCE:\n{}", e.summary());
    assert_eq!(e.cases, cases, "{}", e.summary());
    assert_eq!(e.counts.lab_errors, 0, "{}", e.summary());
}

/// Q4 rather than Q1: one lab action in a window of five points breaks it, so a few cases
/// find it; Q1 needs three coordinated steps and about a hundred cases (docs/exploration.md).
#[test]
fn global_atomics_drops_an_interrupt_during_spawn_found_by_exploration() {
    finds("Q4", DesignId::GlobalAtomics, 30, 0);
}

/// The bound is wide: Z2's points vary from run to run (whether the reaper passes its points
/// depends on who reaps first), so the draws do too, and the finding itself is racy (the
/// reaper wins the status about 4 times in 5): a few percent of schedules break it. Quiet, seed
/// 0 finds it at case 6; once, with nextest's parallel processes and another lab on the
/// machine, 150 cases found nothing (28 lab errors). So up to three seeds are tried, and the
/// test fails only if none finds it.
#[test]
fn greedy_reaper_loses_the_main_childs_status_found_by_exploration() {
    for seed in 0..3 {
        let e = explore("Z2", DesignId::GreedyReaper, SearchStrategy::Random, 150, seed);
        if let Some(reason) = &e.skipped {
            racelab_sandbox::skip_unless(false, "race capability", reason);
            return;
        }
        if e.found.is_some() {
            return finds_checked(&e);
        }
        eprintln!("seed {seed}: {}", e.summary());
    }
    panic!("exploration of Z2 against greedy_reaper found nothing with seeds 0, 1 and 2");
}

#[test]
fn reap_once_leaves_zombies_found_by_exploration() {
    finds("Z1", DesignId::ReapOnce, 20, 0);
}

#[test]
fn exec_under_lock_leaves_the_program_behind_found_by_exploration() {
    finds("O1", DesignId::ExecUnderLock, 5, 0);
}

#[test]
fn unbounded_poll_helper_leaves_its_tree_found_by_exploration() {
    finds("O3", DesignId::UnboundedPoll, 5, 0);
}

#[test]
fn reference_holds_under_random_schedules_of_q1() {
    holds("Q1", SearchStrategy::Random, 40, 1);
}

#[test]
fn reference_holds_under_pct_schedules_of_q3() {
    holds("Q3", SearchStrategy::Pct { depth: 3 }, 40, 1);
}

/// Every schedule kept in proptest-regressions/explore still does what it did: a legacy
/// design breaks (at least once in 30 replays: some findings are timing-dependent beyond the
/// schedule), the reference never (in three).
#[test]
fn kept_schedules_replay_as_recorded() {
    let dir = explore::regressions::default_dir();
    let mut replayer = replayer();
    for race in catalog::CATALOG {
        for &(design, expect) in race.designs {
            let file = explore::regressions::path(&dir, race, design);
            for schedule in explore::regressions::load(&file).expect("a readable regression file") {
                let text = schedule.to_string();
                // A legacy finding may be timing-dependent beyond its schedule (the file says
                // how often it was confirmed): up to 30 replays, stopping at the first break.
                // The PCT finding of Q3 breaks global_atomics in 128 replays of 200 on a quiet
                // machine, and a loaded soak once saw 8 in a row hold; a break usually comes at
                // the first replay, so the wide bound costs nothing when all is well.
                let mut verdicts: Vec<Verdict> = Vec::new();
                while verdicts.len() < 30
                    && !verdicts.iter().any(|v| matches!(v, Verdict::Reproduced { .. }))
                    && (expect != races::verdict::Expect::Prevent || verdicts.len() < 3)
                {
                    verdicts.push(replayer.replay(race, design, Some(&text)).verdict);
                }
                if verdicts.iter().any(|v| matches!(v, Verdict::Skipped { .. })) {
                    continue;
                }
                let broke = verdicts.iter().any(|v| matches!(v, Verdict::Reproduced { .. }));
                match expect {
                    races::verdict::Expect::Reproduce(_) => assert!(
                        broke,
                        "{}: {text} no longer breaks {} ({verdicts:?})",
                        file.display(),
                        design.name()
                    ),
                    races::verdict::Expect::Prevent => assert!(
                        !broke,
                        "BUG FOUND IN THE REFERENCE: {}: {text} ({verdicts:?})",
                        file.display()
                    ),
                }
            }
        }
    }
}

#[test]
fn a_design_the_race_does_not_run_against_or_zero_cases_is_a_usage_error() {
    let q1 = catalog::find("Q1").unwrap();
    let config = ExploreConfig::default();
    let err = explore::explore(&mut replayer(), q1, DesignId::ReapOnce, &config, &mut |_| {});
    assert!(matches!(err, Err(ExploreError::NotApplicable { .. })), "{err:?}");
    let zero = ExploreConfig { cases: 0, ..ExploreConfig::default() };
    let err = explore::explore(&mut replayer(), q1, DesignId::Reference, &zero, &mut |_| {});
    assert!(matches!(err, Err(ExploreError::NoCases)), "{err:?}");
}

/// A schedule no run can meet comes back as a verdict, never a crash or a hang: an edge whose
/// later point's thread would wait for itself is unrealizable at once in the reference (its
/// actors are bound to one thread) and stuck until the park deadline in a threaded design.
#[test]
fn a_thread_waiting_for_itself_is_reported_not_crashed() {
    let race = catalog::find("Q1").unwrap();
    let patience = races::scenario::Patience {
        park: std::time::Duration::from_millis(100),
        replay: std::time::Duration::from_millis(500),
    };
    let mut replayer = replayer();
    let out = replayer.replay_with(
        race,
        DesignId::Reference,
        Some("main.classified < main.spawned"),
        Some(patience),
    );
    assert!(
        out.trace.events.iter().any(|e| e.kind == racelab_hooks::EventKind::Unrealizable),
        "{:?}\n{}",
        out.verdict,
        out.trace
    );
    assert!(!matches!(out.verdict, Verdict::Reproduced { .. } | Verdict::LabError { .. }));
    let out = replayer.replay_with(
        race,
        DesignId::GlobalAtomics,
        Some("main.classified < main.spawned"),
        Some(patience),
    );
    assert!(matches!(out.verdict, Verdict::NotForced { .. }), "{:?}", out.verdict);
}
