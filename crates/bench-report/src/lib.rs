//! racelab-bench-report: turns criterion's output of racelab's benches into the benchmark page
//! docs/benchmarks.md and the chart docs/benchmarks.svg. `racelab report` calls
//! [`write_report`] and nothing else.
//!
//! What it is for: after `cargo bench -p racelab-benches` (reap latency, kill latency, whole
//! process) and `cargo bench -p races --bench replay`, one page with a table per group (median,
//! p99, ratio to the floor measured in the same run, the C figures of TARGETS.md), the project's
//! targets with a verdict each, the replay throughput and the notes the benches left, and a bar
//! chart of the medians on a log scale.
//!
//! How, one module a step:
//! - `criterion` reads criterion's files: for every benchmark,
//!   `<criterion>/<group>/<bench>[/<value>]/new/benchmark.json` (ids), `estimates.json`
//!   (median) and `sample.json` (p99 over the samples), skipping `base/`, `change/` and the HTML
//!   `report/`; and the lines of `<criterion>/racelab-notes/*.txt`, where the benches record
//!   skips and what they measured;
//! - `groups` knows the benches: the groups in page order and what each measures, which row is
//!   a floor, the "matching floors" and the C figures;
//! - `targets` holds the targets of TARGETS.md and judges them, always against figures of the
//!   same run (the machine drifts by about 20% between runs);
//! - `markdown` and `svg` write the page and the chart; `duration` prints the figures.
//!
//! What it is not for: running benchmarks or analysing them statistically (criterion does;
//! this crate only reads its point estimates and raw samples, so it does not depend on
//! criterion), comparing runs with each other, or reading criterion output of other projects
//! (the groups, floors and targets are racelab's). Its output is a pure function of the
//! criterion directory, the path it is given by and the chart's file name: the same input
//! gives the same bytes.

#![forbid(unsafe_code)]

mod criterion;
mod duration;
mod error;
mod groups;
mod markdown;
mod svg;
mod targets;
#[cfg(test)]
mod testing;

pub use error::ReportError;

use std::fs;
use std::path::Path;

use error::io_err;

/// Reads criterion's output under `criterion_dir` and writes the Markdown page `out_md` and the
/// SVG chart `out_svg` (parent directories are created).
///
/// The page names `criterion_dir` as given and links the chart by its file name, so it expects
/// to sit in the same directory as the chart.
///
/// # Errors
///
/// [`ReportError::Empty`] when no benchmark is found under `criterion_dir`,
/// [`ReportError::Format`] when a criterion file is not the JSON criterion writes,
/// [`ReportError::Io`] when a file cannot be read or written.
pub fn write_report(
    criterion_dir: &Path,
    out_md: &Path,
    out_svg: &Path,
) -> Result<(), ReportError> {
    let mut benches = criterion::load(criterion_dir)?;
    if benches.is_empty() {
        return Err(ReportError::Empty { dir: criterion_dir.to_path_buf() });
    }
    groups::sort_in_page_order(&mut benches);
    let notes = criterion::load_notes(criterion_dir)?;
    let svg_name = out_svg.file_name().map(|n| n.to_string_lossy().into_owned());
    let md = markdown::page(&benches, &notes, criterion_dir, svg_name.as_deref());
    let svg = svg::chart(&benches);
    for (path, text) in [(out_md, md), (out_svg, svg)] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::write(path, text).map_err(io_err(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake;

    #[test]
    fn report_has_one_table_per_group_with_ratios_and_target_verdicts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let crit = tmp.path().join("criterion");
        fake(&crit, "reap_latency", "floor_blocking_waitid", 80_000.0, &[80_000.0, 90_000.0]);
        fake(&crit, "reap_latency", "pidfd_poll_waitid", 100_000.0, &[100_000.0, 200_000.0]);
        fake(&crit, "reap_latency", "reference_run_returns", 110_000.0, &[110_000.0, 300_000.0]);
        fake(&crit, "reap_latency", "sleep_poll_10ms", 5_000_000.0, &[5e6, 9e6]);
        fake(&crit, "kill_latency_1", "floor_kill_pid", 100_000.0, &[100_000.0]);
        fake(&crit, "kill_latency_1", "reference_group", 150_000.0, &[150_000.0]);
        // A stale "base" copy must be ignored.
        fake(&crit.join("reap_latency/sleep_poll_10ms"), "base", "x", 1.0, &[1.0]);
        fs::create_dir_all(crit.join("racelab-notes")).expect("mkdir");
        fs::write(crit.join("racelab-notes/kill.txt"), "SKIPPED cgroup: not root\n").expect("w");
        let md = tmp.path().join("docs/benchmarks.md");
        let svg = tmp.path().join("docs/benchmarks.svg");

        write_report(&crit, &md, &svg).expect("report");

        let md = fs::read_to_string(md).expect("md");
        assert!(md.contains("## reap_latency") && md.contains("## kill_latency_1"));
        assert!(
            md.contains("| **floor_blocking_waitid** | 80.0 µs | 90.0 µs | 2 | 1.00x |"),
            "{md}"
        );
        assert!(md.contains("| `reference_run_returns` | 110 µs | 300 µs | 2 | 1.38x |"), "{md}");
        assert!(md.contains("**1.10x** (limit 1.2x) | PASS |"), "{md}");
        assert!(md.contains("**45x** better (need 50x) | **MISS** |"), "{md}");
        assert!(md.contains("**1.50x** (limit 1.2x) | **MISS** |"), "{md}");
        assert!(md.contains("not measured in this run | n/a |"), "{md}");
        assert!(md.contains("cargo bench -p racelab-benches"));
        assert!(md.contains("- SKIPPED cgroup: not root"));
        // The blocking floor against 10 ms polling: 62x, so 50x is reachable in this run.
        assert!(md.contains("**62x** better (need 50x) | info: within the limit |"), "{md}");
        // No replay group: said plainly, no target verdict.
        assert!(md.contains("No replay figures in this run"), "{md}");
        assert!(md.contains("`Z2 reference (server)` not measured in this run | n/a |"), "{md}");
        assert!(!md.contains("PENDING"), "{md}");
        assert!(!md.contains("| `x` |"), "base dir leaked: {md}");
        let svg = fs::read_to_string(svg).expect("svg");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("reference_run_returns") && svg.contains("1.00 ms"));
    }

    #[test]
    fn an_empty_criterion_directory_is_an_error_that_says_what_to_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = write_report(tmp.path(), &tmp.path().join("a.md"), &tmp.path().join("a.svg"))
            .expect_err("empty");
        assert!(matches!(err, ReportError::Empty { .. }), "{err:?}");
        assert!(err.to_string().contains("cargo bench -p racelab-benches"), "{err}");
    }

    #[test]
    fn a_missing_criterion_directory_is_an_io_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("no-criterion-here");
        let err = write_report(&missing, &tmp.path().join("a.md"), &tmp.path().join("a.svg"))
            .expect_err("missing");
        assert!(matches!(&err, ReportError::Io { path, .. } if *path == missing), "{err:?}");
        assert!(err.to_string().starts_with(&missing.display().to_string()), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "the OS error is the source");
        assert!(!tmp.path().join("a.md").exists(), "nothing written on error");
    }
}
