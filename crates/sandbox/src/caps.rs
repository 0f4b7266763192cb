//! What this kernel and these privileges allow: [`Capabilities::probe`], rendered as a table by
//! `racelab doctor`, and the cgroup leaf a run may use.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::modes::PROBE_SCENARIO;
use crate::spec::{RunOutcome, Spec, UserNs};

/// One probed capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// Whether it is available.
    pub available: bool,
    /// How it was found out, or why it is missing.
    pub detail: String,
}

impl Capability {
    fn yes(detail: impl Into<String>) -> Capability {
        Capability { available: true, detail: detail.into() }
    }
    fn no(detail: impl Into<String>) -> Capability {
        Capability { available: false, detail: detail.into() }
    }
    fn from_json(v: &Value) -> Capability {
        Capability {
            available: v["ok"].as_bool().unwrap_or(false),
            detail: v["detail"].as_str().unwrap_or("no answer").to_owned(),
        }
    }
}

/// What the lab can do here. Each field says whether and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Effective uid 0.
    pub root: Capability,
    /// `pidfd_open` (Linux 5.3+).
    pub pidfd: Capability,
    /// A user namespace can be created (a real sandbox run with [`UserNs::Always`]).
    pub user_ns: Capability,
    /// A sandbox (PID + mount namespace, fresh /proc) can be built with [`UserNs::Auto`].
    pub sandbox: Capability,
    /// Inside a sandbox: writing `ns_last_pid` then forking gives the PID asked for.
    pub ns_last_pid: Capability,
    /// Inside a sandbox: `clone3` with `set_tid` gives the PID asked for.
    pub clone3_set_tid: Capability,
    /// `PR_SET_CHILD_SUBREAPER` (tried in a child inside a sandbox).
    pub child_subreaper: Capability,
    /// A seccomp filter with a listener and `WAIT_KILLABLE_RECV` (tried in a child inside a
    /// sandbox): what syscall points of black-box programs need.
    pub seccomp_notify: Capability,
    /// A cgroup v2 hierarchy is mounted.
    pub cgroup_v2: Capability,
    /// racelab can create and remove leaves under `<v2>/racelab`.
    pub cgroup_v2_writable: Capability,
    /// `cgroup.kill` (Linux 5.14+).
    pub cgroup_kill: Capability,
    /// A v1 freezer group can be created (the lab's "unkillable for a while").
    pub freezer_v1: Capability,
}

