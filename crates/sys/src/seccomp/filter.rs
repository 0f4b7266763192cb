//! The filter description ([`Filter`], [`Rule`], [`ArgCond`]) and its compiler to a classic-BPF
//! [`Program`].
//!
//! Why hand-rolled: seccompiler 0.5 (rust-vmm, the latest release) has no
//! `SECCOMP_RET_USER_NOTIF` action (merged upstream in 2026, unreleased), hard-codes
//! `SECCOMP_RET_KILL_PROCESS` for a foreign architecture (we must ALLOW: this is an observation
//! point, not a sandbox), does not exclude x32 syscall numbers, and installs without
//! `SECCOMP_FILTER_FLAG_NEW_LISTENER`, so it cannot return the listener fd. What the lab needs
//! is small: equality (optionally masked) on arguments, one action per rule. Syscall numbers and
//! names come from the `syscalls` crate ([`Sysno`], the native architecture's table).
//!
//! The program, in order:
//! 1. `arch != AUDIT_ARCH_<native>` → ALLOW (an i386 `int 0x80` call on x86-64 uses other
//!    numbers: never mistake it for a rule's syscall).
//! 2. x86-64 only: `nr >= 0x4000_0000` (the x32 ABI bit) → ALLOW.
//! 3. One block per syscall that has rules, in the order of their first rule:
//!    `nr != N` → skip the block; inside, each rule's conditions in order, the first rule whose
//!    conditions all hold returns its action; no rule holds → ALLOW.
//! 4. ALLOW.
//!
//! A syscall with no rule costs the architecture check plus one comparison per block. The
//! compiler inlines every ALLOW instead of jumping to a shared one, so every conditional jump is
//! short (classic BPF jump offsets are 8 bits); a block longer than 255 instructions is skipped
//! with an unconditional `ja` (32-bit offset) instead.

use std::fmt;

use nix::errno::Errno;
use syscalls::Sysno;

/// `AUDIT_ARCH_*` of the architecture this crate is compiled for (uapi `linux/audit.h`:
/// `EM_*` | `__AUDIT_ARCH_64BIT` | `__AUDIT_ARCH_LE`).
#[cfg(target_arch = "x86_64")]
pub const NATIVE_AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `AUDIT_ARCH_*` of the architecture this crate is compiled for (uapi `linux/audit.h`:
/// `EM_*` | `__AUDIT_ARCH_64BIT` | `__AUDIT_ARCH_LE`).
#[cfg(target_arch = "aarch64")]
pub const NATIVE_AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// `__X32_SYSCALL_BIT`: x32 syscalls arrive with `AUDIT_ARCH_X86_64` and this bit set.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data` (uapi `linux/seccomp.h`).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;
/// Little-endian (both supported architectures): the low half of `args[i]` comes first.
const LOW_HALF: u32 = 0;
const HIGH_HALF: u32 = 4;

/// `BPF_MAXINSNS`: the kernel refuses longer programs.
const MAX_INSNS: usize = 4096;

/// One condition on a syscall argument: `(args[index] & mask) == value`.
///
/// The kernel hands seccomp the full 64-bit argument registers. For a C argument narrower than
/// 64 bits (`int`, `pid_t`, `unsigned`) the x86-64 and aarch64 ABIs leave the upper half of the
/// register unspecified and the kernel ignores it: compare such arguments with [`ArgCond::eq32`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCond {
    index: u8,
    mask: u64,
    value: u64,
}

impl ArgCond {
    /// `args[index] == value`, all 64 bits (pointers, `long`, `size_t`, clone flags).
    pub const fn eq(index: u8, value: u64) -> Self {
        ArgCond { index, mask: u64::MAX, value }
    }

    /// The low 32 bits of `args[index]` equal `value`: for `int`-sized arguments such as
    /// `kill`'s `pid` and `sig` (a negative `pid_t` is passed as `(-5i32) as u32`).
    pub const fn eq32(index: u8, value: u32) -> Self {
        ArgCond { index, mask: u32::MAX as u64, value: value as u64 }
    }

