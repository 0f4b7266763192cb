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
