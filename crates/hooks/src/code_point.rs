//! Points at instructions of unmodified programs: `piano@0x19319c`,
//! `piano@store(piano::FORCE_KILLED, __rust_begin_short_backtrace)`.
//!
//! Some race windows of a black-box program hold no syscall: piano 0.14.0's duration thread
//! loads `CHILD_PID`, stores `FORCE_KILLED`, then calls `kill` with nothing in between that
//! seccomp could see. A code point names one instruction; the lab holds a thread there with an
//! instruction breakpoint (ptrace, see `racelab-blackbox`): the thread is held BEFORE the
//! instruction runs, and the point passes once the lab has stepped it over the instruction
//! (the store is done when the point counts as passed). In a schedule it is written
//! `program@site`:
//!
//! - `program` is the program image, as for syscall points (`dumb_init` for `dumb-init`).
//! - `0x19319c` is an address in the executable's own address space: its ELF virtual address,
//!   which for a position-independent executable is the offset from its load base. It is what
//!   `nm` and `objdump -d` print, not a file offset. It holds for one build of the program
//!   only.
//! - `store(GLOBAL)` or `store(GLOBAL, WITHIN)` names every instruction that writes the global
//!   `GLOBAL` (its symbol, demangled without the hash: `piano::FORCE_KILLED`), within the
//!   functions whose demangled name contains `WITHIN` (every function when omitted). The lab
//!   resolves it against the binary when the replay starts (`racelab_blackbox::locate`), so a
//!   schedule survives a rebuild. Each word runs up to the next `,` or `)` and holds no blank.
//!   Name the function the code ENDS UP in: a closure is usually inlined into std's thread
//!   entry, and a legacy-mangled symbol keeps no generic argument, so piano 0.14.0's thread
//!   closures are found as `piano@store(piano::FORCE_KILLED, __rust_begin_short_backtrace)`
//!   (exactly the duration and SIGINT threads' stores), not under `run_child` (which finds
//!   only run_child's own reset of the flag). A v0-mangled binary keeps the generic arguments
//!   (`__rust_begin_short_backtrace::<piano::run_child::{closure#0}, ()>`).
//!
//! Code points are plain `Copy` data: names are interned like program names.

use std::fmt;

use crate::syscall_point::intern;

/// Where a code point is, in its program's executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeSite {
    /// One instruction, by its ELF virtual address (for a PIE: the offset from its load base).
    Address(u64),
    /// Every instruction that stores to a global, located in the binary at replay time.
    Store {
        /// The global's demangled symbol name without hash (`piano::FORCE_KILLED`).
        global: &'static str,
        /// Only in functions whose demangled name contains this text; `None`: anywhere.
        within: Option<&'static str>,
    },
}

/// One code point: an instruction of a program image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodePoint {
    /// The program image (`piano`), interned.
    pub program: &'static str,
    /// The instruction, or how to find it.
    pub site: CodeSite,
}

impl CodePoint {
    /// The instruction at ELF virtual address `address` of `program`.
    pub fn address(program: &str, address: u64) -> CodePoint {
        CodePoint { program: intern(program), site: CodeSite::Address(address) }
    }

    /// The stores to `global` of `program`, within functions whose name contains `within`.
    pub fn store(program: &str, global: &str, within: Option<&str>) -> CodePoint {
        CodePoint {
            program: intern(program),
            site: CodeSite::Store { global: intern(global), within: within.map(intern) },
        }
    }
}

/// Whether `c` may appear in a word of `store(...)`: anything but blanks, `,`, `(`, `)`, `;`.
pub(crate) fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, ',' | '(' | ')' | ';')
}

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@", self.program)?;
        match self.site {
            CodeSite::Address(a) => write!(f, "{a:#x}"),
            CodeSite::Store { global, within: None } => write!(f, "store({global})"),
            CodeSite::Store { global, within: Some(w) } => write!(f, "store({global}, {w})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_points_print_in_the_schedule_form() {
        assert_eq!(CodePoint::address("piano", 0x19319c).to_string(), "piano@0x19319c");
        assert_eq!(
            CodePoint::store("piano", "piano::FORCE_KILLED", Some("run_child::{{closure}}"))
                .to_string(),
            "piano@store(piano::FORCE_KILLED, run_child::{{closure}})"
        );
        assert_eq!(
            CodePoint::store("piano", "piano::FORCE_KILLED", None).to_string(),
            "piano@store(piano::FORCE_KILLED)"
        );
    }
}
