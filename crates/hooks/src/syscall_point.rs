//! Points at syscall boundaries of unmodified programs: `tini.setpgid`, `piano.kill(SIGKILL)`,
//! `piano.kill(SIGKILL).returned`, `dumb_init.kill(_, SIGTERM)#2`.
//!
//! A hook point ([`crate::Point`]) is compiled into a design; a syscall point names the ENTRY
//! of a syscall made by a program the lab did not build (the lab parks the calling thread
//! there with seccomp user notification, see `racelab-blackbox`). In a schedule it is written
//! `program.syscall`, optionally followed by argument matches in parentheses and by
//! `.returned` or `.exit`:
//!
//! - `program` is the program's image as the lab names it: the file name of the executable the
//!   calling thread runs, with `-` written `_` (`dumb_init` for `/usr/bin/dumb-init`). The
//!   forked child of a program runs the same image until it calls `execve`: `tini.setpgid`
//!   is tini's child isolating itself, before it becomes the workload.
//! - `syscall` is the kernel's name for it on this architecture (`clone`, `clone3`, `wait4`,
//!   `rt_sigaction`, ...): an unknown name is an error.
//! - Argument matches, positional: `_` matches anything, an integer matches that value (the
//!   register compared as a 64-bit value, or as 32 bits for a negative one), and a signal name
//!   (`SIGKILL`, `SIGTERM`, ...) matches the syscall's signal argument wherever it is (`kill`'s
//!   second, `tgkill`'s third, `rt_sigaction`'s first), so `kill(SIGKILL)` is
//!   `kill(_, SIGKILL)`. The canonical form prints every match at its position.
//! - `.returned` is the moment the thread came back from that syscall: the lab knows it when
//!   the same thread reaches its next intercepted syscall (or ends). `a.returned < b` makes `b`
//!   wait until the syscall `a` has done its work, not only until it was let go. It can only be
//!   waited for (before `<`, or in `await(...)`), never held.
//! - `.exit` is the syscall's EXIT, held: the syscall has done its work (a `clone` has created
//!   the child and knows its PID), the thread has not returned to user space yet. A signal the
//!   lab sends meanwhile is handled on the way back, before the program's next instruction
//!   (`timeout.clone.exit`: the parent's SIGTERM handler runs before `monitored_pid = fork()`
//!   stores the PID). Seccomp sees entries only: the lab holds an exit with ptrace (a
//!   syscall-exit-stop, see `racelab-blackbox`), so a schedule with an `.exit` point traces its
//!   program.
//!
//! Syscall points are plain `Copy` data: program names are interned (each distinct name is
//! kept once for the life of the process).

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

pub use syscalls::Sysno;

/// How one syscall argument must look for the point to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgMatch {
    /// Any value (`_`).
    Any,
    /// Exactly this value.
    Value(i64),
    /// This signal number, written by name.
    Signal(i32),
}

impl ArgMatch {
    /// The value to compare the register with, if any.
    pub fn value(self) -> Option<i64> {
        match self {
            ArgMatch::Any => None,
            ArgMatch::Value(v) => Some(v),
            ArgMatch::Signal(s) => Some(i64::from(s)),
        }
    }

    /// Whether the register `raw` matches. A negative value matches its 64-bit or its
    /// sign-extended 32-bit form (a C `int` such as `kill`'s pid).
    pub fn matches(self, raw: u64) -> bool {
        match self.value() {
            None => true,
            Some(v) => raw == v as u64 || (v < 0 && raw == u64::from(v as i32 as u32)),
        }
    }
}

impl fmt::Display for ArgMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgMatch::Any => f.write_str("_"),
            ArgMatch::Value(v) => write!(f, "{v}"),
            ArgMatch::Signal(s) => f.write_str(signal_name(*s).unwrap_or("SIG?")),
        }
    }
}

/// The most arguments a syscall has.
pub const MAX_ARGS: usize = 6;

/// Which moment of a syscall a point names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Moment {
    /// The entry: the thread is held before the syscall runs (`program.syscall`).
    #[default]
    Entry,
    /// The exit, held: the syscall ran, the thread has not returned to user space
    /// (`program.syscall.exit`; needs ptrace).
    Exit,
    /// The return, observed: the same thread reached its next intercepted syscall or ended
    /// (`program.syscall.returned`; can be waited for, never held).
    Returned,
}

/// One syscall point. Two points are equal when they name the same program, syscall, argument
/// matches and moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyscallPoint {
    /// The program image (`tini`, `dumb_init`, `piano`), interned.
    pub program: &'static str,
    /// The syscall.
    pub syscall: Sysno,
    /// Argument matches, by position; trailing `Any`s are not printed.
    pub args: [ArgMatch; MAX_ARGS],
    /// Entry, exit or return.
    pub moment: Moment,
}

