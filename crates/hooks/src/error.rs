//! Typed errors of the hooks crate: schedule text that does not parse, names that are not in the
//! catalog, schedules the controller cannot enforce, and arming mistakes.

use thiserror::Error;

/// Everything that can go wrong while parsing a schedule or arming the controller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HookError {
    /// A schedule names a point that is not in [`crate::points::ALL`] (usually a typo).
    #[error("unknown point `{name}`; known points: {}", known.join(", "))]
    UnknownPoint {
        /// The name as written.
        name: String,
        /// Every point of the catalog, in declaration order.
        known: Vec<&'static str>,
    },
    /// A schedule names a syscall point whose syscall this architecture does not have.
    #[error(
        "unknown syscall `{syscall}` in point `{point}` (a syscall point is `program.syscall`, named as the kernel names it: clone, wait4, kill, rt_sigaction, ...)"
    )]
    UnknownSyscall {
        /// The point as written.
        point: String,
        /// The syscall name as written.
        syscall: String,
    },
    /// A code point's site is malformed (`program@0x1234`, `program@store(global, within)`).
    #[error("code point `{point}`: {reason}")]
    BadCodePoint {
        /// The point as written.
        point: String,
        /// What is wrong.
        reason: String,
    },
    /// A syscall point's arguments do not fit its syscall.
    #[error("point `{point}`: {reason}")]
    BadSyscallArgs {
        /// The point as written.
        point: String,
        /// What is wrong.
        reason: String,
    },
    /// The in-process controller was armed with a syscall or code point: those are enforced by
    /// the black-box runner (seccomp user notification, ptrace), not by `point!`.
    #[error(
        "`{point}` is a point of a black-box program; the hook controller only enforces hook points (run it with --program)"
    )]
    SyscallPointInHookSchedule {
        /// The point.
        point: String,
    },
    /// The schedule text is not well formed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The schedule parses but cannot be enforced (a cycle, an occurrence 0, too many edges).
    #[error("invalid schedule: {reason}")]
    InvalidSchedule {
        /// What is wrong, naming the offending edge or point.
        reason: String,
    },
    /// [`arm`](crate::arm) was called while another controller is armed in this process.
    #[error("a hook controller is already armed in this process; call Armed::finish first")]
    AlreadyArmed,
    /// Threads of the previous run are still inside a point (they did not drain in time).
    #[error("{inflight} thread(s) of the previous run are still inside a point; cannot re-arm")]
    Busy {
        /// How many threads are still inside the hit path.
        inflight: u32,
    },
    /// A fixed capacity of the controller would be exceeded.
    #[error("{what}: {requested} requested, at most {max} supported")]
    Capacity {
        /// Which capacity (edges, trace records).
        what: &'static str,
        /// What the caller asked for.
        requested: usize,
        /// The compiled-in maximum.
        max: usize,
    },
}

/// The schedule text is not well formed: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("schedule line {line}, column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte offset into the text.
    pub offset: usize,
    /// What the parser expected at that position.
    pub expected: String,
    /// What it found instead (quoted text, or `end of input`).
    pub found: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_point_lists_the_known_points() {
        let e = HookError::UnknownPoint {
            name: "main.spwaned".into(),
            known: vec!["main.spawned", "main.reaped"],
        };
        let s = e.to_string();
        assert!(s.contains("`main.spwaned`"), "{s}");
        assert!(s.contains("main.spawned, main.reaped"), "{s}");
    }
}
