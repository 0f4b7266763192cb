//! Without loom: each model runs on real threads, in whatever order the OS picks. The
//! reference protocol must keep every invariant in every run; the old one may break them, but
//! only in the ways its races allow.

use crate::{Invariant, Scenario, check, old, reference};

const RUNS: usize = 200;

/// The invariants the old protocol can break in a scenario.
fn old_races(scenario: &Scenario) -> &'static [Invariant] {
    match (scenario.innocent, scenario.interrupt) {
        (true, _) => &[Invariant::Q1, Invariant::Q3],
        (false, false) => &[Invariant::Q3],
        (false, true) => &[Invariant::Q3, Invariant::Q4],
    }
}

#[test]
fn reference_protocol_keeps_every_invariant_on_std_threads() {
    for scenario in Scenario::ALL {
        for _ in 0..RUNS {
            if let Err(v) = check(&reference::run(scenario), Invariant::ALL) {
                panic!("scenario {}: {v}", scenario.name);
            }
        }
    }
}

#[test]
fn old_protocol_breaks_only_what_its_races_break_on_std_threads() {
    for scenario in Scenario::ALL {
        for _ in 0..RUNS {
            if let Err(v) = check(&old::run(scenario), Invariant::ALL) {
                assert!(
                    old_races(scenario).contains(&v.invariant),
                    "scenario {}: unexpected {v}",
                    scenario.name
                );
            }
        }
    }
}

#[test]
fn every_scenario_fits_in_loom_s_five_threads() {
    for scenario in Scenario::ALL {
        for reference in [false, true] {
            assert!(scenario.threads(reference) <= 5, "{} {reference}", scenario.name);
        }
    }
}
