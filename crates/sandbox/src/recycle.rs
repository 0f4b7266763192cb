//! The PID-recycling driver: after a process has been reaped, make a new process (a
//! [`Victim`] the lab controls) take exactly its PID.
//!
//! Two kernel mechanisms, each verified (the PID obtained is compared with the PID asked for;
//! a mismatch is an error, never a silently different victim):
//! - [`Mechanism::NsLastPid`]: write `P-1` to `/proc/sys/kernel/ns_last_pid`, then fork: the
//!   kernel hands out the next free PID after `P-1`. When `P` is busy it silently hands out a
//!   later one, so the driver checks `/proc/P` first and the result after.
//! - [`Mechanism::SetTid`]: `clone3` with `set_tid = [P]`; a busy `P` fails with `EEXIST`.
//!
//! Both need `CAP_SYS_ADMIN` in the user namespace that owns the PID namespace: true for root
//! and for the sandbox's PID 1 in its own user namespace.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::SandboxError;
use crate::init::{Init, holder};
use crate::proc::Child;

/// How many forks [`Mechanism::NsLastPid`] tries before giving up when another process keeps
/// taking the PID first.
pub const NS_LAST_PID_ATTEMPTS: u32 = 5;

/// How a PID is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Write `P-1` to `/proc/sys/kernel/ns_last_pid`, then fork; retried on a race.
    NsLastPid,
    /// `clone3` with `set_tid = [P]`.
    SetTid,
}

impl std::str::FromStr for Mechanism {
    type Err = SandboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ns_last_pid" => Ok(Mechanism::NsLastPid),
            "set_tid" => Ok(Mechanism::SetTid),
            other => Err(SandboxError::Invalid(format!(
                "unknown PID mechanism {other:?} (known: ns_last_pid, set_tid)"
            ))),
        }
    }
}

/// A process that took a recycled PID. It blocks reading its control pipe until told
/// `exit N` (see [`Victim::exit`]); the lab observes its fate (alive, exited, killed by S)
/// through its pidfd. Dereferences to its [`Child`] handle (pid, pidfd, fate, signal, kill);
/// dropping it SIGKILLs and reaps it.
#[derive(Debug)]
pub struct Victim {
    child: Child,
    ctl: OwnedFd,
}

impl Victim {
    /// Tells the victim to exit with `code`. Returns once the command is written; use
    /// [`Child::fate`] to see it happen.
    pub fn exit(&self, code: u8) -> Result<(), SandboxError> {
        let line = format!("exit {code}\n");
        rustix::io::write(&self.ctl, line.as_bytes()).map(|_| ()).map_err(|e| {
            SandboxError::io(format!("writing to victim {}'s control pipe", self.pid()), e)
        })
    }

    /// The victim's control pipe (write end), for a design that should drive it itself.
    pub fn ctl(&self) -> BorrowedFd<'_> {
        self.ctl.as_fd()
    }
}

impl std::ops::Deref for Victim {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

/// The victim's whole program. Runs in the forked child: a read loop on the control pipe and
/// `_exit`; no allocation, so it is also fine after a raw `clone3`. With `lead_group` it first
/// makes itself a group leader (the parent does it too: whichever runs first wins, as with a
/// shell's job control).
fn victim_body(ctl: BorrowedFd<'_>, lead_group: bool) -> i32 {
    if lead_group {
        let _ = rustix::process::setpgid(None, None);
    }
    let mut buf = [0u8; 64];
    let mut len = 0;
    loop {
        match rustix::io::read(ctl, &mut buf[len..]) {
            // The lab closed the pipe: nobody can drive us any more.
            Ok(0) => return 0,
            Ok(n) => len += n,
            Err(Errno::INTR) => continue,
            Err(_) => return 125,
        }
        while let Some(nl) = buf[..len].iter().position(|&b| b == b'\n') {
            let code = std::str::from_utf8(&buf[..nl])
                .ok()
                .and_then(|l| l.trim().strip_prefix("exit "))
                .and_then(|c| c.trim().parse::<i32>().ok());
            if let Some(code) = code {
                return code;
            }
            buf.copy_within(nl + 1..len, 0);
            len -= nl + 1;
        }
        if len == buf.len() {
            len = 0; // an over-long line: drop it
        }
    }
}

impl Init {
    /// Makes a new [`Victim`] take exactly `pid` (a PID of this namespace that was freed, e.g.
    /// by reaping the process that held it).
    ///
    /// Errors: [`SandboxError::PidBusy`] when a live process (or thread) holds `pid`,
    /// [`SandboxError::PidMismatch`] when other processes kept taking it first
    /// ([`NS_LAST_PID_ATTEMPTS`] tries), [`SandboxError::Invalid`] for `pid < 2`, and the
    /// kernel's error otherwise (EPERM without `CAP_SYS_ADMIN` over the namespace).
    pub fn recycle(&mut self, pid: i32, mechanism: Mechanism) -> Result<Victim, SandboxError> {
        self.recycle_as(pid, mechanism, false)
    }

