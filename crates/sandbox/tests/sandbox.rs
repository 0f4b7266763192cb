//! The sandbox on real processes: namespace, PID forcing, deadlines, cleanup, privileges.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use racelab_sandbox::{
    Capabilities, RunOutcome, Server, Spec, UserNs, command, run, run_command, skip_unless,
};
use serde_json::json;

#[test]
fn a_scenario_runs_as_pid_1_of_a_fresh_namespace() {
    if !sandbox_or_skip() {
        return;
    }
    let out = finished("whoami", json!({}), &Spec::default());
    assert_eq!(out["pid"], 1, "{out}");
    assert_eq!(out["ppid"], 0, "the parent lives outside the namespace: {out}");
    assert_eq!(out["ns_pids"], json!([1]), "a fresh /proc shows only PID 1: {out}");
    assert_eq!(out["uid"], 0, "root inside (mapped when unprivileged): {out}");
}

#[test]
fn forcing_a_pid_with_ns_last_pid_hits_1000_of_1000() {
    if !sandbox_or_skip() {
        return;
    }
    let out =
        finished("recycle", json!({"mechanism": "ns_last_pid", "count": 1000}), &Spec::default());
    assert_eq!(out["hits"], 1000, "{out}");
}

#[test]
fn forcing_a_pid_with_clone3_set_tid_hits_1000_of_1000() {
    if !sandbox_or_skip() {
        return;
    }
    let out = finished("recycle", json!({"mechanism": "set_tid", "count": 1000}), &Spec::default());
    assert_eq!(out["hits"], 1000, "{out}");
}

#[test]
fn a_victim_can_take_a_reaped_leaders_pid_as_its_own_group_id_with_both_mechanisms() {
    if !sandbox_or_skip() {
        return;
    }
    for mech in ["ns_last_pid", "set_tid"] {
        let out = finished("group-recycle", json!({"mechanism": mech}), &Spec::default());
        assert_eq!(out["pgid"], out["victim_pid"], "{mech}: {out}");
        assert_eq!(out["victim_fate"], json!({"fate": "killed", "signal": 9}), "{mech}: {out}");
    }
}

#[test]
fn a_busy_pid_is_a_typed_error_for_both_mechanisms() {
    if !sandbox_or_skip() {
        return;
    }
    let out = finished("busy", json!({}), &Spec::default());
    for key in ["ns_last_pid", "set_tid"] {
        let text = out[key].as_str().unwrap();
        assert!(text.starts_with("PidBusy: pid 2 is busy: held by ("), "{key}: {text}");
    }
}

#[test]
fn sigkill_to_a_forced_pid_inside_never_reaches_a_canary_outside() {
    if !sandbox_or_skip() {
        return;
    }
    // The canary: a child of this test, blocked forever (the workload, its commands at an end).
    let mut canary = racelab_sandbox::Workload::new(RUNNER).command();
    canary.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    let canary = KillOnDrop(canary.spawn().expect("spawn canary"));
    let pid = canary.0.id() as i32;
    let canary_fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    for mech in ["ns_last_pid", "set_tid"] {
        let out = finished("canary", json!({"pid": pid, "mechanism": mech}), &Spec::default());
        assert_eq!(out["victim_pid"], pid, "{out}");
        assert_eq!(out["victim_fate"], json!({"fate": "killed", "signal": 9}), "{out}");
        assert!(!ended_within(&canary_fd, Duration::ZERO), "{mech}: the canary outside died");
    }
}

#[test]
fn an_overrunning_scenario_is_reported_within_its_deadline_and_leaves_nothing() {
    if !sandbox_or_skip() {
        return;
    }
    let deadline = Duration::from_millis(400);
    let spec = Spec { deadline, announce: true, ..Spec::default() };
    let mut child = command(runner(), "hang", &json!({"children": 3}), &spec).spawn().unwrap();
    let lines = stderr_lines(child.stderr.take().unwrap());
    let mut stdout = child.stdout.take().unwrap();
    let guard = KillOnDrop(child);
    let pid1: i32 = wait_line(&lines, "racelab-sandbox: pid1 ", Duration::from_secs(5))
        .split_ascii_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    wait_line(&lines, "hang: ready", Duration::from_secs(5));
    let tree = tree_pidfds(pid1);
    assert_eq!(tree.len(), 4, "PID 1 and its three children");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(report["outcome"], "overran", "{report}");
    let after = Duration::from_nanos(report["after_ns"].as_u64().unwrap());
    assert!(after >= deadline && after < deadline + Duration::from_secs(1), "{after:?}");
    for (pid, fd) in &tree {
        assert!(ended_within(fd, Duration::from_secs(2)), "pid {pid} outlived the run");
    }
    drop(guard);
}