    /// `(args[index] & mask) == value`, e.g. `clone` flags without `CLONE_THREAD`:
    /// `masked_eq(0, CLONE_THREAD, 0)`. A `value` with bits outside `mask` never matches.
    pub const fn masked_eq(index: u8, mask: u64, value: u64) -> Self {
        ArgCond { index, mask, value }
    }

    /// The argument index (0..=5).
    pub const fn index(&self) -> u8 {
        self.index
    }

    /// Whether `args` satisfies this condition (the reference semantics the compiled program
    /// implements).
    pub fn holds(&self, args: &[u64; 6]) -> bool {
        args.get(usize::from(self.index)).is_some_and(|a| a & self.mask == self.value)
    }

    fn satisfiable(&self) -> bool {
        self.value & !self.mask == 0
    }
}

/// What a matching syscall gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `SECCOMP_RET_USER_NOTIF`: the thread parks at syscall entry until the listener answers.
    Notify,
    /// `SECCOMP_RET_ERRNO`: the syscall fails at once with this errno, no notification (e.g.
    /// `clone3` → `ENOSYS`, so glibc falls back to `clone`, whose flags a rule can inspect).
    Errno(Errno),
}

impl Action {
    fn ret_value(self) -> u32 {
        match self {
            Action::Notify => libc::SECCOMP_RET_USER_NOTIF,
            Action::Errno(e) => libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA),
        }
    }
}

/// One rule: a syscall, conditions on its arguments (all must hold), and an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    sysno: Sysno,
    conds: Vec<ArgCond>,
    action: Action,
}

impl Rule {
    /// Notify the listener on every call of `sysno` (narrow it with [`Rule::when`]).
    pub fn notify(sysno: Sysno) -> Self {
        Rule { sysno, conds: Vec::new(), action: Action::Notify }
    }

    /// Fail every call of `sysno` with `errno`, in the filter itself (no notification).
    pub fn errno(sysno: Sysno, errno: Errno) -> Self {
        Rule { sysno, conds: Vec::new(), action: Action::Errno(errno) }
    }

    /// Adds a condition; the rule matches only when all its conditions hold.
    pub fn when(mut self, cond: ArgCond) -> Self {
        self.conds.push(cond);
        self
    }

    /// The syscall this rule is about.
    pub fn sysno(&self) -> Sysno {
        self.sysno
    }

    /// The rule's action.
    pub fn action(&self) -> Action {
        self.action
    }

    fn matches(&self, args: &[u64; 6]) -> bool {
        self.conds.iter().all(|c| c.holds(args))
    }
}

/// A list of rules. A syscall whose first matching rule (in the order given) is found gets that
/// rule's action; every other syscall is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    rules: Vec<Rule>,
}

/// Why a [`Filter`] does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// An argument index outside 0..=5.
    #[error("rule for {sysno}: argument index {index} (syscalls have arguments 0..=5)")]
    ArgIndex {
        /// The rule's syscall.
        sysno: Sysno,
        /// The bad index.
        index: u8,
    },
    /// An errno action outside 1..=4095.
    #[error("rule for {sysno}: errno {errno} is outside 1..=4095")]
    Errno {
        /// The rule's syscall.
        sysno: Sysno,
        /// The bad errno value.
        errno: i32,
    },
    /// A rule with so many conditions that its jumps do not fit classic BPF's 8-bit offsets.
    #[error("rule for {sysno}: too many conditions for one rule")]
    TooManyConditions {
        /// The rule's syscall.
        sysno: Sysno,
    },
    /// The program exceeds `BPF_MAXINSNS` (4096).
    #[error("the filter compiles to {len} instructions, more than the kernel's 4096")]
    TooLong {
        /// The program's length.
        len: usize,
    },
}

impl Filter {
    /// An empty filter (allows everything).
    pub fn new() -> Self {
        Filter::default()
    }

