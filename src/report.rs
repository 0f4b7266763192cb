//! `racelab report`: turns criterion's output (from `cargo bench -p racelab-benches` and
//! `cargo bench -p races --bench replay`) into docs/benchmarks.md (one table per group: median,
//! p99, ratio to the floor measured in the same run, the project's targets with pass/fail, the
//! replay throughput) and docs/benchmarks.svg (bars on a log scale).
//!
//! It reads, for every benchmark, `<criterion>/<group>/<bench>[/<value>]/new/benchmark.json`
//! (ids), `estimates.json` (median) and `sample.json` (p99 over the samples; the benches take
//! one iteration per sample, so a sample is one measured latency). It also copies the lines of
//! `<criterion>/racelab-notes/*.txt`, where the benches record skips and what they measured.
//!
//! Only std and serde_json: this module is compiled into the `racelab` binary.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why the report could not be written.
#[derive(Debug)]
pub enum ReportError {
    /// Reading criterion's output or writing a report file failed.
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A criterion file is not the JSON we expect.
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// No benchmark results were found.
    Empty {
        /// The directory searched.
        dir: PathBuf,
    },
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ReportError::Format { path, detail } => write!(f, "{}: {detail}", path.display()),
            ReportError::Empty { dir } => write!(
                f,
                "no criterion results under {} (run `cargo bench -p racelab-benches` first)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_path_buf(), source }
}

/// The commands that produce the data and the page.
const COMMANDS: &str = r#"cargo build --release -p racelab-supervise
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release \
    --target "$(rustc -vV | sed -n 's/^host: //p')" -p racelab-supervise
cargo build --release -p racelab-legacy --bin racelab-legacy-wrapper
cargo bench -p racelab-benches
cargo build --release -p races
cargo bench -p races --bench replay
racelab report"#;

/// The criterion group of the replay bench (`races/benches/replay.rs`), reported in its own
/// section rather than as a latency table.
const REPLAY_GROUP: &str = "replay";

/// The row the "one deterministic replay" target is read from, fixed in advance (never the
/// cheapest of several): a race whose replay runs no design timer (Z2) against the reference,
/// so that the figure is the lab's own cost, through the runner server that `racelab replay`
/// and the catalog tests use (runner start = a clone of the server, not an exec).
const REPLAY_TARGET_ROW: &str = "Z2 reference (server)";

/// The other timer-free rows, shown next to the target as information: a legacy design's own
/// threads, and the exec-per-replay path (`races::replay_once`).
const REPLAY_INFO_ROWS: &[&str] = &["Z2 greedy_reaper (server)", "Z2 reference (exec)"];

/// The replay target: median under this many nanoseconds.
const REPLAY_TARGET_NS: f64 = 5e6;

/// One benchmark's figures, in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
struct Bench {
    group: String,
    name: String,
    median: f64,
    p99: f64,
    samples: usize,
}

/// Known groups, in page order, with what they measure.
const GROUPS: &[(&str, &str)] = &[
    (
        "reap_latency",
        "Reap latency: the child's last instruction (a CLOCK_MONOTONIC store right before \
         `_exit`) to the moment the strategy has the exit status. Floor: a thread blocked in \
         `waitid(P_PID)`.",
    ),
    (
        "kill_latency_1",
        "Kill latency, one blocked process: request to reaped. Floor: `kill(pid)`. \
         `reference_*`: the stop asked for with `Supervisor::stop()` on the supervising thread, \
         compared with `floor_kill_pid`. `reference_group_via_sigterm`: the stop asked for by \
         another thread sending SIGTERM to the process (read from the supervisor's signalfd), \
         compared with its own floor `request_then_kill_pid`, a raw kill behind the same request \
         path (column **x matching floor**).",
    ),
    (
        "kill_latency_10",
        "Kill latency, a tree of 10: request to every process reaped. Floor: `kill(-pgid)`; \
         `reference_cgroup` is also compared with `cgroup_kill` (x matching floor).",
    ),
    (
        "kill_latency_100",
        "Kill latency, a tree of 100. Floor: `kill(-pgid)`; `reference_cgroup` is also compared \
         with `cgroup_kill`.",
    ),
    (
        "kill_latency_1000",
        "Kill latency, a tree of 1000. Floor: `kill(-pgid)`; `reference_cgroup` is also compared \
         with `cgroup_kill`.",
    ),
    (
        "whole_process",
        "Whole-process time of spawn + run + wait, as a caller sees it. Floor: `/bin/true` alone. \
         `supervise_true` is the dynamic build, `supervise_static_true` the static one (the \
         recommended deployment); both are also compared with `tini -s` (x matching floor).",
    ),
];

/// Rows compared with another row of their group as well as with the group's floor: (group,
/// bench, the matching floor). Shown in the column "x matching floor".
const MATCHING_FLOORS: &[(&str, &str, &str)] = &[
    ("kill_latency_1", "reference_group_via_sigterm", "request_then_kill_pid"),
    ("kill_latency_1", "reference_cgroup", "cgroup_kill"),
    ("kill_latency_10", "reference_cgroup", "cgroup_kill"),
    ("kill_latency_100", "reference_cgroup", "cgroup_kill"),
    ("kill_latency_1000", "reference_cgroup", "cgroup_kill"),
    ("whole_process", "supervise_true", "tini_s_true"),
    ("whole_process", "supervise_static_true", "tini_static_s_true"),
    ("whole_process", "tini_static_s_true", "tini_s_true"),
];

/// The figures TARGETS.md gives for the same jobs, measured with a plain C program (medians,
/// microseconds), for orientation only: the verdicts use the floors of the same run.
const C_FLOORS: &[(&str, &str, &str)] = &[
    ("reap_latency", "floor_blocking_waitid", "74-87"),
    ("reap_latency", "fork_child_blocking_waitid", "74-87"),
    ("reap_latency", "pidfd_poll_waitid", "86-92"),
    ("reap_latency", "signalfd_waitpid", "96-105"),
    ("reap_latency", "sigchld_self_pipe", "104-116"),
    ("reap_latency", "sleep_poll_1ms", "~600"),
    ("reap_latency", "sleep_poll_100ms", "~51,000"),
    ("kill_latency_1", "floor_kill_pid", "115-126"),
    ("kill_latency_1", "pidfd_send_signal", "121-137"),
    ("kill_latency_10", "floor_kill_pgid", "430-450"),
    ("kill_latency_100", "floor_kill_pgid", "5,400-5,500"),
    ("kill_latency_1000", "floor_kill_pgid", "61,000-77,000"),
    ("kill_latency_10", "cgroup_kill", "400-470"),
    ("kill_latency_100", "cgroup_kill", "4,700-5,300"),
    ("kill_latency_1000", "cgroup_kill", "51,000-56,000"),
    ("kill_latency_10", "proc_walk", "1,300-1,400"),
    ("kill_latency_100", "proc_walk", "7,500-9,000"),
    ("kill_latency_1000", "proc_walk", "59,000-70,000"),
];

/// A target from TARGETS.md: `bench`'s median compared with `against`'s median of the same run.
/// An informational row (`info`) states a same-run ratio that explains a target without being
/// one: its verdict says whether the limit holds for it, not PASS or MISS.
struct Target {
    group: &'static str,
    bench: &'static str,
    against: &'static str,
    rule: Rule,
    text: &'static str,
    info: bool,
}

enum Rule {
    /// median(bench) <= factor * median(against)
    AtMost(f64),
    /// median(against) >= factor * median(bench)
    FasterBy(f64),
}

const TARGETS: &[Target] = &[
    Target {
        group: "reap_latency",
        bench: "reference_run_returns",
        against: "pidfd_poll_waitid",
        rule: Rule::AtMost(1.2),
        text: "reference reap median within 1.2x of the pidfd floor",
        info: false,
    },
    Target {
        group: "reap_latency",
        bench: "reference_run_returns",
        against: "sleep_poll_10ms",
        rule: Rule::FasterBy(50.0),
        text: "reference reap at least 50x better than 10 ms polling",
        info: false,
    },
    Target {
        group: "reap_latency",
        bench: "floor_blocking_waitid",
        against: "sleep_poll_10ms",
        rule: Rule::FasterBy(50.0),
        text: "(info) the blocking-waitid floor against 10 ms polling: is 50x reachable at all \
               in this run?",
        info: true,
    },
    Target {
        group: "kill_latency_1",
        bench: "reference_group",
        against: "floor_kill_pid",
        rule: Rule::AtMost(1.2),
        text: "reference stop of one child (default containment: group; `Supervisor::stop`) \
               within 1.2x of raw kill (`floor_kill_pid`)",
        info: false,
    },
    Target {
        group: "kill_latency_1",
        bench: "reference_group_via_sigterm",
        against: "request_then_kill_pid",
        rule: Rule::AtMost(1.2),
        text: "(info) the same stop asked for by a SIGTERM from another thread, against the \
               same request path before a raw kill (`request_then_kill_pid`)",
        info: true,
    },
    Target {
        group: "kill_latency_100",
        bench: "reference_cgroup",
        against: "cgroup_kill",
        rule: Rule::AtMost(1.1),
        text: "reference stop of a tree of 100 (cgroup) within 1.1x of raw cgroup.kill",
        info: false,
    },
    Target {
        group: "kill_latency_1000",
        bench: "reference_cgroup",
        against: "cgroup_kill",
        rule: Rule::AtMost(1.1),
        text: "reference stop of a tree of 1000 (cgroup) within 1.1x of raw cgroup.kill",
        info: false,
    },
    // Like for like only: a static binary starts with fewer page faults than a dynamic one,
    // so a static supervise against a dynamic tini would measure the build, not the program.
    Target {
        group: "whole_process",
        bench: "supervise_static_true",
        against: "tini_static_s_true",
        rule: Rule::AtMost(1.1),
        text: "`supervise -- /bin/true` within 1.1x of `tini -s -- /bin/true`, both static \
               (`tini-static`, the recommended static `supervise`)",
        info: false,
    },
    Target {
        group: "whole_process",
        bench: "supervise_true",
        against: "tini_s_true",
        rule: Rule::AtMost(1.1),
        text: "`supervise -- /bin/true` within 1.1x of `tini -s -- /bin/true`, both dynamic",
        info: false,
    },
];

/// Reads criterion's output under `criterion_dir` and writes the Markdown page `out_md` and the
/// SVG chart `out_svg` (parent directories are created).
pub fn write_report(
    criterion_dir: &Path,
    out_md: &Path,
    out_svg: &Path,
) -> Result<(), ReportError> {
    let benches = load(criterion_dir)?;
    if benches.is_empty() {
        return Err(ReportError::Empty { dir: criterion_dir.to_path_buf() });
    }
    let notes = load_notes(criterion_dir)?;
    let svg_name = out_svg.file_name().map(|n| n.to_string_lossy().into_owned());
    let md = markdown(&benches, &notes, criterion_dir, svg_name.as_deref());
    let svg = svg(&benches);
    for (path, text) in [(out_md, md), (out_svg, svg)] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::write(path, text).map_err(io_err(path))?;
    }
    Ok(())
}

