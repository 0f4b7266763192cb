//! Who created a cgroup directory, encoded in its name so that a later run can tell whether the
//! owner is gone: `<name>.<pid>.<start>.<pidns>.<seq>`.
//!
//! The pid alone is not enough: pids are recycled (the very thing racelab studies), so the
//! owner's start time (field 22 of /proc/PID/stat) is recorded too, and the pid namespace inode,
//! because a pid only means something inside its own namespace.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::fsutil;

/// A process identity that survives pid reuse: pid + start time + pid namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: i32,
    pub start: u64,
    pub pidns: u64,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Owner {
    /// The calling process.
    pub fn current() -> Result<Owner> {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let stat_path = Path::new("/proc/self/stat");
        let start = parse_start_time(stat_path, &fsutil::read(stat_path)?)?;
        Ok(Owner { pid, start, pidns: own_pidns()? })
    }

    /// The directory name for a cgroup `name` created by this owner; unique within the process.
    pub fn dir_name(&self, name: &str) -> String {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        format!("{name}.{}.{}.{}.{seq}", self.pid, self.start, self.pidns)
    }

    /// Parses a name made by [`Owner::dir_name`]; None for names racelab did not make.
    pub fn from_dir_name(dir: &str) -> Option<Owner> {
        let mut it = dir.rsplitn(5, '.');
        let _seq: u64 = it.next()?.parse().ok()?;
        let pidns = it.next()?.parse().ok()?;
        let start = it.next()?.parse().ok()?;
        let pid = it.next()?.parse().ok()?;
        it.next().filter(|n| !n.is_empty())?;
        Some(Owner { pid, start, pidns })
    }

    /// Whether the owner is certainly gone, judged from the calling process. An owner in another
    /// pid namespace is never judged gone (its pid means nothing here), nor is one whose /proc
    /// entry cannot be read for a reason other than absence.
    pub fn is_gone(&self) -> bool {
        match own_pidns() {
            Ok(ns) if ns == self.pidns => {}
            _ => return false,
        }
        let path = format!("/proc/{}/stat", self.pid);
        match std::fs::read_to_string(&path) {
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            // A different start time: the pid was recycled, the owner is gone.
            Ok(text) => parse_start_time(Path::new(&path), &text).is_ok_and(|s| s != self.start),
        }
    }

    /// Whether the owner is gone or on its way out, judged from outside its pid namespace too.
    ///
    /// A v1 freezer group is created by a replay's init (pid 1 of a namespace of its own), whose
    /// pid means nothing outside, so [`Owner::is_gone`] never judges it. Here the namespace's
    /// init is looked up in this /proc by the namespace's inode: the owner is gone when that
    /// init is another process (a different start time: the inode was reused), and dying when
    /// its exit has begun or a SIGKILL is pending for it ([`dying`]). A SIGKILLed init whose
    /// namespace holds a frozen task stays dying until that task is thawed: the kernel waits
    /// for every task of the namespace before the init's exit completes. Not judged (false):
    /// an owner that was not pid 1 of its namespace, and a namespace whose init was not found
    /// while some process's namespace could not be read (it may be that one).
    pub fn is_gone_or_dying(&self) -> bool {
        if own_pidns().is_ok_and(|ns| ns == self.pidns) {
            return self.is_gone() || dying(self.pid) == Some(true);
        }
        if self.pid != 1 {
            return false;
        }
        match find_init(self.pidns) {
            Init::Found { pid, start } if start == self.start => dying(pid) == Some(true),
            // Another process is that namespace's init: the inode was reused.
            Init::Found { .. } => true,
            Init::Absent { unsure } => !unsure,
        }
    }
}

/// What this /proc shows of a pid namespace's init.
enum Init {
    /// Its pid here, and its start time.
    Found { pid: i32, start: u64 },
    /// Not found; `unsure`: some process's namespace could not be read (it may be that one).
    Absent { unsure: bool },
}

/// Looks up the init (pid 1) of the pid namespace with inode `pidns` in this /proc.
fn find_init(pidns: u64) -> Init {
    let want = format!("pid:[{pidns}]");
    let Ok(entries) = std::fs::read_dir("/proc") else { return Init::Absent { unsure: true } };
    let mut unsure = false;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        match std::fs::read_link(format!("/proc/{pid}/ns/pid")) {
            Ok(link) if link.as_os_str() == want.as_str() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                unsure = true;
                continue;
            }
        }
        if ns_pid(pid) != Some(1) {
            continue;
        }
        let stat_path = format!("/proc/{pid}/stat");
        // Unreadable: it was reaped since its namespace was read; look on.
        let Ok(text) = std::fs::read_to_string(&stat_path) else { continue };
        return match parse_start_time(Path::new(&stat_path), &text) {
            Ok(start) => Init::Found { pid, start },
            Err(_) => Init::Absent { unsure: true },
        };
    }
    Init::Absent { unsure }
}

