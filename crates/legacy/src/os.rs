//! The replicas' only way to signal a process: [`kill`], behind the lab's safety guard.
//!
//! The legacy designs are broken on purpose: several of them send SIGKILL or SIGTERM to a PID
//! they no longer own (piano's escalation threads, rvos' EXIT trap). Inside a racelab sandbox
//! that is the point of the replay, and harmless: the replay runs in a throw-away PID namespace,
//! so a recycled PID can only belong to another process of the same replay (the lab's victim).
//! The namespace is the real barrier, and the sandbox runner marks it with `RACELAB_SANDBOX=1`.
//!
//! Outside a sandbox (unit tests on a developer's host, a replica run by hand) a stray kill
//! could hit any process of the user. There [`kill`] refuses, with an error and a line on
//! stderr, unless the target is a direct, live child of this process (its `/proc/<pid>/stat`
//! names us as parent). Before it is reaped a child's PID cannot be reused, so such a kill
//! reaches the process the design meant. This guard is a seatbelt for the host, not a model:
//! a replica's race windows still open, they just cannot hurt bystanders outside the sandbox.
//!
//! Everything here is async-signal-safe (no allocation, no locks): piano's SIGINT handler calls
//! [`kill`] from signal context.

use std::io::Read;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

pub use crate::error::KillError;

const UNKNOWN: u8 = 0;
const INSIDE: u8 = 1;
const OUTSIDE: u8 = 2;
static SANDBOX: AtomicU8 = AtomicU8::new(UNKNOWN);

/// True when this process runs inside a racelab sandbox (`RACELAB_SANDBOX=1`).
///
/// Reads the environment once and caches the answer. Every replica calls it on its main path
/// before it installs a handler, so [`kill`] never touches the environment (which takes a lock)
/// in signal context; a call that still finds no cached answer there treats the process as
/// outside (the strict side).
pub fn in_sandbox() -> bool {
    match SANDBOX.load(Ordering::Relaxed) {
        INSIDE => true,
        OUTSIDE => false,
        _ => {
            let inside = std::env::var_os("RACELAB_SANDBOX").is_some_and(|v| v == "1");
            SANDBOX.store(if inside { INSIDE } else { OUTSIDE }, Ordering::Relaxed);
            inside
        }
    }
}

/// Sends `signal` to `pid` with `kill(2)`, through the safety guard (see the module docs).
///
/// Always refuses `pid <= 0` (process groups, "every process"): no replica means those.
/// Async-signal-safe.
pub fn kill(pid: i32, signal: Signal) -> Result<(), KillError> {
    let inside = SANDBOX.load(Ordering::Relaxed) == INSIDE;
    if pid <= 0 || (!inside && !is_live_child(pid)) {
        log_refusal(pid, signal);
        return Err(KillError::Refused { pid, signal });
    }
    nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(|errno| KillError::Os {
        pid,
        signal,
        errno,
    })
}

/// Sends `signal` to the process group `pgid` with `kill(-pgid, signal)`, through the same
/// guard as [`kill`]: inside a sandbox it is sent (a recycled group id there can only belong to
/// the replay's own victim); outside, only to the group led by a live direct child of this
/// process (its `/proc/<pgid>/stat` names us as parent and `pgid` as its group). Refuses
/// `pgid <= 1`. Async-signal-safe.
pub fn kill_group(pgid: i32, signal: Signal) -> Result<(), KillError> {
    let inside = SANDBOX.load(Ordering::Relaxed) == INSIDE;
    if pgid <= 1 || (!inside && !is_live_child_group_leader(pgid)) {
        log_refusal(-pgid, signal);
        return Err(KillError::Refused { pid: -pgid, signal });
    }
    nix::sys::signal::killpg(Pid::from_raw(pgid), signal).map_err(|errno| KillError::Os {
        pid: -pgid,
        signal,
        errno,
    })
}

/// Whether `pid` is alive, by `kill(pid, 0)`: no signal is sent, so this needs no guard. Like
/// the shell's `kill -0`, any error (ESRCH, but also EPERM for another user's process) counts
/// as "not alive".
pub fn probe_alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

/// Reads `/proc/<pid>/stat` into `buf`; the bytes read, or `None` when there is no such process
/// (it was reaped). Async-signal-safe: stack buffers only (std uses an on-stack buffer for
/// short paths: no allocation here).
fn read_proc_stat(pid: i32, buf: &mut [u8; 512]) -> Option<usize> {
    let mut path = [0u8; 32];
    let mut len = 0;
    for &b in b"/proc/" {
        path[len] = b;
        len += 1;
    }
    len += write_decimal(&mut path[len..], pid as i64);
    path[len..len + 5].copy_from_slice(b"/stat");
    len += 5;
    let path = std::str::from_utf8(&path[..len]).ok()?;
    let mut file = std::fs::File::open(path).ok()?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return None,
        }
    }
    Some(filled)
}

/// The state letter and parent PID of `pid` from `/proc/<pid>/stat`, or `None` when there is no
/// such process (it was reaped). Async-signal-safe: stack buffers only.
pub fn proc_stat(pid: i32) -> Option<(u8, i32)> {
    let mut buf = [0u8; 512];
    let filled = read_proc_stat(pid, &mut buf)?;
    parse_stat(&buf[..filled])
}

/// Parses "pid (comm) S ppid ..." (comm may contain spaces and parentheses: take the last ')').
fn parse_stat(stat: &[u8]) -> Option<(u8, i32)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = stat.get(close + 2..)?;
    let state = *rest.first()?;
    let ppid_field = rest.get(2..)?;
    let end = ppid_field.iter().position(|&b| b == b' ')?;
    Some((state, parse_decimal(&ppid_field[..end])?))
}

