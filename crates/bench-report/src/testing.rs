//! Test support shared by the unit tests: a fake criterion output directory, one benchmark at
//! a time, in criterion's on-disk shape.

use std::fs;
use std::path::Path;

/// Writes `<dir>/<group>/<name>/new/{benchmark,estimates,sample}.json` for a benchmark with
/// this median and these per-sample times (one iteration per sample, criterion's Flat mode).
pub(crate) fn fake(dir: &Path, group: &str, name: &str, median_ns: f64, times: &[f64]) {
    let new = dir.join(group).join(name).join("new");
    fs::create_dir_all(&new).expect("mkdir");
    let id = serde_json::json!({"group_id": group, "function_id": name, "value_str": null});
    let est = serde_json::json!({"median": {"point_estimate": median_ns}});
    let iters: Vec<f64> = times.iter().map(|_| 1.0).collect();
    let sample = serde_json::json!({"sampling_mode": "Flat", "iters": iters, "times": times});
    for (f, v) in [("benchmark.json", id), ("estimates.json", est), ("sample.json", sample)] {
        fs::write(new.join(f), v.to_string()).expect("write");
    }
}

/// Like [`fake`], with `iters` iterations in every sample (criterion's `iter`).
pub(crate) fn fake_iters(
    dir: &Path,
    group: &str,
    name: &str,
    median_ns: f64,
    times: &[f64],
    iters: f64,
) {
    fake(dir, group, name, median_ns, times);
    let new = dir.join(group).join(name).join("new");
    let iters: Vec<f64> = times.iter().map(|_| iters).collect();
    let sample = serde_json::json!({"sampling_mode": "Auto", "iters": iters, "times": times});
    fs::write(new.join("sample.json"), sample.to_string()).expect("write");
}
