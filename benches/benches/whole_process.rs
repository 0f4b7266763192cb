//! Whole-process time: spawn + wait of `/bin/true` alone, of `tini -s -- /bin/true` and of
//! `supervise -- /bin/true`, in the same run (std::process::Command, wall time per iteration).
//!
//! `supervise` is the root package's binary, built beforehand:
//! `cargo build --release -p racelab --no-default-features --bin supervise` (without the `lab`
//! feature its hook points compile to nothing, as shipped). It is looked up in
//! `$RACELAB_SUPERVISE`, else next to this bench's target profile directory.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Bencher;
use racelab_benches::harness::{self, Notes, profile_dir, tune};

fn measure(b: &mut Bencher<'_>, program: &str, args: &[&str]) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let mut cmd = Command::new(program);
            cmd.args(args).stdin(Stdio::null());
            let t0 = Instant::now();
            let status = cmd.status().unwrap_or_else(|e| panic!("spawn {program}: {e}"));
            total += t0.elapsed();
            assert!(status.success(), "{program} {args:?} failed: {status}");
        }
        total
    });
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn main() {
    let notes = Notes::start("whole_process");
    notes.note(
        "whole_process: wall time of Command::status() (spawn, run, wait) per iteration, one \
         iteration per sample",
    );
    let supervise = std::env::var_os("RACELAB_SUPERVISE")
        .map(PathBuf::from)
        .or_else(|| profile_dir().map(|d| d.join("supervise")))
        .filter(|p| p.is_file());
    let tini = find_on_path("tini");
    let mut c = harness::criterion();
    let mut g = c.benchmark_group("whole_process");
    tune(&mut g, 150, Duration::from_micros(1200));
    g.bench_function("floor_bin_true", |b| measure(b, "/bin/true", &[]));
    match &tini {
        Some(t) => {
            let t = t.to_string_lossy().into_owned();
            g.bench_function("tini_s_true", |b| measure(b, &t, &["-s", "--", "/bin/true"]));
        }
        None => {
            notes.skip("whole_process/tini_s_true", "tini is not installed (apt-get install tini)")
        }
    }
    match &supervise {
        Some(s) => {
            notes.note(&format!("whole_process/supervise_true: {}", s.display()));
            let s = s.to_string_lossy().into_owned();
            g.bench_function("supervise_true", |b| measure(b, &s, &["--", "/bin/true"]));
        }
        None => notes.skip(
            "whole_process/supervise_true",
            "no supervise binary: run `cargo build --release -p racelab --no-default-features \
             --bin supervise` first (or set RACELAB_SUPERVISE)",
        ),
    }
    g.finish();
    c.final_summary();
}