    /// Appends a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What the compiled program returns (`SECCOMP_RET_*`) for a call of syscall `nr` with
    /// `args` on architecture `arch`: the reference semantics, computed without BPF.
    pub fn evaluate(&self, arch: u32, nr: i32, args: &[u64; 6]) -> u32 {
        if arch != NATIVE_AUDIT_ARCH {
            return libc::SECCOMP_RET_ALLOW;
        }
        self.rules
            .iter()
            .find(|r| r.sysno.id() == nr && r.matches(args))
            .map_or(libc::SECCOMP_RET_ALLOW, |r| r.action.ret_value())
    }

    /// Compiles to a classic-BPF program (see the module docs for its shape). Allocates: call
    /// it before `fork`, and install the result with [`super::install_program`].
    pub fn compile(&self) -> Result<Program, FilterError> {
        for rule in &self.rules {
            if let Some(c) = rule.conds.iter().find(|c| c.index > 5) {
                return Err(FilterError::ArgIndex { sysno: rule.sysno, index: c.index });
            }
            if let Action::Errno(e) = rule.action
                && !(1..=4095).contains(&(e as i32))
            {
                return Err(FilterError::Errno { sysno: rule.sysno, errno: e as i32 });
            }
        }
        let mut prog = vec![
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, OFF_ARCH),
            jump(libc::BPF_JEQ, NATIVE_AUDIT_ARCH, 1, 0),
            ret(libc::SECCOMP_RET_ALLOW),
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, OFF_NR),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            prog.push(jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1));
            prog.push(ret(libc::SECCOMP_RET_ALLOW));
        }
        let mut seen: Vec<Sysno> = Vec::new();
        for sysno in self.rules.iter().map(|r| r.sysno) {
            if seen.contains(&sysno) {
                continue;
            }
            seen.push(sysno);
            let block = compile_block(self.rules.iter().filter(|r| r.sysno == sysno))?;
            // `nr` is still in A here: a block is entered only on its own number and never
            // falls through to the next block (it ends with ALLOW).
            let nr = sysno.id() as u32;
            match u8::try_from(block.len()) {
                Ok(skip) => prog.push(jump(libc::BPF_JEQ, nr, 0, skip)),
                Err(_) => {
                    prog.push(jump(libc::BPF_JEQ, nr, 1, 0));
                    prog.push(stmt(libc::BPF_JMP | libc::BPF_JA, block.len() as u32));
                }
            }
            prog.extend(block);
        }
        prog.push(ret(libc::SECCOMP_RET_ALLOW));
        if prog.len() > MAX_INSNS {
            return Err(FilterError::TooLong { len: prog.len() });
        }
        Ok(Program { insns: prog.into_boxed_slice() })
    }
}

/// The rules of one syscall: each rule's conditions (a failed one jumps to the next rule), its
/// action, and a final ALLOW.
fn compile_block<'a>(
    rules: impl Iterator<Item = &'a Rule>,
) -> Result<Vec<libc::sock_filter>, FilterError> {
    let mut block = Vec::new();
    for rule in rules {
        if !rule.conds.iter().all(ArgCond::satisfiable) {
            continue;
        }
        let mut fails = Vec::new();
        for cond in &rule.conds {
            let arg = OFF_ARGS + 8 * u32::from(cond.index);
            let halves = [
                (LOW_HALF, cond.mask as u32, cond.value as u32),
                (HIGH_HALF, (cond.mask >> 32) as u32, (cond.value >> 32) as u32),
            ];
            for (half, mask, value) in halves {
                if mask == 0 {
                    continue; // (x & 0) == 0 always holds
                }
                block.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, arg + half));
                if mask != u32::MAX {
                    block.push(stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, mask));
                }
                fails.push(block.len());
                block.push(jump(libc::BPF_JEQ, value, 0, 0));
            }
        }
        block.push(ret(rule.action.ret_value()));
        let next_rule = block.len();
        for at in fails {
            block[at].jf = u8::try_from(next_rule - at - 1)
                .map_err(|_| FilterError::TooManyConditions { sysno: rule.sysno })?;
        }
        if rule.conds.is_empty() {
            break; // later rules of this syscall can never be reached
        }
    }
    block.push(ret(libc::SECCOMP_RET_ALLOW));
    Ok(block)
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(op: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | op | libc::BPF_K) as u16, jt, jf, k }
}

