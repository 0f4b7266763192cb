//! Seccomp user notification on real processes: the probe runs under a filter installed by its
//! launcher (a forked child of this multi-threaded test process), the listener comes back over
//! a Unix socket, and the test plays the lab. Every wait has a deadline (poll on the listener,
//! the probe's stdout or a pidfd); the only timed waits are for things that must NOT happen.
//! x86-64 only: the facts pinned here (syscall numbers, `fork`/`vfork`, glibc's spawn path)
//! are this machine's; the module itself also builds for aarch64 (unverified here).
#![cfg(target_arch = "x86_64")]

mod common;

use std::os::fd::AsFd;

use common::{DEADLINE, QUIET, Target, exited_within, launch, proc_state, status_mask};
use nix::errno::Errno;
use racelab_sys::seccomp::{
    ArgCond, Filter, ListenerEvent, Notification, NotifyError, ParkedSignals, Rule, Sysno,
};
use rustix::process::{Signal, pidfd_send_signal};

/// `kill` with `sig == s` notifies; every other syscall (and `kill` with another signal) runs.
fn kill_with(sig: u32) -> Filter {
    Filter::new().rule(Rule::notify(Sysno::kill).when(ArgCond::eq32(1, sig)))
}

fn assert_is_kill(n: &Notification, pid: i32, sig: i32) {
    assert_eq!(n.sysno(), Some(Sysno::kill), "{n:?}");
    assert_eq!(n.args[0] as i32, pid, "{n:?}");
    assert_eq!(n.args[1] as i32, sig, "{n:?}");
}

/// Starts the probe that makes `kill(self, 0)` under a filter on `kill(_, 0)`, and receives
/// the notification of that call.
fn parked_kill_self(signals: ParkedSignals, usr1: &str) -> (Target, Notification) {
    let mut args = vec!["kill"];
    if !usr1.is_empty() {
        args.push(usr1);
    }
    args.push("self:0");
    let mut t = launch(&kill_with(0), signals, &args);
    let tid: i32 = t.out.expect("tid ")[4..].parse().unwrap();
    let n = t.next_notification();
    assert_is_kill(&n, t.pid, 0);
    assert_eq!(n.tid, tid, "single-threaded: the tid is the pid");
    (t, n)
}

#[test]
fn only_kill_with_sigkill_parks_and_continuing_it_kills_the_victim() {
    if !common::seccomp_or_skip() {
        return;
    }
    let victim = launch(&Filter::new(), ParkedSignals::Interrupt, &["block"]);
    let spec = format!("{}:9", victim.pid);
    let mut t = launch(&kill_with(9), ParkedSignals::Interrupt, &["kill", "self:0", &spec]);
    t.out.expect("tid ");
    // kill(self, 0) ran without a notification: its result is printed while the listener holds
    // exactly one notification, the SIGKILL one.
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    let n = t.next_notification();
    assert_is_kill(&n, victim.pid, 9);
    assert!(!exited_within(&victim.pidfd, QUIET), "the victim died before the lab said so");
    t.listener().continue_syscall(n.id).unwrap();
    assert!(exited_within(&victim.pidfd, DEADLINE), "the continued SIGKILL did not kill");
    assert_eq!(t.out.expect("kill "), format!("kill {} 9 -> 0 0", victim.pid));
    assert_eq!(t.exit_code(), 0);
    assert_eq!(t.listener().wait(DEADLINE).unwrap(), ListenerEvent::AllTargetsGone);
}

