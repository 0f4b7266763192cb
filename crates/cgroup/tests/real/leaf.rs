use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use racelab_cgroup::{ErrorKind, Leaf};

use crate::common::{ChildGuard, become_subreaper, exits_within, leaf_or_skip, pidfd, reap_pidfd};

const DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn a_child_moved_into_a_leaf_dies_by_cgroup_kill_and_the_leaf_is_removed() {
    let mut child = ChildGuard::sleeper();
    let Some(leaf) = leaf_or_skip("kill-one") else { return };
    leaf.add(child.pid()).unwrap();
    assert_eq!(leaf.procs().unwrap(), vec![child.pid()]);
    assert!(leaf.populated().unwrap());

    leaf.kill().unwrap();
    let status = child.reap(DEADLINE);
    assert_eq!(status.signal(), Some(9));
    // Processes leave the cgroup when they exit, and cgroup.events is read, not awaited.
    assert!(!leaf.populated().unwrap());
    leaf.remove(Instant::now() + DEADLINE).unwrap();
    assert!(!leaf.path().exists());
}

#[test]
fn an_open_events_file_reads_the_current_populated_state_each_time() {
    let Some(leaf) = leaf_or_skip("events") else { return };
    let events = leaf.events().unwrap();
    assert!(!events.populated().unwrap());
    let mut child = ChildGuard::sleeper();
    leaf.add(child.pid()).unwrap();
    // The same descriptor, read again: the kernel regenerates the text at offset 0.
    assert!(events.populated().unwrap());
    leaf.kill().unwrap();
    assert_eq!(child.reap(DEADLINE).signal(), Some(9));
    assert!(!events.populated().unwrap());
    leaf.remove(Instant::now() + DEADLINE).unwrap();
}

#[test]
fn cgroup_kill_kills_a_forked_tree_whole() {
    become_subreaper();
    let mut sh = ChildGuard::tree();
    let Some(leaf) = leaf_or_skip("kill-tree") else { return };
    leaf.add(sh.pid()).unwrap();
    sh.start_tree();
    let pids = leaf.procs().unwrap();
    assert_eq!(pids.len(), 3, "sh and two sleepers: {pids:?}");
    let grandchildren: Vec<_> =
        pids.iter().filter(|&&p| p != sh.pid()).map(|&p| pidfd(p)).collect();

    leaf.kill().unwrap();
    for fd in &grandchildren {
        assert!(exits_within(fd, DEADLINE), "a grandchild survived cgroup.kill");
    }
    assert_eq!(sh.reap(DEADLINE).signal(), Some(9));
    // sh has exited, so its children are ours now (subreaper): reap them.
    grandchildren.iter().for_each(reap_pidfd);
    assert_eq!(leaf.procs().unwrap(), Vec::<i32>::new());
    leaf.remove(Instant::now() + DEADLINE).unwrap();
}

#[test]
fn kill_by_walk_kills_a_forked_tree_whole() {
    become_subreaper();
    let mut sh = ChildGuard::tree();
    let Some(leaf) = leaf_or_skip("walk-tree") else { return };
    leaf.add(sh.pid()).unwrap();
    sh.start_tree();
    let pids = leaf.procs().unwrap();
    let grandchildren: Vec<_> =
        pids.iter().filter(|&&p| p != sh.pid()).map(|&p| pidfd(p)).collect();

    let sent = leaf.kill_by_walk(Instant::now() + DEADLINE).unwrap();
    assert!(sent >= 3, "signals sent: {sent}");
    // The walk returns only once the leaf is empty: everyone has exited already.
    for fd in &grandchildren {
        assert!(exits_within(fd, Duration::ZERO));
    }
    assert_eq!(sh.reap(Duration::ZERO).signal(), Some(9));
    grandchildren.iter().for_each(reap_pidfd);
    leaf.remove(Instant::now() + DEADLINE).unwrap();
}

#[test]
fn removing_a_busy_leaf_fails_at_the_deadline_naming_the_pids() {
    let mut child = ChildGuard::sleeper();
    let Some(leaf) = leaf_or_skip("busy") else { return };
    leaf.add(child.pid()).unwrap();
    let err = leaf.remove(Instant::now() + Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    let msg = err.to_string();
    assert!(msg.contains(&child.pid().to_string()) && msg.contains("busy."), "{msg}");
    leaf.kill_and_remove(Instant::now() + DEADLINE).unwrap();
    assert!(!leaf.path().exists());
    child.reap(DEADLINE);
}

#[test]
fn dropping_a_leaf_kills_what_is_inside_and_removes_it() {
    let mut child = ChildGuard::sleeper();
    let Some(leaf) = leaf_or_skip("drop") else { return };
    leaf.add(child.pid()).unwrap();
    let path = leaf.path().to_path_buf();
    drop(leaf);
    assert!(!path.exists());
    assert_eq!(child.reap(DEADLINE).signal(), Some(9));
}

#[test]
fn a_nested_leaf_is_killed_and_removed_with_its_parent() {
    let mut child = ChildGuard::sleeper();
    let Some(outer) = leaf_or_skip("outer") else { return };
    let inner = Leaf::create(outer.path(), "inner").unwrap();
    inner.add(child.pid()).unwrap();
    let inner_path = inner.path().to_path_buf();
    std::mem::forget(inner); // the parent's removal must handle the subtree by itself
    assert_eq!(outer.kill_by_walk(Instant::now() + DEADLINE).unwrap(), 1);
    outer.remove(Instant::now() + DEADLINE).unwrap();
    assert!(!inner_path.exists() && !outer.path().exists());
    child.reap(DEADLINE);
}

#[test]
fn the_dir_fd_is_an_open_directory() {
    let Some(leaf) = leaf_or_skip("fd") else { return };
    let fd = leaf.dir_fd().unwrap();
    let st = rustix::fs::fstat(&fd).unwrap();
    assert_eq!(rustix::fs::FileType::from_raw_mode(st.st_mode), rustix::fs::FileType::Directory);
    assert!(rustix::fs::openat(&fd, "cgroup.procs", rustix::fs::OFlags::RDONLY, 0.into()).is_ok());
}

#[test]
fn kill_reports_not_supported_when_cgroup_kill_is_missing() {
    // A plain directory stands in for a cgroup of a kernel older than 5.14.
    let dir = tempfile::tempdir().unwrap();
    let leaf = Leaf::create(dir.path(), "old-kernel").unwrap();
    let err = leaf.kill().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    assert!(err.to_string().contains("cgroup.kill"), "{err}");
}

#[test]
fn bad_names_are_refused_before_touching_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let err = Leaf::create(dir.path(), "../escape").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
}

#[test]
fn adding_a_dead_pid_names_the_file_and_operation() {
    let Some(leaf) = leaf_or_skip("dead-pid") else { return };
    let mut child = ChildGuard::spawn(&mut std::process::Command::new("/bin/true"));
    let pid = child.pid();
    child.reap(DEADLINE);
    let err = leaf.add(pid).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("write cgroup.procs"), "{err}");
}
