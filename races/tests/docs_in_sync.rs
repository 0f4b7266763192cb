//! docs/races stays in sync with the generator: each committed page equals a fresh generation
//! from a real replay (numbers folded; timeline lines compared as a multiset, since events of
//! unrelated threads may interleave differently). Regenerate with `racelab docs`.

use std::path::PathBuf;

#[test]
fn every_race_page_matches_a_fresh_generation() {
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_races-runner"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/races");
    for race in races::catalog::CATALOG {
        let path = dir.join(races::docs::file_name(race));
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; run `cargo run -- docs` to generate it", path.display())
        });
        if race.setup.stop == races::catalog::Stop::FreezeThenInterrupt
            && !racelab_cgroup::freezer_v1_usable()
        {
            // The page shows a root-only replay; as a normal user only its prose is comparable.
            let _ = racelab_sandbox::skip_unless(
                false,
                "v1 freezer",
                "the O2 page's timelines need it",
            );
            continue;
        }
        let fresh = races::race_page(&runner, race);
        let (want_prose, want_lines) = races::docs::normalize(&committed);
        let (got_prose, got_lines) = races::docs::normalize(&fresh);
        assert_eq!(want_prose, got_prose, "{} is stale: run `cargo run -- docs`", path.display());
        assert_eq!(
            want_lines,
            got_lines,
            "{}'s timeline changed: run `cargo run -- docs`\n{fresh}",
            path.display()
        );
    }
}
