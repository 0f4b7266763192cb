//! What the report knows about racelab's benches: the groups in page order and what each
//! measures, which row of a group is its floor, the rows that have a floor of their own (the
//! "matching floor"), and the figures TARGETS.md gives for the same jobs measured in C.
//!
//! A group not listed here (a new bench) is still reported, after the known ones and without a
//! description; a row is a floor by its name alone.

use crate::criterion::Bench;

/// The criterion group of the replay bench (`races/benches/replay.rs`), reported in its own
/// section rather than as a latency table.
pub(crate) const REPLAY_GROUP: &str = "replay";

/// Known groups, in page order, with what they measure.
pub(crate) const GROUPS: &[(&str, &str)] = &[
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
         recommended deployment); both are also compared with `tini -s` (x matching floor). \
         Since #24 the static build uses the `dist` profile (fat LTO, one codegen unit, \
         opt-level s) and `supervise` skips Rust's runtime start-up (`#![no_main]`) and, for \
         `supervise -- CMD`, clap's parser; it was 1.22x of `tini_static_s_true` in the run \
         that reported it. The syscalls each program makes at start-up: the whole_process \
         bench's doc.",
    ),
];

/// Rows compared with another row of their group as well as with the group's floor: (group,
/// bench, the matching floor). Shown in the column "x matching floor".
pub(crate) const MATCHING_FLOORS: &[(&str, &str, &str)] = &[
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
pub(crate) const C_FLOORS: &[(&str, &str, &str)] = &[
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

/// Page order: known groups as listed, then the others by name; in a group, the floor first,
/// then the rows by name.
pub(crate) fn sort_in_page_order(benches: &mut [Bench]) {
    benches.sort_by(|a, b| {
        (group_rank(&a.group), &a.group, !is_floor(a), &a.name).cmp(&(
            group_rank(&b.group),
            &b.group,
            !is_floor(b),
            &b.name,
        ))
    });
}

fn group_rank(group: &str) -> usize {
    GROUPS.iter().position(|(g, _)| *g == group).unwrap_or(GROUPS.len())
}

/// What `group` measures, if it is a known group.
pub(crate) fn description(group: &str) -> Option<&'static str> {
    GROUPS.iter().find(|(g, _)| *g == group).map(|(_, what)| *what)
}

/// A floor: `floor_<job>` in the latency groups, `floor: <job>` in the replay group.
pub(crate) fn is_floor(b: &Bench) -> bool {
    b.name.starts_with("floor")
}

/// The floor of `group`: the first of its floor rows.
pub(crate) fn floor_of<'a>(benches: &'a [Bench], group: &str) -> Option<&'a Bench> {
    benches.iter().find(|b| b.group == group && is_floor(b))
}

/// The row `name` of `group`.
pub(crate) fn find<'a>(benches: &'a [Bench], group: &str, name: &str) -> Option<&'a Bench> {
    benches.iter().find(|b| b.group == group && b.name == name)
}

/// The figure TARGETS.md gives for row `name` of `group`, or "".
pub(crate) fn c_floor(group: &str, name: &str) -> &'static str {
    C_FLOORS.iter().find(|(g, n, _)| *g == group && *n == name).map_or("", |(_, _, v)| v)
}

/// The matching floor of `b`, if it has one and it was measured.
pub(crate) fn matching_floor<'a>(benches: &'a [Bench], b: &Bench) -> Option<&'a Bench> {
    MATCHING_FLOORS
        .iter()
        .find(|(g, n, _)| *g == b.group && *n == b.name)
        .and_then(|(_, _, m)| find(benches, &b.group, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(group: &str, name: &str) -> Bench {
        Bench { group: group.into(), name: name.into(), median: 1.0, p99: 1.0, samples: 1 }
    }

    #[test]
    fn page_order_is_known_groups_first_then_the_floor_then_names() {
        let mut benches = vec![
            bench("spawn_tree", "a"),
            bench("replay", "Z2 reference (server)"),
            bench("replay", "floor: exec runner"),
            bench("whole_process", "floor_bin_true"),
            bench("reap_latency", "sleep_poll_1ms"),
            bench("reap_latency", "floor_blocking_waitid"),
            bench("reap_latency", "pidfd_poll_waitid"),
        ];
        sort_in_page_order(&mut benches);
        let order: Vec<String> =
            benches.iter().map(|b| format!("{}/{}", b.group, b.name)).collect();
        assert_eq!(
            order,
            [
                "reap_latency/floor_blocking_waitid",
                "reap_latency/pidfd_poll_waitid",
                "reap_latency/sleep_poll_1ms",
                "whole_process/floor_bin_true",
                "replay/floor: exec runner",
                "replay/Z2 reference (server)",
                "spawn_tree/a",
            ]
        );
    }
}
