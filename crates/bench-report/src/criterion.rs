//! Reading criterion's output directory: one [`Bench`] per benchmark of the last run, and the
//! notes the benches left next to it.
//!
//! criterion writes, for every benchmark, `<group>/<bench>[/<value>]/new/` (directory names
//! made filename-safe) with `benchmark.json` (the ids), `estimates.json` (point estimates and
//! confidence intervals) and `sample.json` (the raw samples: `iters[i]` iterations took
//! `times[i]` nanoseconds). `base/` (a saved baseline), `change/` (the comparison with it) and
//! `report/` (HTML) are not this run's figures and are skipped. The benches add
//! `racelab-notes/<bench>.txt`, one note a line (`racelab_benches::harness::Notes`).
//!
//! Only the fields read here are relied upon, so that a new criterion version that adds fields
//! changes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ReportError, io_err};

/// One benchmark's figures, in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bench {
    /// criterion's group id, e.g. `reap_latency`.
    pub(crate) group: String,
    /// The function id, with `/<value>` for a parameterised benchmark.
    pub(crate) name: String,
    /// criterion's median estimate of the time per iteration.
    pub(crate) median: f64,
    /// The nearest-rank 99th percentile of the per-iteration time of the samples.
    pub(crate) p99: f64,
    /// How many samples.
    pub(crate) samples: usize,
}

/// Every `.../new/benchmark.json` under `dir`, with its figures, in no particular order.
pub(crate) fn load(dir: &Path) -> Result<Vec<Bench>, ReportError> {
    let mut found = Vec::new();
    find_new_dirs(dir, &mut found)?;
    found.iter().map(|d| load_one(d)).collect()
}

fn find_new_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    let entries = fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "new" {
            if path.join("benchmark.json").is_file() {
                out.push(path);
            }
        } else if !matches!(name.as_str(), "base" | "change" | "report" | "racelab-notes") {
            find_new_dirs(&path, out)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text)
        .map_err(|e| ReportError::Format { path: path.to_path_buf(), detail: e.to_string() })
}

fn load_one(new_dir: &Path) -> Result<Bench, ReportError> {
    let bad = |file: &str, detail: &str| ReportError::Format {
        path: new_dir.join(file),
        detail: detail.to_string(),
    };
    let id = read_json(&new_dir.join("benchmark.json"))?;
    let group = id["group_id"].as_str().ok_or_else(|| bad("benchmark.json", "no group_id"))?;
    let mut name = id["function_id"].as_str().unwrap_or("").to_string();
    if let Some(v) = id["value_str"].as_str() {
        name = if name.is_empty() { v.to_string() } else { format!("{name}/{v}") };
    }
    let est = read_json(&new_dir.join("estimates.json"))?;
    let median = est["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| bad("estimates.json", "no median.point_estimate"))?;
    let sample = read_json(&new_dir.join("sample.json"))?;
    // The latency benches take one iteration per sample (`iter_custom`), so a sample is one
    // measured latency; the replay bench uses `iter`, where a sample is a mean over `iters`.
    let per_iter = per_iteration(&sample).ok_or_else(|| bad("sample.json", "no iters/times"))?;
    Ok(Bench {
        group: group.to_string(),
        name,
        median,
        p99: percentile(&per_iter, 0.99),
        samples: per_iter.len(),
    })
}

/// Each sample's time per iteration (`times[i] / iters[i]`).
fn per_iteration(sample: &Value) -> Option<Vec<f64>> {
    let iters = sample["iters"].as_array()?;
    let times = sample["times"].as_array()?;
    if iters.len() != times.len() || iters.is_empty() {
        return None;
    }
    iters.iter().zip(times).map(|(i, t)| Some(t.as_f64()? / i.as_f64()?.max(1.0))).collect()
}

/// Nearest-rank percentile (`q` in 0..=1) of `values` (not empty).
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The non-blank lines of `<dir>/racelab-notes/*.txt`, files in name order; none when the
/// directory does not exist (benches that never noted anything).
pub(crate) fn load_notes(dir: &Path) -> Result<Vec<String>, ReportError> {
    let notes_dir = dir.join("racelab-notes");
    if !notes_dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = fs::read_dir(&notes_dir)
        .map_err(io_err(&notes_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).map_err(io_err(&f))?;
        lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fake, fake_iters};

    #[test]
    fn p99_is_the_nearest_rank_percentile() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[5.0, 1.0], 0.99), 5.0);
        assert_eq!(percentile(&[3.0], 0.5), 3.0);
    }

    #[test]
    fn a_sample_of_several_iterations_counts_as_its_mean() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_iters(tmp.path(), "replay", "Z2 reference (server)", 1.5e6, &[6e6, 8e6], 4.0);
        let benches = load(tmp.path()).expect("load");
        assert_eq!(
            benches,
            [Bench {
                group: "replay".into(),
                name: "Z2 reference (server)".into(),
                median: 1.5e6,
                p99: 2e6,
                samples: 2,
            }]
        );
    }

    #[test]
    fn a_parameterised_benchmark_is_named_function_slash_value() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let new = tmp.path().join("spawn_tree/fork/10/new");
        fake(tmp.path(), "spawn_tree", "fork/10", 2e5, &[2e5]);
        let id = serde_json::json!({"group_id": "spawn_tree", "function_id": "fork",
                                    "value_str": "10"});
        fs::write(new.join("benchmark.json"), id.to_string()).expect("write");
        let benches = load(tmp.path()).expect("load");
        assert_eq!(benches.len(), 1);
        assert_eq!(benches[0].name, "fork/10");
    }

    #[test]
    fn a_file_without_the_expected_field_is_a_format_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake(tmp.path(), "reap_latency", "floor_blocking_waitid", 8e4, &[8e4]);
        let est = tmp.path().join("reap_latency/floor_blocking_waitid/new/estimates.json");
        fs::write(&est, r#"{"mean": {"point_estimate": 1.0}}"#).expect("write");
        let err = load(tmp.path()).expect_err("no median");
        assert!(matches!(&err, ReportError::Format { path, .. } if *path == est), "{err:?}");
        assert!(err.to_string().ends_with("no median.point_estimate"), "{err}");
        fs::write(&est, "{not json").expect("write");
        let err = load(tmp.path()).expect_err("not json");
        assert!(matches!(&err, ReportError::Format { path, .. } if *path == est), "{err:?}");
    }

    #[test]
    fn notes_are_the_non_blank_lines_of_the_txt_files_in_name_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_notes(tmp.path()).expect("no notes dir"), Vec::<String>::new());
        let notes = tmp.path().join("racelab-notes");
        fs::create_dir_all(&notes).expect("mkdir");
        fs::write(notes.join("whole_process.txt"), "w1\n\n  \nw2\n").expect("write");
        fs::write(notes.join("kill_latency.txt"), "k1\n").expect("write");
        fs::write(notes.join("kill_latency.txt~"), "editor backup\n").expect("write");
        assert_eq!(load_notes(tmp.path()).expect("notes"), ["k1", "w1", "w2"]);
    }
}