#[test]
fn run_reports_overran_for_a_hanging_scenario() {
    if !sandbox_or_skip() {
        return;
    }
    let spec = Spec::with_deadline(Duration::from_millis(200));
    let start = Instant::now();
    match run(runner(), "hang", &json!({"children": 2}), &spec).unwrap() {
        RunOutcome::Overran { after, leftover: false, .. } => {
            assert!(after >= spec.deadline, "{after:?}")
        }
        other => panic!("expected Overran, got {other:?}"),
    }
    assert!(start.elapsed() < spec.deadline + Duration::from_secs(2));
}

#[test]
fn sigkill_of_the_runner_mid_scenario_leaves_no_process_mount_or_cgroup() {
    if !sandbox_or_skip() {
        return;
    }
    let cgroup = rustix::process::geteuid().is_root() && racelab_cgroup::v2_writable();
    let mounts_before = mount_count();
    let spec =
        Spec { deadline: Duration::from_secs(30), announce: true, cgroup, ..Spec::default() };
    let mut child = command(runner(), "hang", &json!({"children": 3}), &spec).spawn().unwrap();
    let lines = stderr_lines(child.stderr.take().unwrap());
    let mut guard = KillOnDrop(child);
    let line = wait_line(&lines, "racelab-sandbox: pid1 ", Duration::from_secs(5));
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let pid1: i32 = words[2].parse().unwrap();
    let leaf = words[4].to_owned();
    wait_line(&lines, "hang: ready", Duration::from_secs(5));
    let tree = tree_pidfds(pid1);
    assert_eq!(tree.len(), 4, "PID 1 and its three children");
    guard.0.kill().unwrap();
    guard.0.wait().unwrap();
    for (pid, fd) in &tree {
        assert!(ended_within(fd, Duration::from_secs(5)), "pid {pid} outlived its runner");
    }
    assert_eq!(mount_count(), mounts_before, "a mount leaked into the host namespace");
    if cgroup {
        let procs = std::fs::read_to_string(format!("{leaf}/cgroup.procs")).unwrap_or_default();
        assert!(procs.trim().is_empty(), "processes left in {leaf}: {procs}");
        racelab_sandbox::gc_stale_leaves();
        assert!(!std::path::Path::new(&leaf).exists(), "{leaf} was not removed");
    } else {
        skip_unless(false, "a writable cgroup v2 hierarchy", "the cgroup half of this test");
    }
}

#[test]
fn a_run_with_a_cgroup_leaf_removes_it_afterwards() {
    if !sandbox_or_skip() {
        return;
    }
    let ok = rustix::process::geteuid().is_root() && racelab_cgroup::v2_writable();
    if skip_unless(ok, "a writable cgroup v2 hierarchy", "runs in a cgroup leaf") {
        return;
    }
    let spec = Spec { cgroup: true, announce: true, ..Spec::default() };
    let RunOutcome::Finished { stderr, .. } = run(runner(), "whoami", &json!({}), &spec).unwrap()
    else {
        panic!("whoami did not finish")
    };
    let leaf = stderr.lines().find_map(|l| l.split(" cgroup ").nth(1)).unwrap();
    assert!(!std::path::Path::new(leaf).exists(), "{leaf} still exists");
}

/// Runs the runner as nobody (uid 65534) through setpriv: it must build its own user
/// namespace and force PIDs there.
#[test]
fn the_sandbox_works_for_an_unprivileged_user() {
    if !sandbox_or_skip() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        // Already unprivileged: the default spec uses a user namespace.
        let out = finished("whoami", json!({}), &Spec::default());
        assert_eq!(out["user_ns"], true);
        return;
    }
    let setpriv =
        Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if skip_unless(setpriv, "setpriv", "drops root to rerun the runner as nobody") {
        return;
    }
    let as_nobody = |scenario: &str, input: serde_json::Value| {
        let spec = Spec::default();
        let inner = command(runner(), scenario, &input, &spec);
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(inner.get_program());
        cmd.args(inner.get_args());
        cmd.stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        match run_command(cmd, &spec).unwrap() {
            RunOutcome::Finished { output, .. } => output,
            other => panic!("{scenario} as nobody: {other:?}"),
        }
    };
    let who = as_nobody("whoami", json!({}));
    assert_eq!(who["user_ns"], true, "{who}");
    assert_eq!((who["pid"].clone(), who["uid"].clone()), (json!(1), json!(0)), "{who}");
    for mech in ["ns_last_pid", "set_tid"] {
        let out = as_nobody("recycle", json!({"mechanism": mech, "count": 200}));
        assert_eq!(out["hits"], 200, "{mech}: {out}");
    }
}

#[test]
fn a_user_namespace_can_be_forced_for_root_too() {
    if !sandbox_or_skip() {
        return;
    }
    let spec = Spec { user_ns: UserNs::Always, ..Spec::default() };
    let out = match run(runner(), "whoami", &json!({}), &spec) {
        Ok(RunOutcome::Finished { output, .. }) => output,
        other => {
            skip_unless(false, "user namespaces", &format!("{other:?}"));
            return;
        }
    };
    assert_eq!(out["user_ns"], true, "{out}");
    assert_eq!(out["uid"], 0, "{out}");
}

