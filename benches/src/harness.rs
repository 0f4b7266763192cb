//! How the benches talk to criterion: quick mode, sample sizing so that one criterion sample is
//! one measured iteration, and the notes file the report generator prints (skips, what exactly
//! was measured).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

/// True when `RACELAB_BENCH_QUICK=1`: minimal samples, warm-up and measurement, no plots. For
/// CI, to check that every bench still runs; the figures are not meant to be read.
pub fn quick() -> bool {
    std::env::var_os("RACELAB_BENCH_QUICK").is_some_and(|v| v == "1")
}

/// True when `RACELAB_STRICT=1`: a skip is a failure (the project-wide convention).
pub fn strict() -> bool {
    std::env::var_os("RACELAB_STRICT").is_some_and(|v| v == "1")
}

/// A criterion instance configured for these benches (command-line arguments applied last, so
/// `cargo bench -- <filter>` and `--test` work).
pub fn criterion() -> Criterion {
    let c = Criterion::default().nresamples(if quick() { 1_000 } else { 20_000 });
    let c = if quick() { c.without_plots() } else { c };
    c.configure_from_args()
}

/// Sizes `group` so that every criterion sample is ONE iteration of about `per_iter` of wall
/// time, `samples` of them (10 in quick mode).
///
/// Why: the benches measure a latency per iteration with `iter_custom` and want its tail (p99)
/// from the samples; criterion sizes samples by wall time (its warm-up measures wall time), and
/// one iteration per sample keeps every sample a single latency instead of an average. When an
/// iteration takes longer than `per_iter`, criterion prints a harmless "Unable to complete"
/// warning and still takes one iteration per sample.
pub fn tune(group: &mut BenchmarkGroup<'_, WallTime>, samples: usize, per_iter: Duration) {
    let n = if quick() { 10 } else { samples.max(10) };
    // Warm-up: about ten iterations, at least 20 ms, at most 300 ms (criterion doubles the
    // iteration count until the time is spent, so it always runs at least one).
    let warm_up = if quick() {
        per_iter
    } else {
        (per_iter * 10).clamp(Duration::from_millis(20), Duration::from_millis(300))
    };
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(n)
        .warm_up_time(warm_up.max(Duration::from_micros(1)))
        .measurement_time((per_iter * n as u32).max(Duration::from_micros(10)));
}

/// Where criterion writes its output, found the way criterion finds it: `CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `<target dir of this executable>/criterion` (cargo puts
/// bench executables in `<target>/<profile>/deps/`).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    target_dir().map(|t| t.join("criterion")).unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// `<target>` from this executable's path `<target>/<profile>/deps/<exe>`.
pub fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

/// `<target>/<profile>` of this executable (where cargo puts the workspace's binaries).
pub fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_path_buf())
}

/// Lines for the report: `<criterion dir>/racelab-notes/<bench>.txt`, one note a line, also
/// printed on stderr. The report generator copies them under "Notes" so a skip or a caveat is
/// never lost between the bench run and the page.
#[derive(Debug)]
pub struct Notes {
    file: Option<File>,
}

impl Notes {
    /// Starts (truncates) the notes of bench target `bench`.
    pub fn start(bench: &str) -> Notes {
        let dir = criterion_dir().join("racelab-notes");
        let file = fs::create_dir_all(&dir).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(dir.join(format!("{bench}.txt")))
        });
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("racelab-benches: cannot write notes in {}: {e}", dir.display());
                None
            }
        };
        let notes = Notes { file };
        if quick() {
            notes.note(&format!(
                "{bench}: QUICK MODE (RACELAB_BENCH_QUICK=1): figures not meaningful"
            ));
        }
        notes
    }

    /// Records one note.
    pub fn note(&self, text: &str) {
        eprintln!("racelab-benches: {text}");
        if let Some(mut f) = self.file.as_ref() {
            let _ = writeln!(f, "{text}");
        }
    }

    /// Records that `what` was skipped and why; panics under `RACELAB_STRICT=1`.
    pub fn skip(&self, what: &str, why: &str) {
        self.note(&format!("SKIPPED {what}: {why}"));
        assert!(!strict(), "RACELAB_STRICT=1: {what} skipped: {why}");
    }
}
