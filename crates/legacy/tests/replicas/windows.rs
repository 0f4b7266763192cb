use nix::sys::signal::Signal;

use crate::common::{DEADLINE, Running, over_orphanable_workload, over_workload};
use crate::piano::WARNING;

const CLEAN: &str = "racelab-legacy hooks: clean=true";

#[test]
fn q4_sigint_during_spawn_is_swallowed_and_the_child_is_force_killed_without_sigterm() {
    let schedule = [("RACELAB_LEGACY_SCHEDULE", "on main.spawned: raise(SIGINT)")];
    let mut run = Running::start_with(
        "global-atomics",
        &over_workload(&["--kill-timeout-ms", "200"], &[]),
        &schedule,
    );
    assert_eq!(run.wait().code(), Some(0));
    let err = run.stderr_text();
    assert!(err.contains(CLEAN), "{err}");
    assert!(err.contains(WARNING), "ForceKilled expected: {err}");
    assert!(
        !run.seen_stdout.iter().any(|l| l == "sig 15"),
        "the child must never have seen SIGTERM (I3): {:?}",
        run.seen_stdout
    );
}

#[test]
fn q4_same_schedule_on_the_polling_fix_forwards_sigterm() {
    let schedule = [("RACELAB_LEGACY_SCHEDULE", "on main.spawned: raise(SIGINT)")];
    let mut run = Running::start_with(
        "polling-fix",
        &over_workload(&["--kill-timeout-ms", "200"], &[]),
        &schedule,
    );
    // Interrupted, not ForceKilled: the SIGTERM of the first iteration stopped the child
    // within the grace (it arrives so early that it kills the workload before the workload
    // can block it and report; a lost SIGTERM would end in SIGKILL and the warning).
    assert_eq!(run.wait().code(), Some(130));
    let err = run.stderr_text();
    assert!(err.contains(CLEAN), "{err}");
    assert!(!err.contains("warning:"), "{err}");
}

#[test]
fn q3_escalation_kills_after_main_classified_duration_and_no_warning_is_printed() {
    // The child exits on the duration's SIGTERM; main reaps it but may not go on before the
    // escalation loaded the (now reaped) PID, and the escalation may not set FORCE_KILLED
    // before main classified. Outside a sandbox the guard refuses the SIGKILL to the reaped
    // PID (Q1's bullet), which is how we see it was sent.
    let env = [
        (
            "RACELAB_LEGACY_SCHEDULE",
            "escalation.pid_loaded < main.reaped; main.classified < escalation.before_force_flag",
        ),
        ("RACELAB_LEGACY_AWAIT", "escalation.kill_sent"),
    ];
    let mut run = Running::start_with(
        "global-atomics",
        &over_workload(&["--duration-ms", "100", "--kill-timeout-ms", "100"], &[]),
        &env,
    );
    assert_eq!(run.wait().code(), Some(0), "Duration maps to 0");
    let err = run.stderr_text();
    assert!(err.contains(CLEAN), "{err}");
    assert!(!err.contains("warning:"), "the report denies the kill (I2): {err}");
    assert!(err.contains("refused SIGKILL to pid"), "SIGKILL was attempted: {err}");
}

#[test]
fn fixed_lock_wrapper_killed_before_its_traps_orphans_the_program_which_keeps_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("qemu.lock");
    // The workload does not arm PR_SET_PDEATHSIG: it is to be orphaned (this test ends it).
    let env = [("RACELAB_LEGACY_SCHEDULE", "on wrapper.launched: raise(SIGTERM)")];
    let mut run = Running::start_with(
        "exec-under-lock-fixed",
        &over_orphanable_workload(&["--lockfile", lock.to_str().expect("utf-8")], &[]),
        &env,
    );
    let ready = run.expect_stdout("ready ");
    let orphan: i32 = ready.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("pid");
    // Pin the orphan before anything else: a pidfd cannot be fooled by PID reuse.
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(orphan).expect("pid > 0"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd of the program");
    let status = run.wait_status();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(Signal::SIGTERM as i32),
        "the wrapper died untrapped"
    );
    let file = std::fs::File::open(&lock).expect("lockfile");
    let free = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    // Clean up the orphan whatever the verdict.
    rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::TERM)
        .expect("stop the orphan");
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let timeout = rustix::time::Timespec { tv_sec: DEADLINE.as_secs() as i64, tv_nsec: 0 };
    assert_eq!(rustix::event::poll(&mut fds, Some(&timeout)).expect("poll"), 1, "orphan exits");
    assert!(free.is_err(), "the orphaned program must still hold the lock (O1)");
}
