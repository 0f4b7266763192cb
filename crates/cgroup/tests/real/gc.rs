use std::time::{Duration, Instant};

use racelab_cgroup::{Leaf, gc_stale};

use crate::common::{ChildGuard, v2_base_or_skip};

fn own_pidns() -> u64 {
    let link = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let s = link.to_str().unwrap();
    s.trim_start_matches("pid:[").trim_end_matches(']').parse().unwrap()
}

#[test]
fn gc_kills_and_removes_a_leaf_whose_owner_is_dead_and_spares_live_ones() {
    let Some(base) = v2_base_or_skip() else { return };
    let live = Leaf::create(&base, "gc-live").unwrap();
    // A leaf as a dead owner would have left it: the owner pid has exited and been reaped.
    let mut owner = ChildGuard::spawn(&mut std::process::Command::new("/bin/true"));
    let dead = owner.pid();
    owner.reap(Duration::from_secs(5));
    let stale = base.join(format!("gc-stale.{dead}.1.{}.0", own_pidns()));
    std::fs::create_dir(&stale).unwrap();
    let mut inside = ChildGuard::sleeper();
    std::fs::write(stale.join("cgroup.procs"), inside.pid().to_string()).unwrap();

    let removed = gc_stale(&base).unwrap();
    assert!(removed >= 1, "removed {removed}");
    assert!(!stale.exists());
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&inside.reap(Duration::from_secs(5))),
        Some(9)
    );
    assert!(live.path().exists(), "a live owner's leaf was collected");
    live.remove(Instant::now() + Duration::from_secs(5)).unwrap();
}

#[test]
fn gc_of_a_missing_base_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(gc_stale(&dir.path().join("absent")).unwrap(), 0);
}