#[test]
fn a_parked_thread_sits_in_the_syscall_until_it_is_continued() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, n) = parked_kill_self(ParkedSignals::Interrupt, "");
    // The kernel's own view of the parked thread: in `kill`, with our arguments, asleep.
    let syscall = std::fs::read_to_string(format!("/proc/{}/syscall", n.tid)).unwrap();
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    assert_eq!(fields[0], Sysno::kill.id().to_string(), "{syscall}");
    assert_eq!(fields[1], format!("{:#x}", t.pid), "{syscall}");
    assert_eq!(fields[2], "0x0", "{syscall}");
    assert_eq!(proc_state(n.tid), 'S');
    let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", n.tid)).unwrap_or_default();
    eprintln!("parked thread: /proc/tid/syscall {:?}, wchan {wchan:?}", syscall.trim());
    t.out.expect_silence("the parked kill returned before it was continued");
    assert!(!exited_within(&t.pidfd, QUIET));
    assert!(t.listener().id_valid(n.id));
    t.listener().continue_syscall(n.id).unwrap();
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert!(!t.listener().id_valid(n.id), "an answered id stays valid");
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn an_unprivileged_launcher_installs_the_filter_and_parks_its_target() {
    if !common::seccomp_or_skip() {
        return;
    }
    // As root, the launcher drops to nobody before it installs the filter; unprivileged, this
    // test process already is the unprivileged case.
    let root = rustix::process::getuid().is_root();
    let mut t =
        common::launch_with(&kill_with(0), ParkedSignals::Interrupt, &["kill", "self:0"], |c| {
            if root {
                std::os::unix::process::CommandExt::uid(c, 65534);
                std::os::unix::process::CommandExt::gid(c, 65534);
            }
        });
    let n = t.next_notification();
    assert_is_kill(&n, t.pid, 0);
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid)).unwrap();
    let field = |key: &str| {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line[key.len()..].split_whitespace().next().unwrap().to_string()
    };
    if root {
        assert_eq!(field("Uid:"), "65534", "{status}");
    }
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert_eq!(field("Seccomp_filters:"), "1", "{status}");
    t.listener().continue_syscall(n.id).unwrap();
    t.out.expect("tid ");
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn closing_the_listener_fails_the_parked_and_every_later_notified_call_with_enosys() {
    if !common::seccomp_or_skip() {
        return;
    }
    let mut t = launch(&kill_with(0), ParkedSignals::Interrupt, &["kill", "self:0", "self:0"]);
    t.out.expect("tid ");
    let n = t.next_notification();
    assert_is_kill(&n, t.pid, 0);
    t.close_listener();
    let enosys = format!("kill {} 0 -> -1 {}", t.pid, libc::ENOSYS);
    assert_eq!(t.out.expect("kill "), enosys, "the parked call");
    assert_eq!(t.out.expect("kill "), enosys, "a later call");
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn a_second_listener_on_the_same_thread_is_refused_with_ebusy() {
    if !common::seccomp_or_skip() {
        return;
    }
    let mut cmd = std::process::Command::new(common::PROBE);
    let mut lab_ends = Vec::new();
    for _ in 0..2 {
        let (lab, launcher) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let program = kill_with(9).compile().unwrap();
        racelab_sys::seccomp::notify_in_child(
            &mut cmd,
            program,
            ParkedSignals::Interrupt,
            launcher,
        );
        lab_ends.push(lab);
    }
    let err = cmd.arg("block").spawn().expect_err("two listeners were installed");
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
}

#[test]
fn a_listener_passed_over_scm_rights_works_here_and_the_target_does_not_hold_it() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, n) = parked_kill_self(ParkedSignals::Interrupt, "");
    let fd = t.listener().as_fd();
    let flags = rustix::io::fcntl_getfd(fd).unwrap();
    assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "received without MSG_CMSG_CLOEXEC");
    let link =
        std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
    assert_eq!(link.unwrap().to_string_lossy(), "anon_inode:seccomp notify");
    // The launcher closed its listener and its socket end before exec (both close-on-exec).
    for entry in std::fs::read_dir(format!("/proc/{}/fd", t.pid)).unwrap() {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap();
        let target = target.to_string_lossy();
        assert!(!target.contains("seccomp") && !target.starts_with("socket:"), "{target}");
    }
    t.listener().return_value(n.id, 0).unwrap();
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn answers_to_a_target_killed_while_parked_are_gone_and_the_listener_hangs_up_at_its_exit() {
    if !common::seccomp_or_skip() {
        return;
    }
    // DeferUntilAnswered: even the killable wait ends for a fatal signal.
    let (mut t, n) = parked_kill_self(ParkedSignals::DeferUntilAnswered, "");
    pidfd_send_signal(&t.pidfd, Signal::KILL).unwrap();
    assert!(exited_within(&t.pidfd, DEADLINE), "SIGKILL did not end the parked target");
    assert!(!t.listener().id_valid(n.id));
    assert!(matches!(t.listener().continue_syscall(n.id), Err(NotifyError::Gone)));
    assert!(matches!(t.listener().fail_syscall(n.id, Errno::EPERM), Err(NotifyError::Gone)));
    assert!(matches!(t.listener().return_value(n.id, 0), Err(NotifyError::Gone)));
    // Linux 6.11+ releases a task's filter in do_exit, before exit_notify makes its pidfd
    // readable: POLLHUP while the target is still an unreaped zombie (at reap before 6.11).
    assert_eq!(t.listener().wait(DEADLINE).unwrap(), ListenerEvent::AllTargetsGone);
    assert_eq!(proc_state(t.pid), 'Z', "the target was reaped behind our back");
    t.child.wait().unwrap();
}