/// The process group of `pid` from `/proc/<pid>/stat` (field 5), or `None`. Stack buffers only.
fn proc_pgrp(pid: i32) -> Option<i32> {
    let mut buf = [0u8; 512];
    let filled = read_proc_stat(pid, &mut buf)?;
    parse_pgrp(&buf[..filled])
}

/// A non-negative decimal number, every byte a digit; `None` on anything else or overflow.
fn parse_decimal(digits: &[u8]) -> Option<i32> {
    let mut v: i32 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i32::from(b - b'0'))?;
    }
    Some(v)
}

/// Field 5 of "pid (comm) S ppid pgrp ...".
fn parse_pgrp(stat: &[u8]) -> Option<i32> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat.get(close + 2..)?.split(|&b| b == b' ');
    parse_decimal(fields.nth(2)?)
}

fn is_live_child_group_leader(pgid: i32) -> bool {
    is_live_child(pgid) && proc_pgrp(pgid) == Some(pgid)
}

fn is_live_child(pid: i32) -> bool {
    let me = std::process::id() as i32;
    matches!(proc_stat(pid), Some((state, ppid)) if ppid == me && state != b'Z')
}

fn write_decimal(out: &mut [u8], value: i64) -> usize {
    let mut digits = [0u8; 20];
    let negative = value < 0;
    let mut v = value.unsigned_abs();
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut len = 0;
    if negative {
        out[0] = b'-';
        len = 1;
    }
    for i in (0..n).rev() {
        out[len] = digits[i];
        len += 1;
    }
    len
}

/// One line on stderr with write(2), no lock and no allocation (signal context).
fn log_refusal(pid: i32, signal: Signal) {
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut push = |bytes: &[u8], len: &mut usize| {
        let n = bytes.len().min(line.len() - *len);
        line[*len..*len + n].copy_from_slice(&bytes[..n]);
        *len += n;
    };
    push(b"racelab-legacy: refused ", &mut len);
    push(signal.as_str().as_bytes(), &mut len);
    push(b" to pid ", &mut len);
    let mut num = [0u8; 24];
    let n = write_decimal(&mut num, i64::from(pid));
    push(&num[..n], &mut len);
    push(b": outside a racelab sandbox only live direct children may be signalled\n", &mut len);
    let _ = rustix::io::write(std::io::stderr().as_fd(), &line[..len]);
}

/// Makes this process the init of its descendants: nothing to do as PID 1, else
/// PR_SET_CHILD_SUBREAPER so orphans are reparented here.
pub fn become_init() -> Result<(), crate::error::LegacyError> {
    if std::process::id() == 1 {
        return Ok(());
    }
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(crate::error::LegacyError::os("prctl(PR_SET_CHILD_SUBREAPER)"))
}

/// A reaped child's PID and shell code (128 + N for a signal), or `None` for stop/continue.
pub fn pid_and_code(status: nix::sys::wait::WaitStatus) -> Option<(i32, i32)> {
    match status {
        nix::sys::wait::WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        nix::sys::wait::WaitStatus::Signaled(pid, signal, _) => {
            Some((pid.as_raw(), 128 + signal as i32))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn parse_stat_reads_state_and_ppid_past_a_comm_with_parentheses() {
        assert_eq!(parse_stat(b"42 (a) b) (c) S 17 42 42 0"), Some((b'S', 17)));
        assert_eq!(parse_stat(b"7 (sleep) Z 1 7"), Some((b'Z', 1)));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn parse_pgrp_reads_the_fifth_field() {
        assert_eq!(parse_pgrp(b"42 (a) b) (c) S 17 40 40 0"), Some(40));
        assert_eq!(parse_pgrp(b"garbage"), None);
    }

    #[test]
    fn kill_group_refuses_a_group_that_is_not_led_by_our_child_outside_a_sandbox() {
        assert!(matches!(kill_group(1, Signal::SIGCONT), Err(KillError::Refused { .. })));
        if in_sandbox() {
            return;
        }
        // Our own group is led by someone else (cargo, a shell), never by a child of ours.
        let own = nix::unistd::getpgrp().as_raw();
        assert!(matches!(kill_group(own, Signal::SIGCONT), Err(KillError::Refused { .. })));
    }

    #[test]
    fn kill_group_reaches_the_group_our_child_leads() {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        kill_group(pid, Signal::SIGKILL).expect("kill our child's group");
        let status = child.wait().expect("reap");
        assert!(!status.success());
    }

    #[test]
    fn kill_refuses_non_positive_pids_everywhere() {
        assert!(matches!(kill(0, Signal::SIGTERM), Err(KillError::Refused { .. })));
        assert!(matches!(kill(-1, Signal::SIGKILL), Err(KillError::Refused { .. })));
    }

    #[test]
    fn kill_outside_a_sandbox_refuses_a_process_that_is_not_our_child() {
        if in_sandbox() {
            return; // the guard is off by design inside the sandbox
        }
        // Our parent (cargo, or a shell) is alive but not our child.
        let parent = nix::unistd::getppid().as_raw();
        assert!(matches!(kill(parent, Signal::SIGCONT), Err(KillError::Refused { .. })));
    }

    #[test]
    fn kill_reaches_a_live_direct_child() {
        let mut child =
            Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().expect("spawn sleep");
        let pid = child.id() as i32;
        assert_eq!(proc_stat(pid).map(|(_, ppid)| ppid), Some(std::process::id() as i32));
        kill(pid, Signal::SIGKILL).expect("kill own child");
        let status = child.wait().expect("reap");
        assert!(!status.success());
    }
}