/// Every `.../new/benchmark.json` under `dir`, with its figures, in page order.
fn load(dir: &Path) -> Result<Vec<Bench>, ReportError> {
    let mut found = Vec::new();
    find_new_dirs(dir, &mut found)?;
    let mut benches = found.iter().map(|d| load_one(d)).collect::<Result<Vec<_>, _>>()?;
    benches.sort_by(|a, b| {
        (group_rank(&a.group), &a.group, !is_floor(a), &a.name).cmp(&(
            group_rank(&b.group),
            &b.group,
            !is_floor(b),
            &b.name,
        ))
    });
    Ok(benches)
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

fn group_rank(group: &str) -> usize {
    GROUPS.iter().position(|(g, _)| *g == group).unwrap_or(GROUPS.len())
}

/// A floor: `floor_<job>` in the latency groups, `floor: <job>` in the replay group.
fn is_floor(b: &Bench) -> bool {
    b.name.starts_with("floor")
}

fn floor_of<'a>(benches: &'a [Bench], group: &str) -> Option<&'a Bench> {
    benches.iter().find(|b| b.group == group && is_floor(b))
}

fn find<'a>(benches: &'a [Bench], group: &str, name: &str) -> Option<&'a Bench> {
    benches.iter().find(|b| b.group == group && b.name == name)
}

