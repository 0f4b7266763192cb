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