impl Capabilities {
    /// Probes everything, with real sandbox runs through `runner` (an executable whose main
    /// calls [`crate::runner_main`]; the CLI passes its own path). Takes a few milliseconds.
    pub fn probe(runner: &Path) -> Capabilities {
        let root = rustix::process::geteuid().is_root();
        let pidfd = match rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        ) {
            Ok(_) => Capability::yes("pidfd_open(self) works"),
            Err(e) => Capability::no(format!("pidfd_open(self): {e}")),
        };
        let spec = |user_ns| Spec { user_ns, deadline: Duration::from_secs(5), ..Spec::default() };
        let sandbox_run =
            crate::caller::run(runner, PROBE_SCENARIO, &json!({}), &spec(UserNs::Auto));
        let (sandbox, inside) = match sandbox_run {
            Ok(RunOutcome::Finished { output, .. }) => {
                (Capability::yes(format!("PID+mount namespaces via {}", runner.display())), output)
            }
            Ok(other) => (Capability::no(format!("probe run: {other:?}")), Value::Null),
            Err(e) => (Capability::no(e.to_string()), Value::Null),
        };
        let user_ns = probe_user_ns(runner, &spec(UserNs::Always));
        let from_inside = |key: &str| {
            if inside.is_null() {
                Capability::no("needs a sandbox, which could not be built")
            } else {
                Capability::from_json(&inside[key])
            }
        };
        // What labs that died left (a frozen O2 child, a leaf): removed before the probes, and
        // said in the freezer's row.
        let collected = crate::leaf::gc_stale_leaves();
        let mounts = racelab_cgroup::Mounts::probe().ok();
        let cgroup_v2 = match mounts.as_ref().and_then(|m| m.v2.clone()) {
            Some(p) => Capability::yes(format!("mounted at {}", p.display())),
            None => Capability::no("no cgroup2 mount in /proc/self/mountinfo"),
        };
        let writable = racelab_cgroup::v2_writable();
        let base = mounts.as_ref().and_then(|m| m.v2_base());
        let base_text = base.as_ref().map_or("<none>".into(), |b| b.display().to_string());
        Capabilities {
            root: if root {
                Capability::yes("euid 0")
            } else {
                Capability::no(format!("euid {}", rustix::process::geteuid().as_raw()))
            },
            pidfd,
            user_ns,
            sandbox,
            ns_last_pid: from_inside("ns_last_pid"),
            clone3_set_tid: from_inside("set_tid"),
            child_subreaper: from_inside("child_subreaper"),
            seccomp_notify: from_inside("seccomp_notify"),
            cgroup_v2,
            cgroup_v2_writable: if writable {
                Capability::yes(format!("created and removed a leaf under {base_text}"))
            } else {
                Capability::no(format!("cannot create a leaf under {base_text}"))
            },
            cgroup_kill: if racelab_cgroup::cgroup_kill_supported() {
                Capability::yes("cgroup.kill present")
            } else {
                Capability::no("no cgroup.kill file (Linux < 5.14, or no writable v2 cgroup)")
            },
            freezer_v1: match mounts.as_ref().and_then(|m| m.freezer_v1.clone()) {
                None => Capability::no("no v1 freezer hierarchy mounted"),
                Some(p) if racelab_cgroup::freezer_v1_usable() => {
                    let left = if collected > 0 {
                        format!("; removed {collected} group(s) or leaves left by dead labs")
                    } else {
                        String::new()
                    };
                    Capability::yes(format!("group created under {}{left}", p.display()))
                }
                Some(p) => Capability::no(format!("cannot create a group under {}", p.display())),
            },
        }
    }

    /// (stable key, label, capability) in display order: the key is what
    /// `racelab doctor --format json` names it by.
    pub fn entries(&self) -> Vec<(&'static str, &'static str, &Capability)> {
        vec![
            ("root", "root", &self.root),
            ("pidfd", "pidfd", &self.pidfd),
            ("user_ns", "user namespaces", &self.user_ns),
            ("sandbox", "sandbox (pid+mount ns)", &self.sandbox),
            ("ns_last_pid", "ns_last_pid", &self.ns_last_pid),
            ("clone3_set_tid", "clone3 set_tid", &self.clone3_set_tid),
            ("child_subreaper", "child subreaper", &self.child_subreaper),
            ("seccomp_notify", "seccomp user notification", &self.seccomp_notify),
            ("cgroup_v2", "cgroup v2", &self.cgroup_v2),
            ("cgroup_v2_writable", "cgroup v2 writable", &self.cgroup_v2_writable),
            ("cgroup_kill", "cgroup.kill", &self.cgroup_kill),
            ("freezer_v1", "v1 freezer", &self.freezer_v1),
        ]
    }

    /// (label, capability) rows in display order.
    pub fn rows(&self) -> Vec<(&'static str, &Capability)> {
        self.entries().into_iter().map(|(_, name, c)| (name, c)).collect()
    }
}

impl fmt::Display for Capabilities {
    /// A Markdown table: capability | available | detail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| capability | available | detail |")?;
        writeln!(f, "|---|---|---|")?;
        for (name, c) in self.rows() {
            let yes = if c.available { "yes" } else { "no" };
            writeln!(f, "| {name} | {yes} | {} |", c.detail.replace('|', "/"))?;
        }
        Ok(())
    }
}

fn probe_user_ns(runner: &Path, spec: &Spec) -> Capability {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    if max == Some(0) {
        return Capability::no("/proc/sys/user/max_user_namespaces is 0");
    }
    match crate::caller::run(runner, PROBE_SCENARIO, &json!({}), spec) {
        Ok(RunOutcome::Finished { output, .. }) if output["user_ns"] == json!(true) => {
            Capability::yes("unshare(CLONE_NEWUSER) with uid/gid maps works")
        }
        Ok(other) => Capability::no(format!("probe run: {other:?}")),
        Err(e) => Capability::no(e.to_string()),
    }
}
