use crate::common::{Running, over_workload, wait_for_wchan};

#[test]
fn reap_once_reaps_a_single_orphan() {
    let mut run =
        Running::start("reap-once", &over_workload(&[], &["--command", "fork-orphans 1"]));
    let orphan = run.expect_stdout("orphan ");
    let pid: i32 = orphan["orphan ".len()..].parse().expect("orphan pid");
    run.expect_stdout("orphans-done");
    run.expect_stderr(&format!("reap-once: reaped {pid} "));
    // Reaped: the orphan's /proc entry is gone (or the number now belongs to someone whose
    // parent is not the reaper).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!stat.contains(" Z "), "orphan {pid} is still a zombie: {stat}");
    run.send("exit 0"); // let the main child exit
    assert_eq!(run.wait().code(), Some(0));
}

#[test]
fn greedy_reaper_waiter_gets_its_status_when_it_waits_before_the_exit() {
    let mut run = Running::start("greedy-reaper", &over_workload(&[], &[]));
    run.expect_stdout("ready");
    // No race: the main path is already blocked in waitpid(pid) when the child exits, so the
    // kernel hands it the status before the reaper thread is even woken.
    wait_for_wchan(run.pid(), "do_wait");
    run.send("exit 7");
    assert_eq!(run.wait().code(), Some(7));
    assert!(run.stderr_text().contains("greedy-reaper: exit code 7"), "{}", run.stderr_text());
}