#[test]
fn a_failing_scenario_is_reported_as_failed() {
    if !sandbox_or_skip() {
        return;
    }
    match run(runner(), "no-such-scenario", &json!({}), &Spec::default()).unwrap() {
        RunOutcome::Failed { error, .. } => assert!(error.contains("unknown scenario"), "{error}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn a_missing_runner_is_a_spawn_error() {
    let err = run(std::path::Path::new("/nonexistent/runner"), "x", &json!({}), &Spec::default())
        .unwrap_err();
    assert_eq!(err.kind(), racelab_sandbox::ErrorKind::Spawn, "{err}");
}

#[test]
fn the_capability_probe_renders_a_table() {
    let caps = Capabilities::probe(runner());
    let table = caps.to_string();
    assert!(table.starts_with("| capability | available | detail |"), "{table}");
    assert!(table.contains("| ns_last_pid |"), "{table}");
    if caps.sandbox.available {
        assert!(caps.ns_last_pid.available, "{table}");
        assert!(caps.clone3_set_tid.available, "{table}");
        assert!(caps.pidfd.available, "{table}");
    }
}

#[test]
fn a_server_gives_every_run_a_fresh_namespace_of_its_own() {
    if !sandbox_or_skip() {
        return;
    }
    let mut server = Server::start(Server::command(runner())).unwrap();
    let mut host_pids = Vec::new();
    for _ in 0..3 {
        match server.run("whoami", &json!({}), &Spec::default()).unwrap() {
            RunOutcome::Finished { output, .. } => {
                assert_eq!(output["pid"], 1, "{output}");
                assert_eq!(output["ns_pids"], json!([1]), "a fresh /proc each time: {output}");
                host_pids.push(output["host_pid"].as_i64().unwrap());
            }
            other => panic!("expected Finished, got {other:?}"),
        }
    }
    host_pids.dedup();
    assert_eq!(host_pids.len(), 3, "three runs, three PID 1s: {host_pids:?}");
    // A run that needs a user namespace goes through a forked runner (the server must not
    // unshare one for good); the outcome is the same kind.
    let spec = Spec { user_ns: UserNs::Always, ..Spec::default() };
    match server.run("whoami", &json!({}), &spec).unwrap() {
        RunOutcome::Finished { output, .. } => {
            assert_eq!(output["pid"], 1, "{output}");
            assert_eq!(output["user_ns"], true, "{output}");
        }
        other => panic!("expected Finished, got {other:?}"),
    }
}

#[test]
fn a_server_reports_an_overrun_like_an_exec_d_runner_and_serves_on() {
    if !sandbox_or_skip() {
        return;
    }
    let mut server = Server::start(Server::command(runner())).unwrap();
    let spec = Spec::with_deadline(Duration::from_millis(200));
    match server.run("hang", &json!({"children": 2}), &spec).unwrap() {
        RunOutcome::Overran { after, leftover: false, .. } => {
            assert!(after >= spec.deadline, "{after:?}")
        }
        other => panic!("expected Overran, got {other:?}"),
    }
    let tree = tree_pidfds(server.pid() as i32);
    assert_eq!(tree.len(), 1, "only the server is left after the overrun");
    let out = server.run("whoami", &json!({}), &Spec::default()).unwrap();
    assert!(matches!(out, RunOutcome::Finished { .. }), "{out:?}");
}

#[test]
fn sigkill_of_a_server_mid_run_leaves_no_process_behind() {
    if !sandbox_or_skip() {
        return;
    }
    let mut server = Server::start(Server::command(runner())).unwrap();
    let pid = server.pid() as i32;
    let ready = racelab_sandbox::ReadyFifo::new().unwrap();
    let input = json!({"children": 3, "ready": ready.path()});
    let spec = Spec::with_deadline(Duration::from_secs(30));
    let run = std::thread::spawn(move || {
        let r = server.run("hang", &input, &spec);
        (server, r)
    });
    // The scenario says ready on the FIFO once its children exist (its stderr goes to the
    // server, not to us). Then: the server, PID 1 and its three children, plus a forked runner
    // between the server and PID 1 when the run needs a user namespace (a normal user).
    ready.wait(Duration::from_secs(5)).expect("the run never built its tree");
    let tree = tree_pidfds(pid);
    let size = if rustix::process::geteuid().is_root() { 5 } else { 6 };
    assert_eq!(tree.len(), size, "the server's tree");
    // The server is our unreaped child (the `Server` reaps it only when told it died).
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let (_server, result) = run.join().unwrap();
    assert!(result.is_err(), "a killed server is an error, not an outcome: {result:?}");
    for (p, fd) in &tree {
        assert!(ended_within(fd, Duration::from_secs(2)), "pid {p} outlived its server");
    }
}