    /// Like [`Init::recycle`], and the victim leads a process group of its own, whose id is
    /// `pid` (`setpgid(0, 0)`, done by both sides so it holds when this returns, and verified
    /// in /proc): a reaped group leader's id, reused as a new group's id. A `kill(-pid)` sent
    /// for the old group then reaches the victim (G1).
    pub fn recycle_group_leader(
        &mut self,
        pid: i32,
        mechanism: Mechanism,
    ) -> Result<Victim, SandboxError> {
        self.recycle_as(pid, mechanism, true)
    }

    fn recycle_as(
        &mut self,
        pid: i32,
        mechanism: Mechanism,
        lead_group: bool,
    ) -> Result<Victim, SandboxError> {
        if pid < 2 {
            return Err(SandboxError::Invalid(format!("cannot recycle pid {pid}")));
        }
        let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| SandboxError::io("pipe for a victim", e))?;
        let child = match mechanism {
            Mechanism::NsLastPid => self.fork_at_ns_last_pid(pid, &rd, lead_group)?,
            Mechanism::SetTid => {
                let body = || victim_body(rd.as_fd(), lead_group);
                match racelab_sys::clone3::clone3_run(Some(pid), body) {
                    Ok(f) => Child::new(f.pid, f.pidfd, self.owned.clone()),
                    Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                        return Err(SandboxError::PidBusy { pid, holder: holder(pid) });
                    }
                    Err(e) => return Err(SandboxError::io(format!("clone3(set_tid=[{pid}])"), e)),
                }
            }
        };
        if child.pid() != pid {
            let got = child.pid();
            drop(child); // kills and reaps the process with the wrong pid
            return Err(SandboxError::PidMismatch { wanted: pid, got, attempts: 1 });
        }
        if lead_group {
            lead_own_group(pid)?;
        }
        Ok(Victim { child, ctl: wr })
    }

    fn fork_at_ns_last_pid(
        &mut self,
        pid: i32,
        rd: &OwnedFd,
        lead_group: bool,
    ) -> Result<Child, SandboxError> {
        let mut got = 0;
        for _ in 0..NS_LAST_PID_ATTEMPTS {
            // ns_last_pid at a busy pid silently yields a later one: check first, so a busy
            // pid is reported as such rather than as a mismatch.
            if std::fs::symlink_metadata(format!("/proc/{pid}")).is_ok() {
                return Err(SandboxError::PidBusy { pid, holder: holder(pid) });
            }
            let fd = self.ns_last_pid_fd()?;
            let text = (pid - 1).to_string();
            rustix::io::pwrite(fd, text.as_bytes(), 0).map_err(|e| {
                SandboxError::io(format!("writing {text} to /proc/sys/kernel/ns_last_pid"), e)
            })?;
            let child = self.fork(|| victim_body(rd.as_fd(), lead_group))?;
            if child.pid() == pid {
                return Ok(child);
            }
            // Another process forked between our write and our fork: undo and retry.
            got = child.pid();
            drop(child);
        }
        Err(SandboxError::PidMismatch { wanted: pid, got, attempts: NS_LAST_PID_ATTEMPTS })
    }

    fn ns_last_pid_fd(&mut self) -> Result<BorrowedFd<'_>, SandboxError> {
        if self.ns_last_pid.is_none() {
            let path = "/proc/sys/kernel/ns_last_pid";
            let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| SandboxError::io(format!("open {path} for writing"), e))?;
            self.ns_last_pid = Some(fd);
        }
        Ok(self.ns_last_pid.as_ref().map(|f| f.as_fd()).expect("just set"))
    }
}

/// Makes the victim `pid` (our unreaped child, so the number still names it) the leader of
/// group `pid`, and checks it in /proc: the group id it reports must be its own pid.
fn lead_own_group(pid: i32) -> Result<(), SandboxError> {
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| SandboxError::Invalid(format!("cannot make pid {pid} lead a group")))?;
    // EACCES would mean the child exec'd (a victim never does); EPERM that it is a session
    // leader (a victim is forked from PID 1, never one). Either shows in the check below.
    let _ = rustix::process::setpgid(Some(p), Some(p));
    match rustix::process::getpgid(Some(p)) {
        Ok(g) if g == p => Ok(()),
        Ok(g) => Err(SandboxError::Invalid(format!(
            "victim {pid} is in group {} instead of leading group {pid}",
            g.as_raw_nonzero()
        ))),
        Err(e) => Err(SandboxError::io(format!("getpgid({pid})"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fate;

    #[test]
    fn mechanisms_parse_from_their_wire_names() {
        assert_eq!("ns_last_pid".parse::<Mechanism>().unwrap(), Mechanism::NsLastPid);
        assert_eq!("set_tid".parse::<Mechanism>().unwrap(), Mechanism::SetTid);
        assert!("fork".parse::<Mechanism>().is_err());
    }

    #[test]
    fn a_fate_serializes_with_its_kind() {
        let v = serde_json::to_value(Fate::Killed { signal: 9 }).unwrap();
        assert_eq!(v, serde_json::json!({"fate": "killed", "signal": 9}));
    }
}
