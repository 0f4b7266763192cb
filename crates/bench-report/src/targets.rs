//! The project's targets (TARGETS.md) and their verdicts: the rows of the page's "Targets"
//! table.
//!
//! A latency target compares two medians of the same run (a bench and the row it must keep up
//! with), never a figure with a constant: the machine drifts by about 20% between runs. The
//! replay target is the exception, an absolute bound on one row fixed in advance. A target
//! whose rows were not measured (a skipped bench) reads "n/a", never PASS.

use crate::criterion::Bench;
use crate::duration::human;
use crate::groups::{REPLAY_GROUP, find};

/// The row the "one deterministic replay" target is read from, fixed in advance (never the
/// cheapest of several): a race whose replay runs no design timer (Z2) against the reference,
/// so that the figure is the lab's own cost, through the runner server that `racelab replay`
/// and the catalog tests use (runner start = a clone of the server, not an exec).
pub(crate) const REPLAY_TARGET_ROW: &str = "Z2 reference (server)";

/// The other timer-free rows, shown next to the target as information: a legacy design's own
/// threads, and the exec-per-replay path (`races::replay_once`).
const REPLAY_INFO_ROWS: &[&str] = &["Z2 greedy_reaper (server)", "Z2 reference (exec)"];

/// The replay target: median under this many nanoseconds.
pub(crate) const REPLAY_TARGET_NS: f64 = 5e6;

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
        rule: Rule::AtMost(1.05),
        text: "`supervise -- /bin/true` within 1.05x of `tini -s -- /bin/true`, both static \
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

/// One row of the targets table, as Markdown cell text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TargetRow {
    /// What is asked.
    pub(crate) text: String,
    /// What was measured, or which row is missing.
    pub(crate) measured: String,
    /// PASS, **MISS**, n/a, or an informational mark.
    pub(crate) verdict: &'static str,
}

/// Every row of the targets table, in page order: the latency targets (with their
/// informational rows), the replay target, then the replay rows shown beside it.
pub(crate) fn rows(benches: &[Bench]) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    for t in TARGETS {
        let (measured, verdict) = match (verdict(t, benches), t.info) {
            (Some((m, true)), true) => (m, "info: within the limit"),
            (Some((m, false)), true) => (m, "info: **out of reach**"),
            (Some((m, true)), false) => (m, "PASS"),
            (Some((m, false)), false) => (m, "**MISS**"),
            (None, _) => {
                (format!("`{}` or `{}` not measured in this run", t.bench, t.against), "n/a")
            }
        };
        rows.push(TargetRow { text: t.text.to_string(), measured, verdict });
    }
    let (measured, verdict) = match find(benches, REPLAY_GROUP, REPLAY_TARGET_ROW) {
        Some(b) => (
            format!("`{}`: {} (limit {})", b.name, human(b.median), human(REPLAY_TARGET_NS)),
            if b.median < REPLAY_TARGET_NS { "PASS" } else { "**MISS**" },
        ),
        None => (format!("`{REPLAY_TARGET_ROW}` not measured in this run"), "n/a"),
    };
    rows.push(TargetRow {
        text: "one deterministic replay (Z2, no design timer, reference, runner server): median \
               under 5 ms"
            .to_string(),
        measured,
        verdict,
    });
    for name in REPLAY_INFO_ROWS {
        if let Some(b) = find(benches, REPLAY_GROUP, name) {
            let under = if b.median < REPLAY_TARGET_NS { "under" } else { "**over**" };
            rows.push(TargetRow {
                text: format!("(info) the same race, `{name}`"),
                measured: format!("{} ({under} {})", human(b.median), human(REPLAY_TARGET_NS)),
                verdict: "info",
            });
        }
    }
    rows
}

/// The verdict of one target: (measured text, pass?) or None when a side was not measured.
fn verdict(t: &Target, benches: &[Bench]) -> Option<(String, bool)> {
    let b = find(benches, t.group, t.bench)?;
    let a = find(benches, t.group, t.against)?;
    let (measured, pass) = match t.rule {
        Rule::AtMost(f) => {
            let ratio = b.median / a.median;
            (format!("**{ratio:.2}x** (limit {f}x)"), ratio <= f)
        }
        Rule::FasterBy(f) => {
            let factor = a.median / b.median;
            (format!("**{factor:.0}x** better (need {f}x)"), factor >= f)
        }
    };
    Some((format!("{} vs {} = {measured}", human(b.median), human(a.median)), pass))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(group: &str, name: &str, median: f64) -> Bench {
        Bench { group: group.into(), name: name.into(), median, p99: median, samples: 1 }
    }

    fn row<'a>(rows: &'a [TargetRow], text_start: &str) -> &'a TargetRow {
        rows.iter().find(|r| r.text.starts_with(text_start)).expect(text_start)
    }

    #[test]
    fn a_target_at_its_limit_passes_and_just_over_it_misses() {
        let mut benches = vec![
            bench("kill_latency_100", "cgroup_kill", 1000.0),
            bench("kill_latency_100", "reference_cgroup", 1100.0),
            bench("kill_latency_1000", "cgroup_kill", 1000.0),
            bench("kill_latency_1000", "reference_cgroup", 1101.0),
        ];
        let table = rows(&benches);
        assert_eq!(row(&table, "reference stop of a tree of 100 ").verdict, "PASS");
        assert_eq!(row(&table, "reference stop of a tree of 1000 ").verdict, "**MISS**");
        benches.truncate(1);
        let table = rows(&benches);
        let missing = row(&table, "reference stop of a tree of 100 ");
        assert_eq!(missing.verdict, "n/a");
        assert_eq!(
            missing.measured,
            "`reference_cgroup` or `cgroup_kill` not measured in this run"
        );
    }

    #[test]
    fn the_replay_target_is_an_absolute_bound_on_its_fixed_row() {
        let table = rows(&[
            bench(REPLAY_GROUP, "Z2 greedy_reaper (server)", 1e6),
            bench(REPLAY_GROUP, REPLAY_TARGET_ROW, 5e6),
        ]);
        let target = row(&table, "one deterministic replay");
        assert_eq!(target.measured, "`Z2 reference (server)`: 5.00 ms (limit 5.00 ms)");
        assert_eq!(target.verdict, "**MISS**", "under 5 ms, not at it");
        let info = row(&table, "(info) the same race, `Z2 greedy_reaper (server)`");
        assert_eq!((info.measured.as_str(), info.verdict), ("1.00 ms (under 5.00 ms)", "info"));
        assert!(
            !table.iter().any(|r| r.text.contains("(exec)")),
            "unmeasured info rows are left out"
        );
    }
}
