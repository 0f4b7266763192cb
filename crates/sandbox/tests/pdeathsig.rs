//! The parent-already-dead case: the runner dies before PID 1 arms PR_SET_PDEATHSIG, so no
//! signal will ever come; PID 1's re-check must see it and exit without running the scenario.
//!
//! Its own test binary: it makes the test process a child subreaper, so the orphaned PID 1 is
//! reparented to this process and its exit status can be collected.

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use racelab_sandbox::{EXIT_PARENT_GONE, Fault, Spec, command};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use serde_json::json;

#[test]
fn pid1_exits_at_once_when_the_runner_died_before_pdeathsig_was_armed() {
    if !sandbox_or_skip() {
        return;
    }
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let spec = Spec { announce: true, fault: Fault::RunnerDiesBeforePdeathsig, ..Spec::default() };
    // "hang" would never return: if the re-check failed, PID 1 would block forever.
    let mut child = command(runner(), "hang", &json!({}), &spec).spawn().unwrap();
    let lines = stderr_lines(child.stderr.take().unwrap());
    let mut guard = KillOnDrop(child);
    let line = wait_line(&lines, "racelab-sandbox: pid1 ", Duration::from_secs(5));
    let pid1: i32 = line.split_ascii_whitespace().nth(2).unwrap().parse().unwrap();
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "the runner exits 0 by the fault: {status}");
    // PID 1 is now our child (we are its subreaper), so its pid cannot be reused before we
    // reap it: the pidfd names it.
    let fd =
        rustix::process::pidfd_open(Pid::from_raw(pid1).unwrap(), PidfdFlags::empty()).unwrap();
    assert!(ended_within(&fd, Duration::from_secs(5)), "PID 1 kept running without its runner");
    let st =
        rustix::process::waitid(WaitId::PidFd(fd.as_fd()), WaitIdOptions::EXITED).unwrap().unwrap();
    assert_eq!(st.exit_status(), Some(EXIT_PARENT_GONE));
    assert!(!lines.try_iter().any(|l| l.contains("hang: ready")), "the scenario ran");
}
