//! `exec_under_lock`: take an flock, then `exec` the real program, which inherits the lock.
//!
//! Models XMPPwocky/surely-this-cant-work (rvos) `scripts/qemu-lock.sh` before d32fae6 (bug
//! 0017, "Orphan QEMU processes persist after Ctrl-C or timeout"): open the lockfile on a
//! descriptor that is not close-on-exec (`exec 9>>$LOCKFILE`), `flock --nonblock`; when that
//! fails, read `pid=` from the file and, if that holder is dead (`kill -0`), remove the file and
//! retry once, else print "ERROR: ... already running" and exit 1; on success write
//! `pid=$$ target=... started=... user=...` and `exec "$@"` (l.69).
//!
//! Race window (O1): there is none to time; the shape is the bug. After the exec no parent is
//! left to clean up: the program holds the lock itself, so when the outer tool stops (SIGHUP to
//! another process group, SIGKILL of the wrapper's parent) the program keeps running, keeps the
//! lock, and the next run says "already running" (invariant I5, lock not free). Points:
//! `wrapper.lock_taken`, `wrapper.launched` (hit just before the exec).
//!
//! A faithful replica must keep: the non-blocking flock on an inherited descriptor, the
//! one-shot stale-holder recovery, the info line written through the path (truncating), and a
//! real `execve` (no fork). The fixed script is [`crate::exec_under_lock_fixed`].

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// The wrapper's options: `--lockfile PATH [--info TEXT] -- program args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    /// The lockfile (`.qemu.lock` in the original).
    pub lockfile: PathBuf,
    /// The `--info` text written to the lockfile (`target="..."`).
    pub info: String,
    /// The program to run under the lock.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl LockOptions {
    /// Parses `--lockfile PATH [--info TEXT] -- program args...`.
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Self, LegacyError> {
        let parsed = Args::parse(args, &["lockfile", "info"])?;
        let (program, args) = parsed.command()?;
        let lockfile = parsed
            .value("lockfile")
            .ok_or_else(|| LegacyError::Usage("--lockfile PATH is required".into()))?
            .into();
        let info = parsed
            .value("info")
            .map_or_else(|| "unknown".to_owned(), |v| v.to_string_lossy().into_owned());
        Ok(Self { lockfile, info, program, args })
    }

    fn lock_error(&self, source: std::io::Error) -> LegacyError {
        LegacyError::Lock { path: self.lockfile.display().to_string(), source }
    }
}

/// The script as a process: take the lock (or exit 1 "already running"), write the info line,
/// exec the program. Returns only when the exec failed: 127 (not found) or 126, as bash's `exec`.
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let opts =
        LockOptions::from_args(args).unwrap_or_else(|e| crate::cli::die("exec-under-lock", &e, 2));
    let _lock = take_lock(&opts);
    point!(wrapper.launched);
    // `exec "$@"`: the program replaces us and inherits the lock descriptor; nobody is left to
    // stop it or release the lock when the outer tool goes away (O1).
    let error = Command::new(&opts.program).args(&opts.args).exec();
    eprintln!("racelab-legacy exec-under-lock: exec {}: {error}", opts.program.to_string_lossy());
    if error.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }
}

/// Takes the lock as the script does, writes the info line, and returns the lock descriptor
/// (not close-on-exec: programs started from here inherit it). Exits 1 with the script's error
/// text when another live holder has it.
pub(crate) fn take_lock(opts: &LockOptions) -> File {
    let die = |e: LegacyError| -> ! { crate::cli::die("exec-under-lock", &e, 1) };
    let mut lock = try_lock(opts).unwrap_or_else(|e| die(e));
    if lock.is_none() {
        // Lock held: check whether the holder named in the file is still alive.
        let holder =
            std::fs::read_to_string(&opts.lockfile).ok().and_then(|text| holder_pid(&text));
        if let Some(pid) = holder
            && !os::probe_alive(pid)
        {
            // Holder is dead: remove the stale lockfile and retry once (a new inode).
            let _ = std::fs::remove_file(&opts.lockfile);
            lock = try_lock(opts).unwrap_or_else(|e| die(e));
        }
    }
    let Some(lock) = lock else {
        let holder_info = std::fs::read_to_string(&opts.lockfile).unwrap_or_default();
        let name = std::path::Path::new(&opts.program)
            .file_name()
            .map_or_else(|| "program".into(), |n| n.to_string_lossy());
        eprintln!(
            "============================================================\n\
             ERROR: {name} is already running for this project.\n\
             Another instance holds the lock: you cannot start a second one.\n\n\
             Lock holder: {}\nLockfile:    {}\n\
             ============================================================",
            holder_info.trim_end(),
            opts.lockfile.display()
        );
        std::process::exit(1)
    };
    // Lock acquired: write our info, truncating through the path (not through the fd).
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let line = format!(
        "pid={} target=\"{}\" started=\"{}\" user={user}\n",
        std::process::id(),
        opts.info,
        clock_hms()
    );
    if let Err(e) = std::fs::write(&opts.lockfile, line) {
        die(opts.lock_error(e));
    }
    point!(wrapper.lock_taken);
    lock
}

/// `exec 9>>"$LOCKFILE"; flock --nonblock 9`. `Ok(None)` when another holder has it.
fn try_lock(opts: &LockOptions) -> Result<Option<File>, LegacyError> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o666)
        .open(&opts.lockfile)
        .map_err(|e| opts.lock_error(e))?;
    // fd 9 of the script is not close-on-exec: whatever runs next inherits the lock.
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty())
        .map_err(|e| opts.lock_error(e.into()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(opts.lock_error(e.into())),
    }
}

/// `sed -n 's/^pid=\([0-9]*\).*/\1/p'`: the first `pid=` line's number.
fn holder_pid(text: &str) -> Option<i32> {
    let digits: String = text
        .lines()
        .find_map(|l| l.strip_prefix("pid="))?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `date '+%H:%M:%S'` (in UTC: no time-zone database here).
fn clock_hms() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_pid_reads_the_first_pid_line_like_sed() {
        assert_eq!(holder_pid("pid=123 target=\"x\"\n"), Some(123));
        assert_eq!(holder_pid("junk\npid=7\n"), Some(7));
        assert_eq!(holder_pid("target=x\n"), None);
    }

    #[test]
    fn options_need_a_lockfile_and_a_command() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(LockOptions::from_args(os(&["--", "true"])).is_err());
        let opts =
            LockOptions::from_args(os(&["--lockfile", "/tmp/l", "--", "true"])).expect("parse");
        assert_eq!(opts.info, "unknown");
        assert_eq!(opts.program, "true");
    }
}
