//! End-to-end tests of `racelab check` as a user's CI runs it: a bundled spec, a spec file, the
//! short form; a finding that replays N of N; a program that holds; bad input (exit 2, nothing
//! run). Each run has a small budget: the held-out rediscovery of the whole matrix is a docs
//! run (docs/check.md), not a test.

use std::path::PathBuf;
use std::process::{Command, Output};

const RACELAB: &str = env!("CARGO_BIN_EXE_racelab");

fn racelab(args: &[&str]) -> Output {
    Command::new(RACELAB).args(args).output().expect("run racelab")
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A Debian program the test needs, or a named skip (a failure under RACELAB_STRICT=1).
fn installed(path: &str, package: &str) -> bool {
    !racelab_sandbox::skip_unless(
        std::path::Path::new(path).is_file(),
        path,
        &format!("the Debian package {package} (scripts/install-programs installs it)"),
    )
}

fn case<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    let cases = doc["cases"].as_array().expect("cases");
    cases.iter().find(|c| c["case"] == id).unwrap_or_else(|| panic!("no case {id} in {doc}"))
}

/// E2 against tini, found from scratch: the finding replays 3 of 3, and the command printed
/// with it replays it again.
#[test]
fn a_finding_is_found_from_scratch_and_its_printed_command_replays_it() {
    if !installed("/usr/bin/tini", "tini") {
        return;
    }
    let out = racelab(&["check", "E2", "--program", "tini", "--confirm", "3", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((doc["schema"].as_str(), doc["version"].as_u64()), (Some("racelab.check"), Some(1)));
    let e2 = case(&doc, "E2");
    assert_eq!(e2["verdict"], "broke", "{e2}");
    let finding = &e2["finding"];
    assert_eq!((finding["reproduced"].as_u64(), finding["of"].as_u64()), (Some(3), Some(3)));
    let schedule = finding["schedule"].as_str().expect("schedule");
    assert!(schedule.starts_with("on tini."), "{schedule}");
    let invariants: Vec<&str> =
        finding["invariants"].as_array().unwrap().iter().filter_map(|i| i.as_str()).collect();
    assert!(invariants.contains(&"I3"), "{invariants:?}");
    // Flipping its one ordering (the same SIGTERM once the child is ready) turns the verdict:
    // the pair is the signal and the point it was held at.
    let pair = finding["racing_pair"].as_str().unwrap_or("");
    assert!(pair.starts_with("terminate(target) while the thread is at tini."), "{pair}");
    let again =
        racelab(&["check", "E2", "--program", "tini", "--schedule", schedule, "--repeat", "3"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("broke 3 of 3 replays"), "{}", text(&again));
}

/// GNU timeout's E1 window is the moment its clone returned, before it stored the child's PID:
/// no syscall there, so exploration holds the clone's exit (ptrace). The catalogued cell's
/// schedule, rediscovered without it.
#[test]
fn a_window_at_a_syscall_exit_is_found_with_ptrace() {
    if !installed("/usr/bin/timeout", "coreutils") {
        return;
    }
    let out =
        racelab(&["check", "E1", "--program", "timeout", "--confirm", "3", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let e1 = case(&doc, "E1");
    assert_eq!(e1["verdict"], "broke", "{e1}");
    assert_eq!(e1["finding"]["schedule"], "on timeout.clone.exit: terminate(target)", "{e1}");
}

fn supervise() -> PathBuf {
    // The workspace's own supervise, beside this test's racelab.
    PathBuf::from(RACELAB).with_file_name("supervise")
}

/// The short form, on a program that holds: supervise as a subreaper passes E1 (signals
/// blocked before spawn). Exit 0, and the JUnit report has the case as a passing test case.
#[test]
fn the_short_form_checks_a_program_that_holds() {
    let sup = supervise();
    if racelab_sandbox::skip_unless(sup.is_file(), "supervise", "built with the workspace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("check.xml");
    let sup = sup.display().to_string();
    let args = [
        "check",
        "E1",
        "--role",
        "subreaper",
        "--budget",
        "40",
        "--confirm",
        "2",
        "--format",
        "junit",
        "--output",
        xml.to_str().unwrap(),
        "--",
        &sup,
        "--subreaper",
        "-k",
        "1s",
        "--",
        "{child}",
    ];
    let out = racelab(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let xml = std::fs::read_to_string(&xml).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit parses");
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 1, "{xml}");
    assert!(cases[0].attribute("name").unwrap().starts_with("E1 "), "{xml}");
    assert!(!cases[0].children().any(|c| c.is_element()), "E1 must pass: {xml}");
}

/// A program that never reaches a point the case needs tested nothing: `not explored` with
/// what it did, never `held`, and the check fails.
#[test]
fn a_program_that_never_meets_the_case_is_not_explored() {
    let out = racelab(&["check", "Z1", "--role", "init", "--budget", "10", "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not explored"), "{}", text(&out));
}

/// Bad input: exit 2, a message naming what was wrong, nothing on stdout, nothing run.
#[test]
fn bad_input_is_a_usage_error_naming_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nroles = [\"init\"]\ncolour = 3\n[install]\npath = \"/bin/true\"\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let missing = dir.path().join("missing.toml");
    std::fs::write(&missing, "name = \"gone\"\nroles = [\"init\"]\n[install]\ndebian = \"gone\"\npath = \"/nonexistent/gone\"\n").unwrap();
    let missing = missing.display().to_string();
    for (args, says) in [
        (&["check", "--spec", &bad][..], format!("{bad}:3:1: unknown field `colour`")),
        (&["check", "--spec", &missing][..], "apt-get install gone".into()),
        (&["check", "Q9", "--program", "tini"][..], "unknown case \"Q9\"".into()),
        (&["check", "--program", "nope"][..], "unknown program \"nope\"".into()),
        (&["check", "--", "/bin/true"][..], "needs its role".into()),
        (&["check", "--role", "nanny", "--", "/bin/true"][..], "unknown role \"nanny\"".into()),
        (&["check", "--role", "init", "--", "/nonexistent/x"][..], "not found".into()),
        (&["check", "--role", "init", "--forwards", "TREM", "--", "/bin/true"][..], "TREM".into()),
        (&["check"][..], "name the program once".into()),
    ] {
        let out = racelab(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    }
}
