//! The sandbox crate's own runner: demo scenarios for its tests and benches.
//!
//! - `whoami` -> pid, ppid, uid, gid in the namespace, host pid of PID 1, user namespace or not
//! - `recycle` {mechanism, count} -> fork+reap+recycle+verify+kill `count` times: hits, misses
//! - `canary` {pid} -> force `pid` inside, `kill(pid, SIGKILL)` by number, report what died
//! - `group-recycle` {mechanism} -> a child exits and is reaped; a victim takes its pid and
//!   leads a group of that id; `kill(-pid, SIGKILL)` by number: the victim's pgid and fate
//! - `hang` {children, ready?} -> fork that many blocked children, say "hang: ready" on stderr
//!   (and on the FIFO `ready` names, if any), never return (tests Overran)
//! - `forcing-bench` {iterations, only?} -> per-iteration ns of a plain fork and of forcing a PID
//!   with each mechanism (creation alone, and creation + exit + reap), measured in one run
//! - `noop` -> null (the bench's start-to-verdict cost)
//! - `busy` -> recycle PID 1's own pid and a live child's pid: both must be `PidBusy`

use std::time::Duration;

use racelab_sandbox::{Fate, Init, Mechanism, runner_main};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

fn main() {
    runner_main(&scenarios)
}

fn scenarios(name: &str, input: Value, init: &mut Init) -> Result<Value, String> {
    match name {
        "whoami" => Ok(json!({
            "pid": init.pid(),
            "ppid": rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()),
            "uid": rustix::process::getuid().as_raw(),
            "gid": rustix::process::getgid().as_raw(),
            "host_pid": init.host_pid(),
            "user_ns": init.in_user_ns(),
            "ns_pids": init.ns_pids(),
        })),
        "recycle" => recycle(&input, init),
        "canary" => canary(&input, init),
        "group-recycle" => group_recycle(&input, init),
        "hang" => hang(&input, init),
        "forcing-bench" => forcing_bench(&input, init),
        "busy" => busy(init),
        "noop" => Ok(Value::Null),
        other => Err(format!("unknown scenario {other:?}")),
    }
}

fn mechanism(input: &Value) -> Result<Mechanism, String> {
    input["mechanism"].as_str().unwrap_or("ns_last_pid").parse().map_err(|e| format!("{e}"))
}

fn recycle(input: &Value, init: &mut Init) -> Result<Value, String> {
    let mech = mechanism(input)?;
    let count = input["count"].as_u64().unwrap_or(1);
    let (mut hits, mut misses) = (0u64, Vec::new());
    for _ in 0..count {
        let child = init.fork(|| 0).map_err(|e| e.to_string())?;
        let pid = child.pid();
        if child.fate(WAIT).map_err(|e| e.to_string())? == Fate::Alive {
            return Err(format!("child {pid} did not exit"));
        }
        match init.recycle(pid, mech) {
            Ok(v) if v.pid() == pid => {
                hits += 1;
                let fate = v.kill(WAIT).map_err(|e| e.to_string())?;
                if fate != (Fate::Killed { signal: 9 }) {
                    return Err(format!("victim {pid} ended as {fate:?}"));
                }
            }
            Ok(v) => misses.push(format!("wanted {pid}, got {}", v.pid())),
            Err(e) => misses.push(e.to_string()),
        }
    }
    Ok(json!({ "hits": hits, "count": count, "misses": misses }))
}

fn canary(input: &Value, init: &mut Init) -> Result<Value, String> {
    let pid = input["pid"].as_i64().ok_or("input needs a pid")? as i32;
    let victim = init.recycle(pid, mechanism(input)?).map_err(|e| e.to_string())?;
    let target = rustix::process::Pid::from_raw(pid).ok_or("pid 0")?;
    // Kill by NUMBER, the way a broken design would: inside the namespace it can only name
    // the namespace's own process.
    rustix::process::kill_process(target, rustix::process::Signal::KILL)
        .map_err(|e| format!("kill({pid}): {e}"))?;
    let fate = victim.fate(WAIT).map_err(|e| e.to_string())?;
    Ok(json!({ "victim_pid": victim.pid(), "victim_fate": fate }))
}