impl SyscallPoint {
    /// The entry of `syscall` in `program`, any arguments.
    pub fn new(program: &str, syscall: Sysno) -> SyscallPoint {
        SyscallPoint {
            program: intern(program),
            syscall,
            args: [ArgMatch::Any; MAX_ARGS],
            moment: Moment::Entry,
        }
    }

    /// Whether a syscall with these argument registers matches the argument matches.
    pub fn args_match(&self, raw: &[u64; MAX_ARGS]) -> bool {
        self.args.iter().zip(raw).all(|(m, r)| m.matches(*r))
    }

    /// The same point at the syscall's return (`.returned`).
    pub fn returning(self) -> SyscallPoint {
        self.at(Moment::Returned)
    }

    /// The same point at the syscall's held exit (`.exit`).
    pub fn exiting(self) -> SyscallPoint {
        self.at(Moment::Exit)
    }

    /// The same point at the syscall's entry.
    pub fn entry(self) -> SyscallPoint {
        self.at(Moment::Entry)
    }

    /// The same point at `moment`.
    pub fn at(mut self, moment: Moment) -> SyscallPoint {
        self.moment = moment;
        self
    }

    /// Whether this is the `.returned` form (observed, never held).
    pub fn is_returned(&self) -> bool {
        self.moment == Moment::Returned
    }

    /// Whether this is the `.exit` form (held with ptrace).
    pub fn is_exit(&self) -> bool {
        self.moment == Moment::Exit
    }
}

impl fmt::Display for SyscallPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.program, self.syscall.name())?;
        let used = self.args.iter().rposition(|a| *a != ArgMatch::Any).map_or(0, |i| i + 1);
        if used > 0 {
            f.write_str("(")?;
            for (i, a) in self.args[..used].iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{a}")?;
            }
            f.write_str(")")?;
        }
        match self.moment {
            Moment::Entry => {}
            Moment::Exit => f.write_str(".exit")?,
            Moment::Returned => f.write_str(".returned")?,
        }
        Ok(())
    }
}

/// Keeps one copy of each program name for the life of the process.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(found) = set.get(name) {
        return found;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The standard signals by name (Linux numbering, x86-64 and aarch64 alike).
const SIGNALS: [(&str, i32); 31] = [
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// The number of a signal written by name (`SIGTERM` -> 15).
pub fn signal_number(name: &str) -> Option<i32> {
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The name of a standard signal (15 -> `SIGTERM`).
pub fn signal_name(number: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|(_, s)| *s == number).map(|(n, _)| *n)
}

/// Which argument of `syscall` is a signal number, if one is.
pub fn signal_arg(syscall: Sysno) -> Option<usize> {
    match syscall.name() {
        "kill" | "tkill" | "pidfd_send_signal" | "rt_sigqueueinfo" => Some(1),
        "tgkill" | "rt_tgsigqueueinfo" => Some(2),
        "rt_sigaction" => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_prints_its_matches_at_their_positions() {
        let mut p = SyscallPoint::new("piano", "kill".parse().unwrap());
        p.args[1] = ArgMatch::Signal(9);
        assert_eq!(p.to_string(), "piano.kill(_, SIGKILL)");
        assert_eq!(p.returning().to_string(), "piano.kill(_, SIGKILL).returned");
        assert_eq!(p.exiting().to_string(), "piano.kill(_, SIGKILL).exit");
        assert_eq!(p.exiting().entry(), p);
        assert_eq!(
            SyscallPoint::new("tini", "setpgid".parse().unwrap()).to_string(),
            "tini.setpgid"
        );
    }

    #[test]
    fn negative_values_match_a_c_int_register() {
        assert!(ArgMatch::Value(-1).matches(u64::MAX));
        assert!(ArgMatch::Value(-1).matches(0xffff_ffff));
        assert!(!ArgMatch::Value(-1).matches(1));
        assert!(ArgMatch::Signal(9).matches(9));
        assert!(ArgMatch::Any.matches(12345));
    }

    #[test]
    fn program_names_are_interned_once() {
        let a = intern("dumb_init");
        let b = intern(&String::from("dumb_init"));
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn signals_round_trip_by_name() {
        for n in 1..=31 {
            assert_eq!(signal_number(signal_name(n).unwrap()), Some(n));
        }
        assert_eq!(signal_arg("tgkill".parse().unwrap()), Some(2));
        assert_eq!(signal_arg("wait4".parse().unwrap()), None);
    }
}