#[test]
fn a_default_fatal_signal_ends_a_wait_that_defers_other_signals() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, n) = parked_kill_self(ParkedSignals::DeferUntilAnswered, "");
    // SIGTERM with its default disposition kills the process: a fatal signal, not deferred.
    pidfd_send_signal(&t.pidfd, Signal::TERM).unwrap();
    assert!(exited_within(&t.pidfd, DEADLINE), "SIGTERM (default action) did not end it");
    assert!(matches!(t.listener().continue_syscall(n.id), Err(NotifyError::Gone)));
    let status = t.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
}

#[test]
fn with_defer_until_answered_a_signal_to_a_received_notification_stays_pending() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, n) = parked_kill_self(ParkedSignals::DeferUntilAnswered, "--usr1=restart");
    pidfd_send_signal(&t.pidfd, Signal::USR1).unwrap();
    t.out.expect_silence("the SIGUSR1 handler ran while the syscall was parked");
    t.expect_no_notification(QUIET, "the parked syscall was restarted");
    assert!(t.listener().id_valid(n.id), "the notification was withdrawn");
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    assert_ne!(status_mask(t.pid, "ShdPnd:") & usr1, 0, "SIGUSR1 is not pending");
    assert_eq!(proc_state(n.tid), 'D', "a killable wait shows as D");
    t.listener().continue_syscall(n.id).unwrap();
    // The pending signal is delivered on the way out of the continued syscall.
    assert_eq!(t.out.expect(""), "handler");
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn with_defer_until_answered_a_signal_before_recv_still_interrupts() {
    if !common::seccomp_or_skip() {
        return;
    }
    let mut t = launch(
        &kill_with(0),
        ParkedSignals::DeferUntilAnswered,
        &["kill", "--usr1=restart", "self:0"],
    );
    t.out.expect("tid ");
    // Pending but not received: the wait is still interruptible.
    assert_eq!(t.listener().wait(DEADLINE).unwrap(), ListenerEvent::Pending);
    pidfd_send_signal(&t.pidfd, Signal::USR1).unwrap();
    assert_eq!(t.out.expect(""), "handler");
    let n = t.next_notification(); // the restarted call
    assert_is_kill(&n, t.pid, 0);
    t.listener().continue_syscall(n.id).unwrap();
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn by_default_a_signal_runs_its_handler_and_the_syscall_notifies_again_with_a_new_id() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, first) = parked_kill_self(ParkedSignals::Interrupt, "--usr1=restart");
    assert_eq!(proc_state(first.tid), 'S');
    pidfd_send_signal(&t.pidfd, Signal::USR1).unwrap();
    assert_eq!(t.out.expect(""), "handler");
    let again = t.next_notification();
    assert_is_kill(&again, t.pid, 0);
    assert_eq!(again.tid, first.tid);
    assert_ne!(again.id, first.id);
    assert!(!t.listener().id_valid(first.id));
    assert!(matches!(t.listener().continue_syscall(first.id), Err(NotifyError::Gone)));
    t.listener().continue_syscall(again.id).unwrap();
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn by_default_without_sa_restart_an_interrupted_parked_syscall_fails_with_eintr() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, first) = parked_kill_self(ParkedSignals::Interrupt, "--usr1=norestart");
    pidfd_send_signal(&t.pidfd, Signal::USR1).unwrap();
    assert_eq!(t.out.expect(""), "handler");
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> -1 {}", t.pid, libc::EINTR));
    assert!(!t.listener().id_valid(first.id));
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn by_default_sigstop_withdraws_the_notification_and_sigcont_makes_it_notify_again() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, first) = parked_kill_self(ParkedSignals::Interrupt, "");
    pidfd_send_signal(&t.pidfd, Signal::STOP).unwrap();
    t.expect_no_notification(QUIET, "a stopped thread notified again");
    assert_eq!(proc_state(first.tid), 'T', "SIGSTOP did not stop the parked thread");
    assert!(!t.listener().id_valid(first.id), "a stopped thread's notification stayed valid");
    pidfd_send_signal(&t.pidfd, Signal::CONT).unwrap();
    let again = t.next_notification();
    assert_is_kill(&again, t.pid, 0);
    assert_ne!(again.id, first.id);
    t.listener().continue_syscall(again.id).unwrap();
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert_eq!(t.exit_code(), 0);
}