fn group_recycle(input: &Value, init: &mut Init) -> Result<Value, String> {
    let child = init.fork(|| 0).map_err(|e| e.to_string())?;
    let pid = child.pid();
    if child.fate(WAIT).map_err(|e| e.to_string())? == Fate::Alive {
        return Err(format!("child {pid} did not exit"));
    }
    let victim = init.recycle_group_leader(pid, mechanism(input)?).map_err(|e| e.to_string())?;
    let target = rustix::process::Pid::from_raw(pid).ok_or("pid 0")?;
    let pgid = rustix::process::getpgid(Some(target)).map_err(|e| e.to_string())?;
    // A group kill by the reaped child's number, the way a broken design sends it (G1).
    rustix::process::kill_process_group(target, rustix::process::Signal::KILL)
        .map_err(|e| format!("kill(-{pid}): {e}"))?;
    let fate = victim.fate(WAIT).map_err(|e| e.to_string())?;
    Ok(json!({
        "victim_pid": victim.pid(),
        "pgid": pgid.as_raw_nonzero().get(),
        "victim_fate": fate,
    }))
}

fn hang(input: &Value, init: &mut Init) -> Result<Value, String> {
    let mut kids = Vec::new();
    for _ in 0..input["children"].as_u64().unwrap_or(0) {
        kids.push(init.fork(|| {
            loop {
                nix::unistd::pause();
            }
        }));
    }
    // One write(2): the runner announces on the same stderr concurrently.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), b"hang: ready\n");
    if let Some(path) = input["ready"].as_str() {
        racelab_sandbox::ReadyFifo::signal(std::path::Path::new(path))
            .map_err(|e| e.to_string())?;
    }
    loop {
        nix::unistd::pause();
    }
}

fn busy(init: &mut Init) -> Result<Value, String> {
    let live = init.fork(|| {
        loop {
            nix::unistd::pause();
        }
    });
    let live = live.map_err(|e| e.to_string())?;
    let mut out = json!({});
    for (key, mech) in [("ns_last_pid", Mechanism::NsLastPid), ("set_tid", Mechanism::SetTid)] {
        let err = match init.recycle(live.pid(), mech) {
            Ok(v) => format!("unexpectedly got victim {}", v.pid()),
            Err(e) => format!("{:?}: {e}", e.kind()),
        };
        out[key] = json!(err);
    }
    Ok(out)
}

fn forcing_bench(input: &Value, init: &mut Init) -> Result<Value, String> {
    let n = input["iterations"].as_u64().unwrap_or(1000) as usize;
    let only = input["only"].as_str();
    let err = |e: racelab_sandbox::SandboxError| e.to_string();
    let kinds = ["fork", "ns_last_pid", "set_tid"];
    // Per kind: creation only (fork / recycle returns), and the whole cycle (create, make it
    // exit, reap). Interleaved, so drift over the run hits all kinds alike.
    let mut create: Vec<Vec<u64>> = (0..3).map(|_| Vec::with_capacity(n)).collect();
    let mut cycle: Vec<Vec<u64>> = (0..3).map(|_| Vec::with_capacity(n)).collect();
    for _ in 0..n {
        let t0 = init.now_ns();
        let c = init.fork(|| 0).map_err(err)?;
        let t1 = init.now_ns();
        c.fate(WAIT).map_err(err)?;
        let t2 = init.now_ns();
        if only.is_none_or(|k| k == "fork") {
            create[0].push(t1 - t0);
            cycle[0].push(t2 - t0);
        }
        let pid = c.pid();
        for (k, mech) in [(1, Mechanism::NsLastPid), (2, Mechanism::SetTid)] {
            if only.is_some_and(|o| o != kinds[k]) {
                continue;
            }
            let t0 = init.now_ns();
            let v = init.recycle(pid, mech).map_err(err)?;
            let t1 = init.now_ns();
            v.exit(0).map_err(err)?;
            if v.fate(WAIT).map_err(err)? != (Fate::Exited { code: 0 }) {
                return Err(format!("victim {pid} did not exit 0"));
            }
            let t2 = init.now_ns();
            create[k].push(t1 - t0);
            cycle[k].push(t2 - t0);
        }
    }
    let mut out = json!({});
    for (k, name) in kinds.iter().enumerate() {
        out[name] = json!({ "create_ns": create[k], "cycle_ns": cycle[k] });
    }
    Ok(out)
}
