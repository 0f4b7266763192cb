//! The catalog works for a normal user: when the suite runs as root, replays run again as
//! uid 65534 (through setpriv), in a user namespace, with the same verdicts. As a normal user
//! the whole suite already is this test.

use races::catalog;
use races::verdict::Verdict;
use races::{RunAs, replay_as};
use std::path::PathBuf;

#[test]
fn every_race_gives_the_same_verdicts_to_an_unprivileged_user() {
    let root = rustix::process::geteuid().is_root();
    let setpriv = std::process::Command::new("setpriv").arg("--version").output().is_ok();
    if racelab_sandbox::skip_unless(
        root,
        "root",
        "dropping to uid 65534 needs root; as a normal user every test already runs unprivileged",
    ) || racelab_sandbox::skip_unless(
        setpriv,
        "setpriv (util-linux)",
        "it drops the runner to uid 65534",
    ) {
        return;
    }
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_races-runner"));
    for race in catalog::CATALOG {
        for &(design, expect) in race.designs {
            let out = replay_as(&runner, race, design, None, RunAs::Nobody);
            match &out.verdict {
                // Root-only capabilities (the v1 freezer) are reported, by name, not failed.
                Verdict::Skipped { reason } => {
                    assert!(reason.contains("freezer"), "{}: {reason}", race.id)
                }
                v => {
                    if let Err(why) = expect.check(v) {
                        panic!(
                            "{} against {} as uid 65534: {why}\n{}",
                            race.id,
                            design.name(),
                            out.trace.to_text()
                        );
                    }
                }
            }
        }
    }
}

/// Syscall points need no privilege either: a seccomp filter with a listener is installed after
/// PR_SET_NO_NEW_PRIVS, inside the replay's user namespace.
#[test]
fn black_box_cells_give_the_same_verdicts_to_an_unprivileged_user() {
    let root = rustix::process::geteuid().is_root();
    if racelab_sandbox::skip_unless(
        root,
        "root",
        "dropping to uid 65534 needs root; as a normal user every test already runs unprivileged",
    ) {
        return;
    }
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_races-runner"));
    for (case, program) in [
        ("E1", "tini"),
        ("Q4", "piano-0.14.0"),
        ("Z1", "dumb-init"),
        ("Q3", "piano-0.14.0"),
        ("E1", "timeout"),
    ] {
        let program = races::programs::find(program).expect("program");
        if let Err(reason) = program.binary(&runner) {
            racelab_sandbox::skip_unless(false, &program.name, &reason);
            continue;
        }
        let cell = races::conformance::cell(case, &program.name).expect("cell");
        let races::conformance::CellExpect::Run(expect) = cell.expect else { continue };
        let case = races::conformance::find_case(case).expect("case");
        let out = races::replay_program(&runner, case, program, None, RunAs::Nobody);
        if let Err(why) = expect.check(&out.verdict) {
            panic!(
                "{} against {} as uid 65534: {why}\n{}",
                case.race,
                program.name,
                out.trace.to_text()
            );
        }
    }
}