fn load_notes(dir: &Path) -> Result<Vec<String>, ReportError> {
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

/// "123 µs", "4.56 ms": three significant digits.
fn human(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// The verdict of one target: (measured text, pass?) or None when a side was not measured.
fn verdict(t: &Target, benches: &[Bench]) -> Option<(String, bool)> {
    let b = find(benches, t.group, t.bench)?;
    let a = find(benches, t.group, t.against)?;
    Some(match t.rule {
        Rule::AtMost(f) => {
            let ratio = b.median / a.median;
            (
                format!(
                    "{} vs {} = **{ratio:.2}x** (limit {f}x)",
                    human(b.median),
                    human(a.median)
                ),
                ratio <= f,
            )
        }
        Rule::FasterBy(f) => {
            let factor = a.median / b.median;
            (
                format!(
                    "{} vs {} = **{factor:.0}x** better (need {f}x)",
                    human(b.median),
                    human(a.median)
                ),
                factor >= f,
            )
        }
    })
}

fn markdown(benches: &[Bench], notes: &[String], dir: &Path, svg: Option<&str>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    if notes.iter().any(|n| n.contains("QUICK MODE")) {
        let _ = writeln!(
            md,
            "> **Quick mode run (RACELAB_BENCH_QUICK=1): 10 samples, no warm-up to speak of. \
             These figures only show that the benches run; do not read them.**\n"
        );
    }
    let _ = writeln!(
        md,
        "Generated by `racelab report` from criterion's output in `{}`. Produced by:\n",
        dir.display()
    );
    let _ = writeln!(md, "```sh\n{COMMANDS}\n```\n");
    let _ = writeln!(
        md,
        "Every figure is a latency per iteration (criterion `iter_custom`, one iteration per \
         sample): **median** is criterion's estimate, **p99** the nearest-rank 99th percentile of \
         the samples (with few samples it is close to the maximum). **x floor** is the median \
         divided by the median of the group's floor, measured in the same run: the machine \
         drifts by about 20% between runs, so only same-run ratios are compared. **C floor** is \
         the figure TARGETS.md gives for the same job measured with a plain C program (median, \
         µs), for orientation.\n"
    );
    if let Some(svg) = svg {
        let _ = writeln!(md, "![median latencies, log scale]({svg})\n");
    }
    let _ = writeln!(
        md,
        "## Targets\n\n| target | measured (medians, same run) | verdict |\n|---|---|---|"
    );
    for t in TARGETS {
        let (measured, mark) = match (verdict(t, benches), t.info) {
            (Some((m, true)), true) => (m, "info: within the limit"),
            (Some((m, false)), true) => (m, "info: **out of reach**"),
            (Some((m, true)), false) => (m, "PASS"),
            (Some((m, false)), false) => (m, "**MISS**"),
            (None, _) => {
                (format!("`{}` or `{}` not measured in this run", t.bench, t.against), "n/a")
            }
        };
        let _ = writeln!(md, "| {} | {measured} | {mark} |", t.text);
    }
    let (measured, mark) = match replay_row(benches, REPLAY_TARGET_ROW) {
        Some(b) => (
            format!("`{}`: {} (limit {})", b.name, human(b.median), human(REPLAY_TARGET_NS)),
            if b.median < REPLAY_TARGET_NS { "PASS" } else { "**MISS**" },
        ),
        None => (format!("`{REPLAY_TARGET_ROW}` not measured in this run"), "n/a"),
    };
    let _ = writeln!(
        md,
        "| one deterministic replay (Z2, no design timer, reference, runner server): median \
         under 5 ms | {measured} | {mark} |"
    );
    for name in REPLAY_INFO_ROWS {
        if let Some(b) = replay_row(benches, name) {
            let under = if b.median < REPLAY_TARGET_NS { "under" } else { "**over**" };
            let _ = writeln!(
                md,
                "| (info) the same race, `{name}` | {} ({under} {}) | info |",
                human(b.median),
                human(REPLAY_TARGET_NS)
            );
        }
    }
    let _ = writeln!(md);
    let mut groups: Vec<&str> =
        benches.iter().map(|b| b.group.as_str()).filter(|g| *g != REPLAY_GROUP).collect();
    groups.dedup();
    for group in groups {
        let _ = writeln!(md, "## {group}\n");
        if let Some((_, what)) = GROUPS.iter().find(|(g, _)| *g == group) {
            let _ = writeln!(md, "{what}\n");
        }
        let floor = floor_of(benches, group);
        let _ = writeln!(
            md,
            "| strategy | median | p99 | samples | x floor | C floor (µs) | x matching floor |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        for b in benches.iter().filter(|b| b.group == group) {
            let ratio = floor.map_or("-".into(), |f| format!("{:.2}x", b.median / f.median));
            let c = C_FLOORS
                .iter()
                .find(|(g, n, _)| *g == group && *n == b.name)
                .map_or("", |(_, _, v)| v);
            let matching = MATCHING_FLOORS
                .iter()
                .find(|(g, n, _)| *g == group && *n == b.name)
                .and_then(|(_, _, m)| find(benches, group, m))
                .map_or(String::new(), |m| format!("{:.2}x of `{}`", b.median / m.median, m.name));
            let name =
                if is_floor(b) { format!("**{}**", b.name) } else { format!("`{}`", b.name) };
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {ratio} | {c} | {matching} |",
                human(b.median),
                human(b.p99),
                b.samples
            );
        }
        let _ = writeln!(md);
    }
    replay_section(&mut md, benches, dir);
    if !notes.is_empty() {
        let _ = writeln!(md, "## Notes from the run\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
        let _ = writeln!(md);
    }
    md
}

/// A row of the replay group by its bench id.
fn replay_row<'a>(benches: &'a [Bench], name: &str) -> Option<&'a Bench> {
    benches.iter().find(|b| b.group == REPLAY_GROUP && b.name == name)
}