#[test]
fn with_defer_until_answered_sigstop_waits_for_the_answer_too() {
    if !common::seccomp_or_skip() {
        return;
    }
    let (mut t, n) = parked_kill_self(ParkedSignals::DeferUntilAnswered, "");
    pidfd_send_signal(&t.pidfd, Signal::STOP).unwrap();
    t.out.expect_silence("the parked call returned before it was answered");
    assert_eq!(proc_state(n.tid), 'D', "the received notification's wait was interrupted");
    assert!(t.listener().id_valid(n.id));
    t.listener().continue_syscall(n.id).unwrap();
    // The syscall completes, then the thread stops on its way back to user space.
    t.out.expect_silence("a stopped thread printed");
    assert_eq!(proc_state(n.tid), 'T');
    pidfd_send_signal(&t.pidfd, Signal::CONT).unwrap();
    assert_eq!(t.out.expect("kill "), format!("kill {} 0 -> 0 0", t.pid));
    assert_eq!(t.exit_code(), 0);
}

/// Runs `probe spawn <how>` under `filter`, continues every notification, and returns the
/// notified syscalls (with their first argument) and the probe's report.
fn spawn_syscalls(filter: &Filter, how: &str) -> (Vec<(Sysno, u64)>, String) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut t = launch(filter, ParkedSignals::Interrupt, &["spawn", how]);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        // One poll over the listener and the probe's stdout: the probe parks on each
        // notification, so the report can only come after the last one is answered.
        if let Some(line) = t.out.next_within(std::time::Duration::ZERO) {
            assert_eq!(t.exit_code(), 0);
            return (seen, line);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "spawn {how}: no report within {DEADLINE:?}, saw {seen:?}");
        let stdout = t.out.fd();
        let mut fds =
            [PollFd::new(t.listener(), PollFlags::IN), PollFd::new(&stdout, PollFlags::IN)];
        let _ = poll(&mut fds, Some(&Timespec::try_from(left).unwrap()));
        if fds[0].revents().contains(PollFlags::IN) {
            let n = t.listener().recv().unwrap();
            seen.push((n.sysno().unwrap(), n.args[0]));
            t.listener().continue_syscall(n.id).unwrap();
        }
    }
}

/// Every way to create a task, unfiltered by arguments.
fn all_clones() -> Filter {
    [Sysno::clone, Sysno::clone3, Sysno::fork, Sysno::vfork]
        .into_iter()
        .fold(Filter::new(), |f, s| f.rule(Rule::notify(s)))
}

