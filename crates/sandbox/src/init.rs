//! [`Init`]: what a scenario gets while it runs as PID 1 of the sandbox's namespace.
//!
//! PID 1 is single-threaded (the runner is a fresh exec and starts no thread), so it may fork
//! and run ordinary Rust closures in the children. It is also the namespace's reaper: every
//! orphan ends up as its child, and when it exits the kernel kills everything left.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use rustix::process::{Pid, WaitOptions};

use crate::error::SandboxError;
use crate::proc::{Child, Fate, Owned};

/// A zombie collected by [`Init::reap_all_nonblocking`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reaped {
    /// Its pid in the namespace.
    pub pid: i32,
    /// How it ended.
    pub fate: Fate,
}

/// The scenario's context as PID 1: fork, recycle pids, reap, read the clock.
#[derive(Debug)]
pub struct Init {
    pub(crate) host_pid: i32,
    pub(crate) user_ns: bool,
    pub(crate) owned: Owned,
    /// `/proc/sys/kernel/ns_last_pid`, opened on first use and kept (one `pwrite` per forced
    /// pid instead of open+write+close).
    pub(crate) ns_last_pid: Option<OwnedFd>,
}

impl Init {
    pub(crate) fn new(host_pid: i32, user_ns: bool) -> Init {
        Init { host_pid, user_ns, owned: Rc::new(RefCell::new(BTreeSet::new())), ns_last_pid: None }
    }

    /// This process's pid in the namespace: 1 inside a sandbox.
    pub fn pid(&self) -> i32 {
        rustix::process::getpid().as_raw_nonzero().get()
    }

    /// This process's pid in the runner's (the host's) namespace.
    pub fn host_pid(&self) -> i32 {
        self.host_pid
    }

    /// Whether the sandbox has its own user namespace (the caller was not root, or asked).
    pub fn in_user_ns(&self) -> bool {
        self.user_ns
    }

    /// `CLOCK_MONOTONIC` in nanoseconds: comparable across the namespace (and with the host:
    /// PID namespaces do not change the clock).
    pub fn now_ns(&self) -> u64 {
        now_ns()
    }

    /// Forks a child that runs `f` and exits with its return value (101 if it panics).
    ///
    /// `f` runs in a copy of this single-threaded process: it may allocate and use std, but it
    /// must not return into scenario state it does not own (it is a separate process; changes
    /// to memory are invisible to PID 1). Dropping the returned [`Child`] kills and reaps it.
    pub fn fork<F: FnOnce() -> i32>(&mut self, f: F) -> Result<Child, SandboxError> {
        let forked = racelab_sys::ns::fork_run(f).map_err(|e| SandboxError::io("fork", e))?;
        Ok(Child::new(forked.pid, forked.pidfd, self.owned.clone()))
    }

    /// Reaps every zombie child that no [`Child`] or [`crate::Victim`] handle owns (orphans
    /// reparented to PID 1, children of a design that died), without blocking. The reaper of
    /// last resort; handles keep their own children so they can still collect the status.
    pub fn reap_all_nonblocking(&mut self) -> Vec<Reaped> {
        let me = self.pid();
        let mut out = Vec::new();
        for pid in ns_pids() {
            if pid == me || self.owned.borrow().contains(&pid) {
                continue;
            }
            let Some((state, ppid)) = stat_state_ppid(pid) else { continue };
            if ppid != me || state != 'Z' {
                continue;
            }
            let Some(p) = Pid::from_raw(pid) else { continue };
            if let Ok(Some((_, status))) = rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
                let fate = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => Fate::Exited { code },
                    (None, Some(signal)) => Fate::Killed { signal },
                    (None, None) => continue,
                };
                out.push(Reaped { pid, fate });
            }
        }
        out
    }

    /// Every pid visible in the namespace's /proc, sorted (PID 1 included).
    pub fn ns_pids(&self) -> Vec<i32> {
        ns_pids()
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// The numeric entries of /proc, sorted.
pub(crate) fn ns_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<i32> =
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids
}

/// State letter and ppid from /proc/PID/stat (fields 3 and 4, after the last ')').
pub(crate) fn stat_state_ppid(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Who holds `pid`, for [`SandboxError::PidBusy`]: "(comm) state S ppid N", or "unknown".
pub(crate) fn holder(pid: i32) -> String {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return "unknown (no /proc entry; a thread id or a process that just exited)".into();
    };
    let comm = text.find('(').zip(text.rfind(')')).map_or("?", |(a, b)| &text[a + 1..b]).to_owned();
    match stat_state_ppid(pid) {
        Some((state, ppid)) => format!("({comm}) state {state} ppid {ppid}"),
        None => format!("({comm})"),
    }
}
