//! Stopping a tree as a subreaper, on real processes: a stop requested with `Supervisor::stop`
//! kills the whole tree (with cgroup containment a `setsid` escape included), `wait` itself
//! reaps every orphan before it returns, and a cgroup leaf is gone when it returns.
//!
//! One test function in its own test binary: a subreaper reaps every child of its process, so
//! no other test may run beside it.

use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use racelab_sandbox::skip_unless;
use racelab_supervisor::{Config, Containment, Signal, StopReason, Supervisor, Target};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Leaves of this process under `<v2>/racelab` (named `supervise.<pid>.<...>`).
fn own_leaves() -> Vec<String> {
    let Some(base) = racelab_cgroup::Mounts::probe().ok().and_then(|m| m.v2_base()) else {
        return Vec::new();
    };
    let prefix = format!("supervise.{}.", std::process::id());
    std::fs::read_dir(base)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_stopped_tree_is_killed_and_reaped_by_wait_and_its_leaf_removed() {
    let cgroup =
        is_root() && racelab_cgroup::v2_writable() && racelab_cgroup::cgroup_kill_supported();
    let mut cases = vec![(Containment::Group, Signal::SIGTERM)];
    if !skip_unless(cgroup, "root + writable cgroup v2 with cgroup.kill", "cgroup containment") {
        cases.extend([
            (Containment::Cgroup, Signal::SIGTERM),
            (Containment::Cgroup, Signal::SIGKILL),
        ]);
    }
    for (containment, stop_signal) in cases {
        let ready = racelab_sandbox::ReadyFifo::new().expect("fifo");
        // sh leads; the sleepers would outlive sh's death. Only a cgroup catches one that
        // leaves the session (and so the group).
        let escape = if containment == Containment::Cgroup { "setsid sleep 100 &" } else { "" };
        let script = format!(
            "sleep 100 & sleep 100 & sleep 100 & {escape} echo ready > {}; wait",
            ready.path().display()
        );
        let config = Config { containment, subreaper: true, stop_signal, ..Config::default() };
        let args = [OsString::from("-c"), OsString::from(script)];
        let mut sup = Supervisor::start(&config, OsStr::new("/bin/sh"), &args).expect("start");
        ready.wait(Duration::from_secs(5)).expect("the tree never got ready");
        let t = Instant::now();
        sup.stop();
        let r = sup.wait().expect("wait");
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "{containment:?} {stop_signal}: {took:?}: {r:?}"
        );
        assert!(r.warnings.is_empty(), "{stop_signal}: {r:?}");
        assert!(r.swept, "{r:?}");
        assert!(r.orphans_reaped >= 3, "{stop_signal}: every sleeper reaped by wait: {r:?}");
        match (containment, stop_signal) {
            (Containment::Group, _) => {
                assert_eq!(r.reason, StopReason::Interrupted, "{r:?}");
                assert_eq!(r.signals[0].target, Target::Group, "{r:?}");
            }
            (_, Signal::SIGKILL) => {
                assert_eq!(r.reason, StopReason::ForcedKill, "{r:?}");
                // One cgroup.kill, no signal to a pid first.
                assert_eq!((r.signals[0].signo, r.signals[0].target), (9, Target::Cgroup));
            }
            _ => {
                assert_eq!(r.reason, StopReason::Interrupted, "{r:?}");
                // The stop signal reaches the leader only (by pidfd), the tree by cgroup.kill.
                assert_eq!(r.signals[0].target, Target::Child, "{r:?}");
            }
        }
        // Nothing of the tree is left: no child, no zombie, no leaf.
        let flags = rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG;
        let left = rustix::process::waitid(rustix::process::WaitId::All, flags);
        assert_eq!(left.err(), Some(rustix::io::Errno::CHILD), "{stop_signal}: {left:?}");
        assert_eq!(own_leaves(), Vec::<String>::new(), "{stop_signal}");
    }
}
