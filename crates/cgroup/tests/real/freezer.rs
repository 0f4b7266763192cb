use std::time::{Duration, Instant};

use racelab_cgroup::{Freezer, FreezerState};
use rustix::process::{Signal, pidfd_send_signal};

use crate::common::{ChildGuard, exits_within, skip_unless};

fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[test]
fn a_frozen_child_survives_sigkill_until_thawed() {
    // Declared before the freezer so that the freezer drops (thaws) first, then the child is
    // killed and reaped: reaping a frozen child would hang.
    let mut child = ChildGuard::sleeper();
    let usable = racelab_cgroup::freezer_v1_usable();
    if skip_unless(usable, "cgroup v1 freezer", "no writable v1 freezer hierarchy") {
        return;
    }
    let freezer = Freezer::create("unkillable").unwrap();
    freezer.add(child.pid()).unwrap();
    assert_eq!(freezer.state().unwrap(), FreezerState::Thawed);
    freezer.freeze(Instant::now() + Duration::from_secs(5)).unwrap();
    assert_eq!(freezer.state().unwrap(), FreezerState::Frozen);

    pidfd_send_signal(&child.fd, Signal::KILL).unwrap();
    assert!(
        !exits_within(&child.fd, Duration::from_millis(100)),
        "SIGKILL got through the freezer"
    );
    assert_eq!(proc_state(child.pid()), 'D');

    freezer.thaw().unwrap();
    let status = child.reap(Duration::from_secs(5));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    freezer.remove().unwrap();
    assert!(!freezer.path().exists());
}

#[test]
fn dropping_a_freezer_thaws_and_releases_a_live_task() {
    let mut child = ChildGuard::sleeper();
    let usable = racelab_cgroup::freezer_v1_usable();
    if skip_unless(usable, "cgroup v1 freezer", "no writable v1 freezer hierarchy") {
        return;
    }
    let freezer = Freezer::create("drop").unwrap();
    freezer.add(child.pid()).unwrap();
    freezer.freeze(Instant::now() + Duration::from_secs(5)).unwrap();
    let path = freezer.path().to_path_buf();
    drop(freezer);
    assert!(!path.exists());
    assert_ne!(proc_state(child.pid()), 'D');
    child.child.kill().unwrap();
    child.reap(Duration::from_secs(5));
}

/// The children of `pid` (its main thread's), from /proc.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// A lab SIGKILLed mid-replay (O2) leaves its frozen child frozen: the namespace's init, also
/// killed, cannot finish its exit until every task of its namespace is gone, and the frozen one
/// cannot go. `gc_stale_freezers` must leave the group alone while that init lives and thaw and
/// remove it once the init is dying, which lets both die.
#[test]
fn gc_thaws_the_group_of_a_namespace_init_killed_with_a_task_frozen() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let usable = racelab_cgroup::freezer_v1_usable();
    if skip_unless(usable, "cgroup v1 freezer", "no writable v1 freezer hierarchy") {
        return;
    }
    // `unshare` forks the init of a new PID namespace (sh), which starts a sleeper and says so.
    let mut outer = ChildGuard::spawn(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "/bin/sh", "-c"])
            .arg("/bin/sleep 1000 & echo ready; wait")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let out = outer.child.stdout.as_mut().unwrap();
    assert!(crate::common::wait_readable(out, Duration::from_secs(5)), "no init started");
    let mut buf = [0u8; 16];
    let n = out.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ready\n");
    let init = children(outer.pid())[0];
    let task = children(init)[0];
    let init_fd = crate::common::pidfd(init);

    // The group as a replay's init names it: pid 1, its start time, its namespace.
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    let ns = ns.to_str().unwrap().trim_start_matches("pid:[").trim_end_matches(']').to_owned();
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap();
    let root = racelab_cgroup::Mounts::probe().unwrap().freezer_v1.unwrap();
    let base = root.join(racelab_cgroup::BASE_NAME);
    std::fs::create_dir_all(&base).unwrap();
    let group = base.join(format!("gc-test.1.{start}.{ns}.0"));
    std::fs::create_dir(&group).unwrap();
    // Whatever fails below, the sleeper is not left frozen.
    struct Thaw(std::path::PathBuf);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        }
    }
    let _thaw = Thaw(group.clone());
    std::fs::write(group.join("cgroup.procs"), task.to_string()).unwrap();
    std::fs::write(group.join("freezer.state"), "FROZEN").unwrap();
    // The kernel does not notify FREEZING -> FROZEN: re-read, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(group.join("freezer.state")).unwrap().trim() != "FROZEN" {
        assert!(Instant::now() < deadline, "the sleeper did not freeze");
        std::thread::sleep(Duration::from_millis(1));
    }

    racelab_cgroup::gc_stale_freezers().unwrap();
    assert!(group.exists(), "the group of a live init was collected");

    pidfd_send_signal(&init_fd, Signal::KILL).unwrap();
    // The init is stuck in its exit, waiting for the frozen sleeper.
    assert!(!exits_within(&init_fd, Duration::from_millis(100)), "the init exited");
    assert_eq!(proc_state(task), 'D');
    // Its exit began when the SIGKILL was taken; gc sees it from PF_EXITING, which nothing
    // notifies, so ask again until it does, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while group.exists() {
        racelab_cgroup::gc_stale_freezers().unwrap();
        assert!(Instant::now() < deadline, "gc did not collect the group of a dying init");
    }
    assert!(exits_within(&init_fd, Duration::from_secs(5)), "the init is still stuck");
    outer.reap(Duration::from_secs(5));
}
