use std::fs::File;

use nix::sys::signal::Signal;

use crate::common::{Running, over_workload, wait_for_wchan};

fn lock_is_free(path: &std::path::Path) -> bool {
    let file = File::open(path).expect("open lockfile");
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

#[test]
fn the_program_holds_the_lock_and_a_second_run_says_already_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("qemu.lock");
    let lock_arg = lock.to_str().expect("utf-8 path");
    let mut first = Running::start(
        "exec-under-lock",
        &over_workload(&["--lockfile", lock_arg, "--info", "first"], &[]),
    );
    first.expect_stdout("ready");
    // exec: the program is the wrapper process itself, and it holds the lock.
    let info = std::fs::read_to_string(&lock).expect("read lockfile");
    assert!(info.starts_with(&format!("pid={} ", first.pid())), "{info}");
    assert!(!lock_is_free(&lock));

    let mut second = Running::start("exec-under-lock", &["--lockfile", lock_arg, "--", "true"]);
    assert_eq!(second.wait().code(), Some(1));
    assert!(second.stderr_text().contains("already running"), "{}", second.stderr_text());

    first.send("exit 0");
    assert_eq!(first.wait().code(), Some(0));
    assert!(lock_is_free(&lock));
}

#[test]
fn a_lock_held_for_a_dead_holder_is_removed_and_taken_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("qemu.lock");
    // The lock is held (by this test, on the old inode) but the file names a holder that
    // cannot exist (beyond pid_max): `kill -0` fails, the wrapper removes the file and retries.
    std::fs::write(&lock, "pid=999999999 target=\"old\"\n").expect("write lockfile");
    let held = File::open(&lock).expect("open lockfile");
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .expect("hold the old lock");
    let mut run = Running::start(
        "exec-under-lock",
        &over_workload(&["--lockfile", lock.to_str().expect("utf-8")], &["--command", "exit 3"]),
    );
    assert_eq!(run.wait().code(), Some(3));
    let info = std::fs::read_to_string(&lock).expect("new lockfile");
    assert!(info.starts_with(&format!("pid={} ", run.pid())), "{info}");
}

#[test]
fn fixed_variant_releases_the_lock_when_sigterm_arrives_after_its_traps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("qemu.lock");
    let mut run = Running::start(
        "exec-under-lock-fixed",
        &over_workload(&["--lockfile", lock.to_str().expect("utf-8")], &[]),
    );
    run.expect_stdout("ready");
    // Traps installed: the wrapper sits in sigwait (bash's interrupted `wait`).
    wait_for_wchan(run.pid(), "do_sigtimedwait");
    assert!(!lock_is_free(&lock));
    run.signal(Signal::SIGTERM);
    run.expect_stdout("sig 15");
    // set -e: the EXIT trap's `kill` of the already reaped PID fails, so the script exits 1.
    assert_eq!(run.wait().code(), Some(1));
    assert!(lock_is_free(&lock));
}

#[test]
fn fixed_variant_exits_1_after_a_normal_run_because_the_exit_trap_kills_a_reaped_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("qemu.lock");
    let mut run = Running::start(
        "exec-under-lock-fixed",
        &over_workload(&["--lockfile", lock.to_str().expect("utf-8")], &["--command", "exit 4"]),
    );
    assert_eq!(run.wait().code(), Some(1));
    assert!(lock_is_free(&lock));
}
