use nix::sys::signal::Signal;

use crate::common::{Running, exe};

const WARNING: &str =
    "warning: program did not respond to SIGTERM -- terminated after --kill-timeout";

#[test]
fn normal_exit_code_passes_through() {
    let mut run = Running::start(
        "polling-fix",
        &["--", exe(), "workload", "--pdeathsig", "--command", "exit 7"],
    );
    assert_eq!(run.wait().code(), Some(7));
    assert!(!run.stderr_text().contains("warning:"), "{}", run.stderr_text());
}

#[test]
fn duration_stop_exits_zero_with_no_warning() {
    let mut run = Running::start(
        "polling-fix",
        &[
            "--duration-ms",
            "200",
            "--kill-timeout-ms",
            "200",
            "--",
            exe(),
            "workload",
            "--pdeathsig",
        ],
    );
    run.expect_stdout("ready");
    run.expect_stdout("sig 15");
    assert_eq!(run.wait().code(), Some(0));
    assert!(!run.stderr_text().contains("warning:"), "{}", run.stderr_text());
}

#[test]
fn sigint_terminates_child_with_sigterm_and_exits_130() {
    // Default kill timeout (10 s): the SIGINT escalation stays far away.
    let mut run = Running::start("polling-fix", &["--", exe(), "workload", "--pdeathsig"]);
    run.expect_stdout("ready");
    // The handler needs no PID here: an interrupt at any time after "ready" is forwarded.
    run.signal(Signal::SIGINT);
    run.expect_stdout("sig 15");
    assert_eq!(run.wait().code(), Some(130));
}

#[test]
fn kill_timeout_escalation_force_kills_a_term_ignoring_child_and_warns() {
    // The child ignores SIGTERM and blocks: it cannot exit inside the escalation window.
    let mut run = Running::start(
        "polling-fix",
        &[
            "--duration-ms",
            "200",
            "--kill-timeout-ms",
            "200",
            "--",
            exe(),
            "workload",
            "--pdeathsig",
            "--ignore-term",
        ],
    );
    run.expect_stdout("ready");
    assert_eq!(run.wait().code(), Some(0));
    assert!(run.stderr_text().contains(WARNING), "{}", run.stderr_text());
}

#[test]
fn sigint_with_kill_timeout_force_kills_a_term_ignoring_child() {
    let mut run = Running::start(
        "polling-fix",
        &["--kill-timeout-ms", "200", "--", exe(), "workload", "--pdeathsig", "--ignore-term"],
    );
    run.expect_stdout("ready");
    run.signal(Signal::SIGINT);
    assert_eq!(run.wait().code(), Some(0));
    assert!(run.stderr_text().contains(WARNING), "{}", run.stderr_text());
}