fn ret(k: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, k)
}

/// A compiled filter: classic-BPF instructions ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
/// Build it before `fork`; installing it allocates nothing.
#[derive(Clone)]
pub struct Program {
    insns: Box<[libc::sock_filter]>,
}

impl Program {
    /// The instructions.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.insns
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program").field("len", &self.insns.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic-BPF program over a `seccomp_data`, as the kernel does, for the instructions
    /// the compiler emits. Panics on anything else or on a jump out of the program.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: i32, args: &[u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let insn = prog.get(pc).unwrap_or_else(|| panic!("pc {pc} ran off the program"));
            let code = u32::from(insn.code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let k = insn.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += insn.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if acc == insn.k { insn.jt } else { insn.jf });
                }
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => {
                    pc += usize::from(if acc >= insn.k { insn.jt } else { insn.jf });
                }
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;
    const ARCH: u32 = NATIVE_AUDIT_ARCH;

    fn kill_args(pid: i32, sig: i32) -> [u64; 6] {
        // As a register holds them after a sign-extending move.
        [pid as i64 as u64, sig as i64 as u64, 0, 0, 0, 0]
    }

    fn kill9() -> Filter {
        Filter::new().rule(Rule::notify(Sysno::kill).when(ArgCond::eq32(1, 9)))
    }

    #[test]
    fn a_syscall_without_rule_is_allowed() {
        let p = kill9().compile().unwrap();
        assert_eq!(run(p.instructions(), ARCH, Sysno::getpid.id(), &[0; 6]), ALLOW);
        assert_eq!(run(p.instructions(), ARCH, Sysno::tgkill.id(), &kill_args(1, 9)), ALLOW);
    }

    #[test]
    fn a_matching_syscall_notifies_only_when_its_argument_condition_holds() {
        let p = kill9().compile().unwrap();
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &kill_args(42, 9)), NOTIFY);
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &kill_args(42, 0)), ALLOW);
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &kill_args(-42, 15)), ALLOW);
    }

    #[test]
    fn eq32_ignores_the_upper_half_of_the_register() {
        let p = kill9().compile().unwrap();
        let mut args = kill_args(1, 9);
        args[1] |= 0xdead_beef_0000_0000;
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &args), NOTIFY);
        let p = Filter::new().rule(Rule::notify(Sysno::kill).when(ArgCond::eq(1, 9))).compile();
        assert_eq!(run(p.unwrap().instructions(), ARCH, Sysno::kill.id(), &args), ALLOW);
    }

    #[test]
    fn a_foreign_architecture_and_x32_numbers_are_allowed() {
        let p = Filter::new().rule(Rule::notify(Sysno::kill)).compile().unwrap();
        let i386 = 3 | 0x4000_0000; // AUDIT_ARCH_I386
        assert_eq!(run(p.instructions(), i386, Sysno::kill.id(), &[0; 6]), ALLOW);
        #[cfg(target_arch = "x86_64")]
        {
            let x32_kill = Sysno::kill.id() | 0x4000_0000;
            assert_eq!(run(p.instructions(), ARCH, x32_kill, &[0; 6]), ALLOW);
        }
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &[0; 6]), NOTIFY);
    }

    #[test]
    fn clone_without_clone_thread_notifies_and_clone3_fails_with_enosys() {
        let thread = libc::CLONE_THREAD as u64;
        let f = Filter::new()
            .rule(Rule::errno(Sysno::clone3, Errno::ENOSYS))
            .rule(Rule::notify(Sysno::clone).when(ArgCond::masked_eq(0, thread, 0)));
        let p = f.compile().unwrap();
        let fork_flags = [libc::SIGCHLD as u64, 0, 0, 0, 0, 0];
        let thread_flags = [(libc::CLONE_VM | libc::CLONE_THREAD) as u64, 0, 0, 0, 0, 0];
        assert_eq!(run(p.instructions(), ARCH, Sysno::clone.id(), &fork_flags), NOTIFY);
        assert_eq!(run(p.instructions(), ARCH, Sysno::clone.id(), &thread_flags), ALLOW);
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        assert_eq!(run(p.instructions(), ARCH, Sysno::clone3.id(), &[0; 6]), enosys);
    }

    #[test]
    fn the_first_matching_rule_of_a_syscall_decides() {
        let f = Filter::new()
            .rule(Rule::errno(Sysno::kill, Errno::EPERM).when(ArgCond::eq32(0, 1)))
            .rule(Rule::notify(Sysno::kill))
            .rule(Rule::errno(Sysno::kill, Errno::ESRCH)); // unreachable
        let p = f.compile().unwrap();
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &kill_args(1, 9)), eperm);
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &kill_args(2, 9)), NOTIFY);
    }

    #[test]
    fn a_block_longer_than_255_instructions_is_skipped_with_a_long_jump() {
        let mut f = Filter::new();
        for pid in 0..100u32 {
            f = f.rule(Rule::notify(Sysno::kill).when(ArgCond::eq(0, u64::from(pid) << 32)));
        }
        f = f.rule(Rule::notify(Sysno::setsid));
        let p = f.compile().unwrap();
        assert!(p.instructions().len() > 300, "{}", p.instructions().len());
        assert_eq!(run(p.instructions(), ARCH, Sysno::setsid.id(), &[0; 6]), NOTIFY);
        assert_eq!(
            run(p.instructions(), ARCH, Sysno::kill.id(), &[99 << 32, 0, 0, 0, 0, 0]),
            NOTIFY
        );
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &[1, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(p.instructions(), ARCH, Sysno::getpid.id(), &[0; 6]), ALLOW);
    }

    #[test]
    fn the_compiled_program_agrees_with_the_reference_semantics() {
        let f = Filter::new()
            .rule(Rule::notify(Sysno::kill).when(ArgCond::eq32(1, 9)))
            .rule(Rule::notify(Sysno::setpgid).when(ArgCond::eq32(0, 0)).when(ArgCond::eq32(1, 0)))
            .rule(Rule::notify(Sysno::wait4).when(ArgCond::masked_eq(2, 0x8000_0001, 1)))
            .rule(Rule::errno(Sysno::clone3, Errno::ENOSYS))
            .rule(Rule::notify(Sysno::rt_sigaction).when(ArgCond::masked_eq(0, 0xf, 0x10)))
            .rule(Rule::notify(Sysno::setsid));
        let p = f.compile().unwrap();
        let values = [0u64, 1, 9, 0x8000_0001, 0x1_0000_0009, u64::MAX, 0x10, 0xffff_ffff];
        let syscalls = [Sysno::kill, Sysno::setpgid, Sysno::wait4, Sysno::clone3, Sysno::getpid]
            .into_iter()
            .chain([Sysno::rt_sigaction, Sysno::setsid]);
        for sysno in syscalls {
            for &a in &values {
                for &b in &values {
                    for &c in &values {
                        let args = [a, b, c, 0, 0, 0];
                        assert_eq!(
                            run(p.instructions(), ARCH, sysno.id(), &args),
                            f.evaluate(ARCH, sysno.id(), &args),
                            "{sysno} {args:x?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_rules_are_refused_with_their_reason() {
        let bad_index = Filter::new().rule(Rule::notify(Sysno::kill).when(ArgCond::eq(6, 0)));
        assert_eq!(
            bad_index.compile().unwrap_err(),
            FilterError::ArgIndex { sysno: Sysno::kill, index: 6 }
        );
        let mut many = Rule::notify(Sysno::kill);
        for i in 0..50 {
            many = many.when(ArgCond::masked_eq(0, 0xffff_0000_ffff, i));
        }
        assert_eq!(
            Filter::new().rule(many).compile().unwrap_err(),
            FilterError::TooManyConditions { sysno: Sysno::kill }
        );
    }

    #[test]
    fn an_empty_filter_allows_everything() {
        let p = Filter::new().compile().unwrap();
        assert_eq!(run(p.instructions(), ARCH, Sysno::kill.id(), &kill_args(1, 9)), ALLOW);
    }
}
