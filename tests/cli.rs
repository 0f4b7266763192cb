//! End-to-end tests of the `racelab` binary as a new user and a CI pipeline run it: the quick
//! start's main job (no arguments), the JSON and JUnit reports, and usage errors.

use std::process::{Command, Output};

const RACELAB: &str = env!("CARGO_BIN_EXE_racelab");

fn racelab(args: &[&str]) -> Output {
    Command::new(RACELAB).args(args).output().expect("run racelab")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The README's first command (`cargo run --release`) runs this: the whole catalog against
/// every design, the matrix on stdout, exit 0 when every cell is as expected.
#[test]
fn no_arguments_replays_the_whole_catalog_and_prints_the_matrix() {
    let out = racelab(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let header = text.lines().position(|l| l.starts_with("race  design")).expect("matrix header");
    for race in races::catalog::CATALOG {
        for (design, _) in race.designs {
            let row = text.lines().skip(header).find(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some(race.id) && w.next() == Some(design.name())
            });
            let row =
                row.unwrap_or_else(|| panic!("no row for {} {}\n{text}", race.id, design.name()));
            assert!(row.ends_with("yes"), "{row}");
        }
    }
    // The legend explains the timeline's columns, `2/2` included.
    assert!(text.contains("pid/tid inside the replay's own PID namespace"), "{text}");
    // Every cell as expected: no timelines to scroll the matrix away, and a last line that
    // says so.
    assert!(!text.contains("\n== "), "a timeline of a cell that was as expected:\n{text}");
    let last = text.lines().last().unwrap_or("");
    assert!(last.contains(" not (exit 0)") && last.contains(" as expected, 0 not"), "{last}");
}

/// `--timelines` prints every cell's timeline; a run of one cell prints its own anyway.
#[test]
fn timelines_are_printed_when_asked_or_for_a_single_cell() {
    let all = stdout(&racelab(&["replay", "Z2", "--timelines"]));
    assert!(all.contains("\n== Z2 ") && all.matches("\n== Z2 ").count() == 2, "{all}");
    let one = stdout(&racelab(&["replay", "Z2", "--design", "reference"]));
    assert!(one.contains("\n== Z2 "), "{one}");
    assert!(
        one.lines().last().unwrap_or("").starts_with("1 cell, 1 replay: 1 as expected"),
        "{one}"
    );
}

#[test]
fn replay_json_is_the_documented_versioned_document() {
    let out = racelab(&["replay", "Z2", "Q1", "--repeat", "2", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: races::schema::ReplayDocument =
        serde_json::from_slice(&out.stdout).expect("the JSON parses as the schema");
    assert_eq!((doc.schema.as_str(), doc.version), ("racelab.replay", races::schema::VERSION));
    assert!(doc.all_as_expected);
    let cells: Vec<(&str, &str)> =
        doc.cells.iter().map(|c| (c.race.as_str(), c.design.as_str())).collect();
    // In the order the races were named, each race's designs in catalog order.
    assert_eq!(
        cells,
        [
            ("Z2", "greedy_reaper"),
            ("Z2", "reference"),
            ("Q1", "global_atomics"),
            ("Q1", "reference")
        ]
    );
    let q1 = &doc.cells[2];
    assert_eq!((q1.replays, q1.counts.reproduced, q1.actual.as_str()), (2, 2, "reproduced"));
    assert_eq!(q1.expected.invariants, ["I1"]);
    assert_eq!(q1.violations[0].invariant, "I1");
    assert!(q1.violations[0].evidence.contains("killed by signal 9"), "{:?}", q1.violations);
    assert_eq!(q1.replay_command, "racelab replay Q1 --design global_atomics");
    assert!(q1.median_us > 0);
    // Unknown fields would mean the document drifted from its schema types.
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), raw);
}

#[test]
fn list_and_doctor_print_json_documents() {
    let list: races::schema::ListDocument =
        serde_json::from_slice(&racelab(&["list", "--format", "json"]).stdout).expect("list");
    assert_eq!(list.schema, "racelab.list");
    assert_eq!(list.races.len(), races::catalog::CATALOG.len());
    let out = racelab(&["doctor", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doctor: races::schema::DoctorDocument =
        serde_json::from_slice(&out.stdout).expect("doctor");
    assert!(doctor.capabilities.iter().any(|c| c.key == "pidfd" && c.available));
}

#[test]
fn junit_report_has_one_test_case_per_cell() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("racelab.xml");
    let out = racelab(&["replay", "Z2", "--format", "junit", "--output", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "the report goes to the file, not stdout");
    let xml = std::fs::read_to_string(&path).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    assert_eq!(suites.len(), 1);
    let cases: Vec<_> = suites[0].children().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(suites[0].attribute("tests"), Some("2"));
    assert_eq!(suites[0].attribute("failures"), Some("0"));
    for case in cases {
        assert_eq!(case.attribute("classname"), Some("racelab.Z2"));
        assert!(case.attribute("time").and_then(|t| t.parse::<f64>().ok()).is_some());
        assert!(!case.children().any(|n| n.has_tag_name("failure") || n.has_tag_name("error")));
    }
    // Nothing else was left in the directory (the report was renamed into place).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_cell_not_as_expected_is_a_junit_failure_and_exit_1() {
    // The empty schedule stops the lab forcing Z2: the legacy design no longer reproduces.
    let out = racelab(&[
        "replay",
        "Z2",
        "--design",
        "greedy_reaper",
        "--schedule",
        "",
        "--format",
        "junit",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let failure = doc.descendants().find(|n| n.has_tag_name("failure")).expect("a failure");
    assert!(failure.attribute("message").is_some_and(|m| m.contains("expected reproduce I7")));
    assert!(failure.text().is_some_and(|t| t.contains("replay it: racelab replay Z2")));
}

#[test]
fn usage_errors_exit_2_and_name_what_was_wrong() {
    for (args, says) in [
        (&["replay", "Q9"][..], "unknown race \"Q9\"; known races: Q1"),
        (&["replay", "--design", "nope"][..], "unknown design \"nope\"; known designs:"),
        (&["replay", "--schedule", "main.reaepd < main.spawned"][..], "malformed --schedule"),
        (&["--repeat", "0"][..], "--repeat"),
        (&["replay", "Z1", "--design", "global_atomics"][..], "no race of"),
        (
            &["replay", "Q1", "--schedule", "on piano.kill(SIGKILL): exit(child)"][..],
            "need --program",
        ),
        (
            &["replay", "E1", "--program", "tini", "--schedule", "main.spawned < main.reaped"][..],
            "a hook point",
        ),
        (
            &["replay", "Q1", "--program", "nosuch"][..],
            "unknown program \"nosuch\"; known programs: piano-0.14.0",
        ),
        (&["explore", "Q9"][..], "unknown race \"Q9\""),
        (&["explore", "--design", "nope"][..], "unknown design \"nope\""),
        (
            &["explore", "Z1", "--design", "global_atomics"][..],
            "Z1 does not run against global_atomics",
        ),
        (&["explore", "--cases", "0"][..], "--cases"),
        (&["explore", "--strategy", "dfs"][..], "--strategy"),
    ] {
        let out = racelab(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    }
}

/// Runs one black-box replay that must come out `not forced` (exit 1, nothing prevented), and
/// checks that its report says `why`.
fn assert_not_forced(mut replay: Command, why: &str) {
    let out = replay.args(["--format", "json"]).output().expect("run racelab");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let cell = &doc["cells"][0];
    assert_eq!(cell["counts"]["not_forced"], 1, "{cell}");
    assert_eq!(cell["counts"]["prevented"], 0, "{cell}");
    let said = cell["failures"][0]["why"].as_str().unwrap_or("");
    assert!(said.contains(why), "{said}");
}

/// A black-box program that ends before it starts the workload and signals nobody tested
/// nothing: that is "not forced", never "prevented" (exit 1), and the report says why.
#[test]
fn a_program_that_starts_nothing_is_not_forced_not_prevented() {
    let mut replay = Command::new(RACELAB);
    replay.args(["replay", "F1", "--program", "supervise"]).env("RACELAB_SUPERVISE", "/bin/false");
    assert_not_forced(replay, "never started its child");
}

/// A schedule whose action point the program never reaches did not run: no invariant broke,
/// yet nothing was tested. supervise reaps with waitid, never wait4.
#[test]
fn a_schedule_whose_point_is_never_reached_is_not_forced_not_prevented() {
    let mut replay = Command::new(RACELAB);
    replay
        .args(["replay", "Z1", "--program", "supervise", "--schedule"])
        .arg("on supervise.wait4: orphans(child)");
    assert_not_forced(replay, "never reached: on supervise.wait4");
}