/// "Replay throughput": every row of criterion's replay group, or a plain statement that the
/// run has none.
fn replay_section(md: &mut String, benches: &[Bench], dir: &Path) {
    let _ = writeln!(md, "## Replay throughput\n");
    let rows: Vec<&Bench> = benches.iter().filter(|b| b.group == REPLAY_GROUP).collect();
    if rows.is_empty() {
        let _ = writeln!(
            md,
            "No replay figures in this run: criterion's `{REPLAY_GROUP}` group is not under `{}`. \
             It is written by `cargo bench -p races --bench replay` (after `cargo build --release \
             -p races`), into the same criterion directory when run with the same target \
             directory.\n",
            dir.display()
        );
        return;
    }
    let _ = writeln!(
        md,
        "One deterministic replay end to end (runner start, namespaces, the design process, the \
         workload, the oracle, the verdict back), from `cargo bench -p races --bench replay`. \
         Unlike the groups above, a sample here is the mean of several replays (criterion's \
         `iter`), so **p99** is over sample means and understates the tail. `(server)` rows \
         start the runner as `racelab replay` and the catalog tests do: one exec of a runner \
         server per bench, then a clone of PID 1 into fresh namespaces per replay; `(exec)` rows \
         exec the runner for every replay, like the floor. Target: median under {}, read from \
         `{REPLAY_TARGET_ROW}`.\n",
        human(REPLAY_TARGET_NS),
    );
    let floor = floor_of(benches, REPLAY_GROUP);
    let _ = writeln!(md, "| replay | median | p99 | samples | x floor |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for b in rows {
        let ratio = floor.map_or("-".into(), |f| format!("{:.2}x", b.median / f.median));
        let name = if is_floor(b) { format!("**{}**", b.name) } else { format!("`{}`", b.name) };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {ratio} |",
            human(b.median),
            human(b.p99),
            b.samples
        );
    }
    let _ = writeln!(md);
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart of the medians (p99 as a tick), one block per group, on one log
/// scale so groups compare at a glance.
fn svg(benches: &[Bench]) -> String {
    const W: f64 = 960.0;
    const LABEL: f64 = 330.0;
    const RIGHT: f64 = 90.0;
    const ROW: f64 = 18.0;
    const HEAD: f64 = 24.0;
    let lo = benches.iter().map(|b| b.median.min(b.p99)).fold(f64::INFINITY, f64::min);
    let hi = benches.iter().map(|b| b.median.max(b.p99)).fold(0.0, f64::max);
    let lo_exp = lo.max(1.0).log10().floor() as i32;
    let hi_exp = (hi.max(10.0).log10().ceil() as i32).max(lo_exp + 1);
    let plot_w = W - LABEL - RIGHT;
    let x = |ns: f64| {
        let f = (ns.max(1.0).log10() - lo_exp as f64) / (hi_exp - lo_exp) as f64;
        LABEL + f.clamp(0.0, 1.0) * plot_w
    };
    let mut groups: Vec<&str> = benches.iter().map(|b| b.group.as_str()).collect();
    groups.dedup();
    let height = 40.0 + groups.len() as f64 * HEAD + benches.len() as f64 * ROW + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14" font-weight="bold">racelab benchmarks: median per iteration (bar), p99 (tick); log scale</text>"#
    );
    let mut exp = lo_exp;
    while exp <= hi_exp {
        let gx = x(10f64.powi(exp));
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="28" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            height - 22.0,
            height - 8.0,
            human(10f64.powi(exp))
        );
        exp += 1;
    }
    let mut y = 40.0;
    for group in groups {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
            y + 14.0,
            xml_escape(group)
        );
        y += HEAD;
        for b in benches.iter().filter(|b| b.group == group) {
            let color = if is_floor(b) {
                "#7a7a7a"
            } else if b.name.starts_with("reference") || b.name.starts_with("supervise") {
                "#2b6cb0"
            } else if b.name.starts_with("legacy") {
                "#c05621"
            } else {
                "#9ab5d6"
            };
            let bar = x(b.median) - LABEL;
            let tick = x(b.p99);
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LABEL}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{color}"/><line x1="{tick:.1}" y1="{:.1}" x2="{tick:.1}" y2="{:.1}" stroke="#000"/><text x="{:.1}" y="{:.1}" fill="#333">{}</text>"##,
                LABEL - 6.0,
                y + 12.0,
                xml_escape(&b.name),
                y + 3.0,
                ROW - 6.0,
                y + 1.0,
                y + ROW - 1.0,
                x(b.median.max(b.p99)) + 4.0,
                y + 12.0,
                human(b.median)
            );
            y += ROW;
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path, group: &str, name: &str, median_ns: f64, times: &[f64]) {
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

    /// Like `fake`, with `iters` iterations in every sample (criterion's `iter`).
    fn fake_iters(dir: &Path, group: &str, name: &str, median_ns: f64, times: &[f64], iters: f64) {
        fake(dir, group, name, median_ns, times);
        let new = dir.join(group).join(name).join("new");
        let iters: Vec<f64> = times.iter().map(|_| iters).collect();
        let sample = serde_json::json!({"sampling_mode": "Auto", "iters": iters, "times": times});
        fs::write(new.join("sample.json"), sample.to_string()).expect("write");
    }

    #[test]
    fn the_replay_section_reads_the_replay_group_and_judges_its_fixed_row() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let crit = tmp.path().join("criterion");
        fake(&crit, "reap_latency", "floor_blocking_waitid", 80_000.0, &[80_000.0]);
        // 4 replays per sample: times are sums, the per-replay figure is time / iters.
        fake_iters(&crit, "replay", "floor: exec runner", 900_000.0, &[3.6e6, 4.0e6], 4.0);
        fake_iters(&crit, "replay", "Z2 reference (server)", 1_500_000.0, &[6e6, 8e6], 4.0);
        fake_iters(&crit, "replay", "Z2 greedy_reaper (server)", 1_200_000.0, &[4.8e6], 4.0);
        fake_iters(&crit, "replay", "Z2 reference (exec)", 3_000_000.0, &[1.2e7], 4.0);
        fake_iters(&crit, "replay", "Q1 global_atomics (server)", 900_000.0, &[3.6e6], 4.0);
        let md = tmp.path().join("b.md");
        write_report(&crit, &md, &tmp.path().join("b.svg")).expect("report");
        let md = fs::read_to_string(md).expect("md");
        let section = &md[md.find("## Replay throughput").expect("section")..];
        assert!(
            section.contains("| **floor: exec runner** | 900 µs | 1.00 ms | 2 | 1.00x |"),
            "{md}"
        );
        assert!(section.contains("| `Z2 reference (server)` | 1.50 ms | 2.00 ms | 2 | 1.67x |"));
        assert!(section.contains("`Q1 global_atomics (server)`"), "{md}");
        // The target: its fixed row, not the cheapest one (greedy_reaper is cheaper here) and
        // not Q1 (whose replay runs design timers); the other Z2 rows are shown as information.
        assert!(md.contains("`Z2 reference (server)`: 1.50 ms (limit 5.00 ms) | PASS |"), "{md}");
        assert!(md.contains("| (info) the same race, `Z2 reference (exec)` | 3.00 ms (under"));
        // The replay group has no latency table of its own.
        assert!(!md.contains("## replay\n"), "{md}");
    }

    #[test]
    fn matching_floors_and_informational_rows_name_what_they_compare() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let crit = tmp.path().join("criterion");
        fake(&crit, "kill_latency_1", "floor_kill_pid", 100_000.0, &[100_000.0]);
        fake(&crit, "kill_latency_1", "reference_group", 110_000.0, &[110_000.0]);
        fake(&crit, "kill_latency_1", "request_then_kill_pid", 200_000.0, &[200_000.0]);
        fake(&crit, "kill_latency_1", "reference_group_via_sigterm", 210_000.0, &[210_000.0]);
        fake(&crit, "whole_process", "floor_bin_true", 1_000_000.0, &[1e6]);
        fake(&crit, "whole_process", "tini_s_true", 2_000_000.0, &[2e6]);
        fake(&crit, "whole_process", "tini_static_s_true", 1_800_000.0, &[1.8e6]);
        fake(&crit, "whole_process", "supervise_static_true", 2_100_000.0, &[2.1e6]);
        fake(&crit, "whole_process", "supervise_true", 2_600_000.0, &[2.6e6]);
        let md = tmp.path().join("b.md");
        write_report(&crit, &md, &tmp.path().join("b.svg")).expect("report");
        let md = fs::read_to_string(md).expect("md");
        let has = |text: &str| assert!(md.contains(text), "missing {text:?} in\n{md}");
        has("within 1.2x of raw kill (`floor_kill_pid`) | 110 µs vs 100 µs = **1.10x** \
             (limit 1.2x) | PASS |");
        has("(`request_then_kill_pid`) | 210 µs vs 200 µs = **1.05x** (limit 1.2x) | \
             info: within the limit |");
        has("| `reference_group_via_sigterm` | 210 µs | 210 µs | 1 | 2.10x |  | \
             1.05x of `request_then_kill_pid` |");
        // Like for like: static against tini-static, dynamic against tini.
        has("the recommended static `supervise`) | 2.10 ms vs 1.80 ms = **1.17x** (limit 1.1x) \
             | **MISS** |");
        has("both dynamic | 2.60 ms vs 2.00 ms = **1.30x** (limit 1.1x) | **MISS** |");
        assert!(
            md.contains(
                "| `supervise_true` | 2.60 ms | 2.60 ms | 1 | 2.60x |  | 1.30x of `tini_s_true` |"
            ),
            "{md}"
        );
    }

    #[test]
    fn p99_is_the_nearest_rank_percentile() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[5.0, 1.0], 0.99), 5.0);
        assert_eq!(percentile(&[3.0], 0.5), 3.0);
    }

    #[test]
    fn an_empty_criterion_directory_is_an_error_that_says_what_to_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = write_report(tmp.path(), &tmp.path().join("a.md"), &tmp.path().join("a.svg"))
            .expect_err("empty");
        assert!(err.to_string().contains("cargo bench -p racelab-benches"), "{err}");
    }

    #[test]
    fn durations_print_with_three_significant_digits() {
        assert_eq!(human(123_456.0), "123 µs");
        assert_eq!(human(4_560_000.0), "4.56 ms");
        assert_eq!(human(51_200_000.0), "51.2 ms");
        assert_eq!(human(950.0), "950 ns");
    }
}
