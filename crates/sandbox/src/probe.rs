//! The built-in `__probe` scenario: what PID 1 tries inside a sandbox for
//! [`crate::Capabilities::probe`] (forcing a PID both ways, becoming a subreaper, a seccomp
//! filter with a listener). Below the
//! runner, which runs it; the capability table on top reads its answer.

use std::time::Duration;

use serde_json::{Value, json};

use crate::init::Init;
use crate::proc::Fate;
use crate::recycle::Mechanism;

/// The built-in `__probe` scenario: tries, as PID 1, what only works inside a sandbox.
pub(crate) fn probe_scenario(init: &mut Init) -> Value {
    let mut out = json!({ "user_ns": init.in_user_ns() });
    for (key, mech) in [("ns_last_pid", Mechanism::NsLastPid), ("set_tid", Mechanism::SetTid)] {
        out[key] = match try_recycle(init, mech) {
            Ok(pid) => json!({"ok": true, "detail": format!("forced pid {pid} in the sandbox")}),
            Err(e) => json!({"ok": false, "detail": e}),
        };
    }
    let sub = init.fork(|| {
        i32::from(rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_err())
    });
    out["child_subreaper"] = match sub.map(|c| c.fate(Duration::from_secs(5))) {
        Ok(Ok(Fate::Exited { code: 0 })) => json!({"ok": true, "detail": "prctl works"}),
        other => {
            json!({"ok": false, "detail": format!("prctl(PR_SET_CHILD_SUBREAPER): {other:?}")})
        }
    };
    // Syscall points of black-box programs: a filter with a listener, with the flag that keeps a
    // parked thread's signals pending (Linux 5.19+), installed by an unprivileged-looking child.
    let notify = init.fork(|| {
        use racelab_sys::seccomp::{Filter, ParkedSignals, Rule, Sysno, install_listener};
        let filter = Filter::new().rule(Rule::notify(Sysno::getppid));
        match install_listener(&filter, ParkedSignals::DeferUntilAnswered) {
            Ok(_) => 0,
            Err(_) => 1,
        }
    });
    out["seccomp_notify"] = match notify.map(|c| c.fate(Duration::from_secs(5))) {
        Ok(Ok(Fate::Exited { code: 0 })) => {
            json!({"ok": true, "detail": "a filter with a listener and WAIT_KILLABLE_RECV installs"})
        }
        other => {
            json!({"ok": false, "detail": format!("seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER | WAIT_KILLABLE_RECV): {other:?} (Linux 5.19+ needed)")})
        }
    };
    out
}

fn try_recycle(init: &mut Init, mech: Mechanism) -> Result<i32, String> {
    let child = init.fork(|| 0).map_err(|e| e.to_string())?;
    let pid = child.pid();
    child.fate(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let victim = init.recycle(pid, mech).map_err(|e| e.to_string())?;
    victim.kill(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(pid)
}
