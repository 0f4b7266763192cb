use nix::sys::signal::Signal;

use crate::common::{Running, over_workload, wait_for_threads};

#[test]
fn interrupt_sigkills_a_killable_child_and_returns_its_status() {
    let mut run = Running::start("unbounded-poll", &over_workload(&[], &["--ignore-term"]));
    run.expect_stdout("ready");
    // The forwarder thread exists only after the signals are blocked (before that, the
    // default action would kill the wrapper, as Go's would before signal.Notify).
    wait_for_threads(run.pid(), 2);
    run.signal(Signal::SIGINT);
    assert_eq!(run.wait().code(), Some(128 + 9));
}

#[test]
fn a_child_that_exits_by_itself_is_reaped_and_its_code_passed_through() {
    let mut run = Running::start("unbounded-poll", &over_workload(&[], &["--command", "exit 5"]));
    assert_eq!(run.wait().code(), Some(5));
}