#[test]
fn std_spawn_posix_spawn_and_threads_use_clone3_and_fork_uses_clone() {
    if !common::seccomp_or_skip() {
        return;
    }
    let fork_flags = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
    let expected = [
        ("std", Sysno::clone3, None),
        ("posix_spawn", Sysno::clone3, None),
        ("fork", Sysno::clone, Some(fork_flags)),
        ("thread", Sysno::clone3, None),
    ];
    for (how, sysno, flags) in expected {
        let (seen, report) = spawn_syscalls(&all_clones(), how);
        eprintln!("spawn {how}: {seen:x?} -> {report}");
        assert!(report.starts_with(&format!("spawn {how} ok")), "{report}");
        assert_eq!(seen.len(), 1, "spawn {how}: {seen:x?}");
        assert_eq!(seen[0].0, sysno, "spawn {how}: {seen:x?}");
        if let Some(flags) = flags {
            assert_eq!(seen[0].1, flags, "spawn {how}: {seen:x?}");
        }
    }
}

#[test]
fn clone3_failing_with_enosys_makes_glibc_fall_back_to_clone_whose_flags_a_rule_can_read() {
    if !common::seccomp_or_skip() {
        return;
    }
    // The lab's process-creation point: clone3 (flags in memory, out of BPF's reach) refused
    // in the filter, clone without CLONE_THREAD notified; thread creation never parks.
    let filter = Filter::new()
        .rule(Rule::errno(Sysno::clone3, Errno::ENOSYS))
        .rule(Rule::notify(Sysno::clone).when(ArgCond::masked_eq(0, libc::CLONE_THREAD as u64, 0)))
        .rule(Rule::notify(Sysno::fork))
        .rule(Rule::notify(Sysno::vfork));
    let vfork_flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
    for how in ["std", "posix_spawn"] {
        let (seen, report) = spawn_syscalls(&filter, how);
        eprintln!("spawn {how} with clone3 -> ENOSYS: {seen:x?} -> {report}");
        assert!(report.starts_with(&format!("spawn {how} ok")), "{report}");
        assert_eq!(seen, [(Sysno::clone, vfork_flags)], "spawn {how}");
    }
    let (seen, report) = spawn_syscalls(&filter, "thread");
    assert_eq!(report, "spawn thread ok 7");
    assert!(seen.is_empty(), "a thread creation parked: {seen:x?}");
}

#[test]
#[ignore = "timing: run alone with --ignored --nocapture, in release, on a quiet machine"]
fn cost_of_a_syscall_without_rule_is_the_kernels_cache_lookup() {
    // The kernel emulates the program at install time (Linux 5.11+): a syscall whose path
    // reads only arch and nr, as every syscall without a rule here, is marked always-allowed
    // and skips the BPF run. A rule on getppid's argument forces the run, for comparison.
    let points = [Sysno::kill, Sysno::clone, Sysno::setpgid, Sysno::setsid, Sysno::wait4]
        .into_iter()
        .chain([Sysno::rt_sigaction, Sysno::fork, Sysno::vfork, Sysno::tgkill, Sysno::tkill])
        .fold(Filter::new(), |f, s| f.rule(Rule::notify(s).when(ArgCond::eq32(1, 9))));
    let forced = points.clone().rule(Rule::notify(Sysno::getppid).when(ArgCond::eq(0, 12345)));
    for (label, filter) in
        [("empty filter", Filter::new()), ("10 rules", points), ("forced", forced)]
    {
        let mut ns: Vec<u64> = (0..5)
            .map(|_| {
                let mut t = launch(&filter, ParkedSignals::Interrupt, &["getppid", "2000000"]);
                t.out.expect("ns ")[3..].parse().unwrap()
            })
            .collect();
        ns.sort_unstable();
        eprintln!("getppid under {label}: {ns:?} ns per call");
    }
}
