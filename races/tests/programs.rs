//! The conformance matrix on real, unmodified programs: every runnable cell of every black-box
//! program replayed `RACES_PROGRAM_REPEAT` times (default 3) and checked against what the
//! matrix expects. Every action of a reproduced cell must have run while the kernel held the
//! point's thread (its wait channel in seccomp's notification): if a point stopped parking its
//! thread, these tests go red. And for every cell where a program has a timing race, the
//! control that the lab is what forces it: the same actions at a moment no point chooses (the
//! child's start), nothing parked, must not reproduce the race every time.
//!
//! A program that is not installed is a named skip (a failure under RACELAB_STRICT=1):
//! piano comes from `cargo install` into target/programs (see .ci/run, scripts/install-programs),
//! tini, dumb-init and catatonit from Debian packages, `supervise` from this workspace.

use races::conformance::{self, CellExpect};
use races::programs;
use races::verdict::{Expect, Verdict};
use std::path::PathBuf;

fn runner() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_races-runner"))
}

fn repeat() -> u32 {
    std::env::var("RACES_PROGRAM_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// Whether the program is here; otherwise a named skip.
fn installed(name: &str) -> Option<&'static programs::Program> {
    let program = programs::find(name).expect("a known program");
    match program.binary(&runner()) {
        Ok(_) => Some(program),
        Err(reason) => {
            racelab_sandbox::skip_unless(false, name, &reason);
            None
        }
    }
}

/// Replays every runnable cell of `name` and checks each verdict.
fn conforms(name: &str) {
    let Some(program) = installed(name) else { return };
    let mut replayer = races::Replayer::new(&runner(), races::RunAs::Caller);
    let mut ran = 0;
    for cell in conformance::CELLS.iter().filter(|c| c.program == name) {
        let CellExpect::Run(expect) = cell.expect else { continue };
        let case = conformance::find_case(cell.case).expect("case");
        for i in 0..repeat() {
            let out = replayer.replay_program(case, program, None);
            let actions = out
                .trace
                .events
                .iter()
                .filter(|e| e.kind == racelab_hooks::EventKind::Action)
                .count();
            let parked = out
                .trace
                .events
                .iter()
                .filter(|e| e.detail.starts_with(racelab_blackbox::PARKED))
                .count();
            if matches!(out.verdict, Verdict::Reproduced { .. }) && parked < actions {
                panic!(
                    "{} against {name} replay #{i}: {actions} actions ran but only {parked} with their thread parked in the kernel\n{}",
                    cell.case,
                    out.trace.to_text()
                );
            }
            if let Err(why) = expect.check(&out.verdict) {
                panic!(
                    "{} against {name} replay #{i}: {why}\nverdict: {:?}\nreport: {:?}\ntrace:\n{}\nreplay it: racelab replay {} --program {name}",
                    cell.case,
                    out.verdict,
                    out.design_report,
                    out.trace.to_text(),
                    cell.case
                );
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "{name} has no runnable cell");
}

/// The cells whose race is a timing window the lab holds open at a syscall. (Z1 against a
/// program that never reaps orphans, and E2's drop, which is forced by when the lab signals,
/// are covered below or need no window.)
fn timing_cells(name: &str) -> Vec<&'static conformance::Cell> {
    conformance::CELLS
        .iter()
        .filter(|c| c.program == name && ["Q1", "Q3", "Q4", "Q4b", "E1", "E2"].contains(&c.case))
        .filter(|c| matches!(c.expect, CellExpect::Run(Expect::Reproduce(_))))
        .collect()
}

/// With the actions at the child's start and nothing parked, the program's race must not
/// reproduce every time: the window is what the points hold open. One replay that does not
/// reproduce is the proof (the conformance test demands that every replay reproduce); most
/// cells give it at the first replay. A loaded machine can stretch an unheld window until the
/// unforced action lands in it by luck (a soak once saw E1 against GNU timeout reproduce 3
/// times in a row), so up to 20 replays are tried before the test calls the window forced by
/// luck rather than by the lab.
fn needs_the_lab(name: &str) {
    let Some(program) = installed(name) else { return };
    let mut replayer = races::Replayer::new(&runner(), races::RunAs::Caller);
    for cell in timing_cells(name) {
        let case = conformance::find_case(cell.case).expect("case");
        const MAX: usize = 20;
        let mut held = false;
        for i in 0..MAX {
            let out = replayer.replay_program_unforced(case, program);
            assert!(
                !matches!(out.verdict, Verdict::LabError { .. } | Verdict::Skipped { .. }),
                "{} against {name} unforced, replay #{i}: {:?}",
                cell.case,
                out.verdict
            );
            if !matches!(out.verdict, Verdict::Reproduced { .. }) {
                held = true;
                break;
            }
        }
        assert!(
            held,
            "{} against {name} reproduced {MAX}/{MAX} times unforced: the lab is not what forces it",
            cell.case
        );
    }
}

macro_rules! programs {
    ($($conforms:ident, $needs:ident: $name:literal;)+) => {
        $(
            #[test]
            fn $conforms() {
                conforms($name);
            }

            #[test]
            fn $needs() {
                needs_the_lab($name);
            }
        )+
    };
}

programs! {
    piano_0_14_0_reproduces_q1_q3_q4_q4b_r1_z1, piano_0_14_0_races_need_the_parked_syscalls: "piano-0.14.0";
    piano_0_15_1_prevents_q1_q4_q4b_keeps_r1, piano_0_15_1_races_need_the_parked_syscalls: "piano-0.15.1";
    tini_loses_an_early_signal_with_g_and_forwards_the_rest, tini_races_need_the_parked_syscalls: "tini";
    tini_static_behaves_as_tini, tini_static_races_need_the_parked_syscalls: "tini-static";
    dumb_init_loses_a_signal_before_setsid, dumb_init_races_need_the_parked_syscalls: "dumb-init";
    catatonit_loses_an_early_signal_with_g, catatonit_races_need_the_parked_syscalls: "catatonit";
    gnu_timeout_orphans_on_an_early_signal_pins_the_pid_forwards_four_reaps_no_orphan, gnu_timeout_races_need_the_parked_syscalls: "timeout";
    supervise_prevents_every_race_a_peer_has_but_the_kernels_pid1_drop, supervise_races_need_the_parked_syscalls: "supervise";
}

#[test]
fn every_program_has_a_cell_in_every_case_or_none() {
    for case in conformance::CASES {
        let cells = conformance::CELLS.iter().filter(|c| c.case == case.race).count();
        assert!(cells > 0, "{} has no cell", case.race);
    }
}

/// The lab counts a PID 1's zombies only when it is idle. With the point on supervise's own
/// reaping `waitid`, every call of its reaping loop is a notification: the reaper sleeps once
/// per call, and two looks at /proc caught it "asleep" mid-reap (I6, up to all 50 orphans
/// counted as zombies, 3 replays in 10). Quiet now also means: no notification queued or held,
/// no thread in seccomp's wait, and no context switch between the two looks.
#[test]
fn zombies_are_not_counted_while_the_reaper_waits_on_a_notification() {
    let Some(program) = installed("supervise") else { return };
    let case = conformance::find_case("Z1").expect("case");
    let mut replayer = races::Replayer::new(&runner(), races::RunAs::Caller);
    for i in 0..10 {
        let out =
            replayer.replay_program(case, program, Some("on supervise.waitid: orphans(child)"));
        assert!(
            matches!(out.verdict, Verdict::Prevented),
            "Z1 against supervise, its waitid held, replay #{i}: {:?}\n{}",
            out.verdict,
            out.trace.to_text()
        );
    }
}
