//! The report of a fixed criterion directory, byte for byte: tests/fixtures/criterion gives
//! tests/fixtures/expected/benchmarks.{md,svg}, the output of the report code before it moved
//! into this crate (issue 15; tests/fixtures/README.md says what the fixture holds).

use std::fs;
use std::path::Path;

use racelab_bench_report::{ReportError, write_report};

/// The fixture, as the expected page names it: relative to this crate's directory.
const CRITERION: &str = "tests/fixtures/criterion";

/// The first line where `got` and `want` differ, to say more than "not equal".
fn first_difference(got: &str, want: &str) -> String {
    let mut lines = got.lines().zip(want.lines()).enumerate();
    match lines.find(|(_, (g, w))| g != w) {
        Some((i, (g, w))) => format!("line {}:\n  got:  {g}\n  want: {w}", i + 1),
        None => format!("{} lines against {}", got.lines().count(), want.lines().count()),
    }
}

fn assert_same_bytes(got: &Path, want: &str) {
    let got_text = fs::read_to_string(got).expect("written");
    let want_text = fs::read_to_string(want).expect("expected file");
    assert!(
        got_text == want_text,
        "{} differs from {want}: {}",
        got.display(),
        first_difference(&got_text, &want_text)
    );
}

#[test]
fn the_fixture_gives_the_same_page_and_chart_as_before_the_move() {
    // cargo runs tests from the package's directory; say so rather than depend on it.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("cd to the crate");
    let tmp = tempfile::tempdir().expect("tempdir");
    // Same file names as when the expected files were made: the page links the chart by name.
    let md = tmp.path().join("docs/benchmarks.md");
    let svg = tmp.path().join("docs/benchmarks.svg");

    write_report(Path::new(CRITERION), &md, &svg).expect("report");

    assert_same_bytes(&md, "tests/fixtures/expected/benchmarks.md");
    assert_same_bytes(&svg, "tests/fixtures/expected/benchmarks.svg");
}

#[test]
fn a_bad_criterion_file_stops_the_report_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let crit = tmp.path().join("criterion");
    let new = crit.join("reap_latency/floor_blocking_waitid/new");
    fs::create_dir_all(&new).expect("mkdir");
    fs::write(new.join("benchmark.json"), r#"{"function_id": "floor_blocking_waitid"}"#)
        .expect("write");
    let md = tmp.path().join("benchmarks.md");

    let err = write_report(&crit, &md, &tmp.path().join("benchmarks.svg")).expect_err("bad");

    assert!(
        matches!(&err, ReportError::Format { path, detail }
            if *path == new.join("benchmark.json") && detail == "no group_id"),
        "{err:?}"
    );
    assert!(!md.exists());
}
