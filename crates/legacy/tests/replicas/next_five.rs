use nix::sys::signal::Signal;

use crate::common::{Running, over_orphanable_workload, over_workload, wait_for_wchan};

#[test]
fn preexec_pdeathsig_polls_its_sensor_and_returns_its_exit_code() {
    let mut run = Running::start(
        "preexec-pdeathsig",
        &over_workload(&["--poll-interval-ms", "5"], &["--command", "exit 3"]),
    );
    assert_eq!(run.wait().code(), Some(3));
    assert!(run.stderr_text().contains("has exited with code 3"), "{}", run.stderr_text());
}

#[test]
fn preexec_pdeathsig_sends_sigterm_to_its_sensor_when_it_dies_after_the_prctl() {
    // Outside P1's window the pre-exec prctl works: the container dies, the sensor gets SIGTERM.
    // The workload does not arm its own PR_SET_PDEATHSIG: the design's is what is tested.
    let mut run = Running::start("preexec-pdeathsig", &over_orphanable_workload(&[], &[]));
    run.expect_stdout("ready");
    run.signal(Signal::SIGKILL);
    run.expect_stdout("sig 15");
}

#[test]
fn spawner_thread_stops_the_child_after_its_timeout_when_nothing_killed_it() {
    // The workload here does not arm PR_SET_PDEATHSIG: the starter thread's exit is harmless,
    // and the timer's SIGTERM ends it (with 128 + 15, which the design passes on).
    let mut run =
        Running::start("spawner-thread", &over_orphanable_workload(&["--timeout-ms", "50"], &[]));
    run.expect_stdout("sig 15");
    assert_eq!(run.wait().code(), Some(128 + 15));
    assert!(run.stderr_text().contains("(timed out: true)"), "{}", run.stderr_text());
}

#[test]
fn group_kill_after_reap_kills_the_group_by_the_reaped_childs_pid() {
    // Outside a sandbox the guard refuses the kill: the group's leader is no longer a live
    // child of the wrapper. The refusal shows that the SIGKILL came after the reap (G1).
    let mut run =
        Running::start("group-kill-after-reap", &over_workload(&[], &["--command", "exit 5"]));
    assert_eq!(run.wait().code(), Some(5));
    let err = run.stderr_text();
    assert!(err.contains("racelab-legacy: refused SIGKILL to pid -"), "{err}");
}

#[test]
fn reaping_handler_passes_on_the_status_of_a_child_whose_pid_it_stored() {
    let mut run = Running::start("reaping-handler", &over_workload(&[], &[]));
    run.expect_stdout("ready");
    // The pid is stored long before: the main path is already polling the pipe.
    wait_for_wchan(run.pid(), "poll_schedule_timeout");
    run.send("exit 4");
    assert_eq!(run.wait().code(), Some(4));
    assert!(run.stderr_text().contains("reaping-handler: exit code 4"), "{}", run.stderr_text());
}

#[test]
fn unbounded_drain_returns_the_status_of_a_child_that_ends_before_the_timeout() {
    let mut run = Running::start(
        "unbounded-drain",
        &over_workload(&["--timeout-ms", "10000"], &["--command", "exit 6"]),
    );
    assert_eq!(run.wait().code(), Some(6));
    assert!(run.stderr_text().contains("(timed out: false"), "{}", run.stderr_text());
}

#[test]
fn unbounded_drain_sigkills_the_child_at_the_timeout_and_returns_when_nothing_else_holds_the_pipe()
{
    let mut run = Running::start(
        "unbounded-drain",
        &over_workload(&["--timeout-ms", "20"], &["--ignore-term"]),
    );
    run.expect_stdout("ready");
    assert_eq!(run.wait().code(), Some(128 + 9));
    assert!(run.stderr_text().contains("(timed out: true"), "{}", run.stderr_text());
}
