//! Replays every catalogued race against every design it applies to, on real processes in
//! throw-away PID namespaces: a legacy design must reproduce its race every time, the
//! reference never. `RACES_REPEAT=N` changes the number of replays per cell (default 10; the 1000-replay figures are in docs/replays.md).

use races::catalog::{self, DesignId};
use races::verdict::Verdict;
use std::path::PathBuf;

fn runner() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_races-runner"))
}

fn repeat() -> u32 {
    std::env::var("RACES_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(10)
}

/// Replays `race` against `design` `repeat()` times and checks each verdict: the first replay
/// through an exec'd runner, the rest through a runner server (one exec, a fork per replay).
fn replay(race: &str, design: DesignId) {
    let race = catalog::find(race).expect("race in the catalog");
    let (_, expect) = *race.designs.iter().find(|(d, _)| *d == design).expect("design applies");
    let mut replayer = races::Replayer::new(&runner(), races::RunAs::Caller);
    for i in 0..repeat() {
        let out = if i == 0 {
            races::replay_once(&runner(), race, design, None)
        } else {
            replayer.replay(race, design, None)
        };
        if let Verdict::Skipped { reason } = &out.verdict {
            racelab_sandbox::skip_unless(false, "race capability", reason);
            return;
        }
        if let Err(why) = expect.check(&out.verdict) {
            panic!(
                "{} against {} replay #{i}: {why}\nverdict: {:?}\nreport: {:?}\ntrace:\n{}\nreplay it: racelab replay {} --design {}",
                race.id,
                design.name(),
                out.verdict,
                out.design_report,
                out.trace.to_text(),
                race.id,
                design.name()
            );
        }
    }
}

macro_rules! cells {
    ($($name:ident: $race:literal, $design:ident;)+) => {
        $(
            #[test]
            fn $name() {
                replay($race, DesignId::$design);
            }
        )+
    };
}

cells! {
    q1_global_atomics_kills_the_process_that_took_the_recycled_pid: "Q1", GlobalAtomics;
    q1_reference_never_signals_a_recycled_pid: "Q1", Reference;
    q3_global_atomics_reports_duration_after_sending_sigkill: "Q3", GlobalAtomics;
    q3_reference_reports_the_kill_it_sent: "Q3", Reference;
    q4_global_atomics_drops_an_interrupt_that_lands_during_spawn: "Q4", GlobalAtomics;
    q4_polling_fix_forwards_an_interrupt_that_lands_during_spawn: "Q4", PollingFix;
    q4_reference_forwards_an_interrupt_that_lands_during_spawn: "Q4", Reference;
    q4b_global_atomics_without_grace_hangs_then_orphans_the_child: "Q4b", GlobalAtomics;
    q4b_reference_without_grace_stops_within_its_bound: "Q4b", Reference;
    o2_unbounded_poll_never_returns_while_the_child_is_unkillable: "O2", UnboundedPoll;
    o2_reference_returns_within_its_bound_and_reports_unkillable: "O2", Reference;
    z1_reap_once_leaves_zombies_after_a_burst: "Z1", ReapOnce;
    z1_reference_leaves_no_zombie_after_a_burst: "Z1", Reference;
    z2_greedy_reaper_steals_the_main_childs_status: "Z2", GreedyReaper;
    z2_reference_routes_the_main_childs_status: "Z2", Reference;
    o1_exec_under_lock_leaves_the_program_and_its_lock_behind: "O1", ExecUnderLock;
    o1_reference_takes_the_program_and_its_lock_down: "O1", Reference;
    o3_unbounded_poll_helper_killed_by_pdeathsig_leaves_its_tree: "O3", UnboundedPoll;
    o3_reference_killed_with_its_parent_takes_its_tree_down: "O3", Reference;
    p1_preexec_pdeathsig_child_outlives_a_parent_dead_before_its_prctl: "P1", PreexecPdeathsig;
    p1_reference_child_rechecks_its_parent_after_the_prctl: "P1", Reference;
    p2_spawner_thread_exit_kills_a_healthy_child: "P2", SpawnerThread;
    p2_reference_spawns_and_waits_on_one_thread: "P2", Reference;
    g1_group_kill_after_reap_hits_the_group_that_took_the_id: "G1", GroupKillAfterReap;
    g1_reference_sweeps_the_group_before_reaping_its_leader: "G1", Reference;
    s1_reaping_handler_drops_the_status_of_an_unstored_pid_and_waits_on: "S1", ReapingHandler;
    s1_reference_sees_an_exit_that_comes_before_the_pid_is_stored: "S1", Reference;
    h1_unbounded_drain_reads_forever_from_a_pipe_a_grandchild_holds: "H1", UnboundedDrain;
    h1_reference_kills_the_tree_and_bounds_its_read: "H1", Reference;
}