/// Whether the pid namespace with inode `pidns` has ended or is ending, judged from this
/// /proc: its init is dying ([`dying`]), or no process here is its init (and every process's
/// namespace could be read). When a namespace's init exits, the kernel kills everything left
/// in it, so every process of an ended or ending namespace is gone or dying.
///
/// Only meaningful from an ancestor of `pidns` (a /proc shows the processes of its own
/// namespace and of those below it): from inside a replay, a sibling replay's namespace would
/// look ended. Never call it there.
pub(crate) fn pidns_ended_or_ending(pidns: u64) -> bool {
    if own_pidns().is_ok_and(|ns| ns == pidns) {
        return false;
    }
    match find_init(pidns) {
        Init::Found { pid, .. } => dying(pid) == Some(true),
        Init::Absent { unsure } => !unsure,
    }
}

/// The pid namespace of process `pid` (the inode of /proc/PID/ns/pid), as owners' names
/// record it. Read it while the process lives: an exiting process has left its namespaces.
pub fn pidns_of(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/ns/pid");
    parse_pidns_link(Path::new(&path))
}

/// The pid of `pid` inside its own pid namespace (the last field of NSpid in its status).
fn ns_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// Whether `pid` is on its way out: its exit has begun (`PF_EXITING`, 0x4 in the flags, field
/// 9 of its stat), or a SIGKILL is pending for it (bit 9 of SigPnd or ShdPnd in its status:
/// queued by a parent-death signal, not yet acted on). The second closes the window between a
/// lab's death and its init's first step into exit.
fn dying(pid: i32) -> Option<bool> {
    const PF_EXITING: u64 = 0x4;
    const SIGKILL_BIT: u64 = 1 << (9 - 1);
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // After ')' the first field is field 3 (state), so flags (field 9) is the 7th (index 6).
    let flags: u64 = rest.split_whitespace().nth(6)?.parse().ok()?;
    if flags & PF_EXITING != 0 {
        return Some(true);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let pending = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & SIGKILL_BIT != 0)
    };
    Some(pending("SigPnd:") || pending("ShdPnd:"))
}

/// Field 22 (starttime) of /proc/PID/stat; fields are counted after the last ')' because the
/// command name (field 2) may contain spaces and parentheses.
fn parse_start_time(path: &Path, text: &str) -> Result<u64> {
    let bad = |detail: &str| Error::Parse { path: path.to_path_buf(), detail: detail.to_owned() };
    let rest = &text[text.rfind(')').ok_or_else(|| bad("no ')' after comm"))? + 1..];
    // After ')' the first field is field 3 (state), so starttime is the 20th (index 19).
    let field = rest.split_whitespace().nth(19).ok_or_else(|| bad("fewer than 22 fields"))?;
    field.parse().map_err(|_| bad("starttime is not a number"))
}

/// The inode of /proc/self/ns/pid ("pid:[4026531836]").
/// Whether this process is in the machine's initial pid namespace, where /proc shows every
/// process of the machine: its NSpid has one entry (a nested namespace adds one per level).
pub(crate) fn in_initial_pidns() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|pids| pids.split_whitespace().count() == 1)
}

fn own_pidns() -> Result<u64> {
    parse_pidns_link(Path::new("/proc/self/ns/pid"))
}

/// The inode a pid namespace link names ("pid:[4026531836]").
fn parse_pidns_link(path: &Path) -> Result<u64> {
    let link = std::fs::read_link(path).map_err(|e| Error::io("readlink", path, e))?;
    let text = link.to_string_lossy();
    text.strip_prefix("pid:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Parse { path: path.to_path_buf(), detail: format!("link {text:?}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip_even_when_the_name_has_dots() {
        let o = Owner { pid: 42, start: 123456, pidns: 4026531836 };
        let dir = o.dir_name("sup.v1");
        assert!(dir.starts_with("sup.v1.42.123456.4026531836."), "{dir}");
        assert_eq!(Owner::from_dir_name(&dir), Some(o));
    }

    #[test]
    fn foreign_names_are_not_parsed_as_owners() {
        for d in ["cgroup.procs", "x.1.2.3", "a.b.c.d.e", ".1.2.3.4", "user.slice"] {
            assert_eq!(Owner::from_dir_name(d), None, "{d}");
        }
    }

    #[test]
    fn start_time_is_read_past_a_comm_with_spaces_and_parens() {
        let stat = "77 (a b) c)) S 1 77 77 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 \
                    200 18446744073709551615";
        assert_eq!(parse_start_time(Path::new("s"), stat).unwrap(), 98765);
    }

    #[test]
    fn the_current_process_is_not_gone() {
        let me = Owner::current().unwrap();
        assert!(!me.is_gone());
        assert!(Owner { start: me.start + 1, ..me }.is_gone(), "a recycled pid counts as gone");
        assert!(!Owner { pidns: me.pidns + 1, ..me }.is_gone(), "other namespaces are not judged");
        assert!(!me.is_gone_or_dying());
        assert!(
            !Owner { pidns: me.pidns + 1_000_000, ..me }.is_gone_or_dying(),
            "an owner that was not pid 1 of its namespace is not judged"
        );
    }
}
