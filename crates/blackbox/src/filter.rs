//! The seccomp filter of one replay: a rule per syscall point of the schedule, the observation
//! rules the oracle reads (every SIGKILL a target sends), and the probes that show a thread came
//! back from a syscall when the schedule waits for a return.

use racelab_hooks::{SyscallPoint, Sysno};
use racelab_sys::seccomp::{ArgCond, Filter, Rule};

/// The syscalls whose entry shows that a thread came back from its previous one: what threads
/// of supervisors do next (sleep, wait, signal, write a line, end). Notified only when the
/// schedule waits for a return (`p.returned`): each costs a round trip through the lab.
pub const PROBES: &[&str] = &[
    "futex",
    "write",
    "writev",
    "read",
    "clock_nanosleep",
    "nanosleep",
    "wait4",
    "waitid",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "sigaltstack",
    "munmap",
    "mmap",
    "madvise",
    "close",
    "poll",
    "ppoll",
    "epoll_wait",
    "epoll_pwait",
    "kill",
    "tgkill",
    "getpid",
    "gettid",
    "sched_yield",
    "exit",
    "exit_group",
];

/// The signals whose sending the lab observes at the syscall: SIGHUP, SIGINT, SIGKILL, SIGTERM.
pub const OBSERVED: [i32; 4] = [1, 2, 9, 15];

fn sysno(name: &str) -> Option<Sysno> {
    name.parse().ok()
}

/// The rule that notifies exactly the syscalls `p` matches (at the filter's level: the syscall
/// and its argument values; the program image is told apart by the session).
fn rule(p: &SyscallPoint) -> Rule {
    let mut r = Rule::notify(p.syscall);
    for (i, m) in p.args.iter().enumerate() {
        let Some(v) = m.value() else { continue };
        let index = i as u8;
        // A value that fits a C int (a pid, a signal, flags) is compared on the low 32 bits:
        // the upper half of an int register is not defined. The session checks the exact match
        // (`SyscallPoint::args_match`) on what the filter lets through.
        r = match i32::try_from(v) {
            Ok(small) => r.when(ArgCond::eq32(index, small as u32)),
            Err(_) => r.when(ArgCond::eq(index, v as u64)),
        };
    }
    r
}

/// The filter for `points`, with the SIGKILL observation rules and, when `returns` is set, the
/// probes.
pub fn filter_for(points: &[SyscallPoint], returns: bool) -> Filter {
    let mut f = Filter::new();
    for p in points {
        f = f.rule(rule(p));
    }
    // Ground truth for the oracle, whatever the schedule says: every SIGKILL the target sends
    // (I2), and every stop signal it forwards (I3, when the child dies of it before it logs).
    for (name, index) in [("kill", 1u8), ("tgkill", 2), ("pidfd_send_signal", 1)] {
        if let Some(s) = sysno(name) {
            for sig in OBSERVED {
                f = f.rule(Rule::notify(s).when(ArgCond::eq32(index, sig as u32)));
            }
        }
    }
    if returns {
        for s in PROBES.iter().filter_map(|n| sysno(n)) {
            f = f.rule(Rule::notify(s));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use racelab_hooks::Schedule;

    fn nr(name: &str) -> i32 {
        sysno(name).unwrap().id()
    }

    #[test]
    fn a_point_with_a_signal_notifies_only_that_signal() {
        let s = Schedule::parse("on piano.kill(SIGTERM): ready(child)").unwrap();
        let points: Vec<SyscallPoint> = s.points().filter_map(|p| p.syscall().copied()).collect();
        let f = filter_for(&points, false);
        let arch = racelab_sys::seccomp::NATIVE_AUDIT_ARCH;
        let notify = 0x7fc0_0000; // SECCOMP_RET_USER_NOTIF
        let allow = 0x7fff_0000;
        assert_eq!(f.evaluate(arch, nr("kill"), &[5, 15, 0, 0, 0, 0]), notify);
        // SIGKILL and the stop signals are always observed; SIGUSR1 is not named: allowed at
        // no cost.
        assert_eq!(f.evaluate(arch, nr("kill"), &[5, 9, 0, 0, 0, 0]), notify);
        assert_eq!(f.evaluate(arch, nr("kill"), &[5, 2, 0, 0, 0, 0]), notify);
        assert_eq!(f.evaluate(arch, nr("kill"), &[5, 10, 0, 0, 0, 0]), allow);
        assert_eq!(f.evaluate(arch, nr("getppid"), &[0; 6]), allow);
        // A negative pid (a process group) matches as a C int.
        let g = Schedule::parse("on tini.kill(-7, SIGUSR1): ready(child)").unwrap();
        let points: Vec<SyscallPoint> = g.points().filter_map(|p| p.syscall().copied()).collect();
        let f = filter_for(&points, false);
        assert_eq!(f.evaluate(arch, nr("kill"), &[0xffff_fff9, 10, 0, 0, 0, 0]), notify);
        assert_eq!(f.evaluate(arch, nr("kill"), &[7, 10, 0, 0, 0, 0]), allow);
    }

    #[test]
    fn probes_are_added_only_when_a_return_is_awaited() {
        let arch = racelab_sys::seccomp::NATIVE_AUDIT_ARCH;
        assert_eq!(filter_for(&[], false).evaluate(arch, nr("futex"), &[0; 6]), 0x7fff_0000);
        assert_eq!(filter_for(&[], true).evaluate(arch, nr("futex"), &[0; 6]), 0x7fc0_0000);
        for p in PROBES {
            assert!(sysno(p).is_some(), "{p} is not a syscall here");
        }
    }
}
