//! The library on real processes: statuses, reasons and containment errors as `run` reports
//! them. (Signals sent to the supervising process are tested through the `supervise` binary in
//! the root package, because libtest is multi-threaded.)

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use racelab_supervisor::{
    Config, Containment, ErrorKind, ExitStatus, Signal, StopReason, Supervisor, Target, run,
};

fn sh(config: &Config, script: &str) -> racelab_supervisor::Report {
    let args = [OsString::from("-c"), OsString::from(script)];
    run(config, OsStr::new("/bin/sh"), &args).expect("run")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn the_reported_status_is_the_childs_real_exit_code() {
    let r = sh(&Config::default(), "exit 7");
    assert_eq!((r.reason, r.status), (StopReason::Exited, Some(ExitStatus::Code(7))));
    assert!(r.signals.is_empty(), "{r:?}");
}

#[test]
fn a_child_killed_by_a_signal_we_did_not_send_is_signalled_externally() {
    let r = sh(&Config::default(), "kill -KILL $$");
    assert_eq!(r.reason, StopReason::SignalledExternally);
    assert_eq!(r.status, Some(ExitStatus::Signal(9)));
    assert_eq!(r.exit_code(false), 137);
}

#[test]
fn a_cooperative_child_stopped_by_the_timeout_is_duration_not_forced() {
    let config = Config { timeout: Some(Duration::from_millis(20)), ..Config::default() };
    let started = Instant::now();
    let r = sh(&config, "trap 'exit 0' TERM; while :; do sleep 1; done");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(r.reason, StopReason::Duration);
    assert_eq!(r.exit_code(false), 124);
    assert_eq!(r.signals[0].name, "SIGTERM");
    assert_eq!(r.signals[0].target, Target::Group);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_missing_program_is_a_not_found_report_not_an_error() {
    let r = run(&Config::default(), OsStr::new("/no/such/program"), &[]).expect("run");
    assert_eq!(r.reason, StopReason::NotFound);
    assert_eq!(r.exit_code(false), 127);
    assert!(r.exec_error.is_some());
}

#[test]
fn pid_namespace_containment_works_as_root_and_says_unavailable_otherwise() {
    let config = Config { containment: Containment::PidNamespace, ..Config::default() };
    let args = [OsString::from("-c"), OsString::from("[ $$ = 1 ] && exit 9")];
    match run(&config, OsStr::new("/bin/sh"), &args) {
        Ok(r) => {
            assert!(is_root(), "unprivileged CLONE_NEWPID unexpectedly worked");
            assert_eq!(r.status, Some(ExitStatus::Code(9)), "{r:?}");
        }
        Err(e) => {
            assert!(!is_root(), "{e}");
            assert_eq!(e.kind(), ErrorKind::ContainmentUnavailable, "{e}");
        }
    }
}

#[test]
fn group_containment_sweeps_a_background_member_after_the_leader_exits() {
    // The background sleep would outlive its parent; the sweep SIGKILLs the group while the
    // leader is still an unreaped zombie. We read its pid and check it is gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pid");
    let script = format!("sleep 100 & echo $! > {}; exit 0", file.display());
    let r = sh(&Config::default(), &script);
    assert_eq!(r.reason, StopReason::Exited);
    assert!(r.swept);
    let pid: i32 = std::fs::read_to_string(&file).expect("pid file").trim().parse().expect("pid");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let alive = state.as_deref().is_some_and(|s| !s.contains(") Z") && s.contains("sleep"));
        if !alive {
            break;
        }
        assert!(Instant::now() < deadline, "background member {pid} survived the sweep");
        std::thread::yield_now();
    }
}

#[test]
fn a_stop_request_signals_the_group_at_once_and_the_report_says_interrupted() {
    let args = [OsString::from("60")];
    let mut sup = Supervisor::start(&Config::default(), OsStr::new("sleep"), &args).expect("start");
    assert!(sup.pid().is_some());
    let started = Instant::now();
    sup.stop();
    let r = sup.wait().expect("wait");
    assert!(started.elapsed() < Duration::from_secs(2), "{r:?}");
    assert_eq!(r.reason, StopReason::Interrupted);
    assert_eq!(r.status, Some(ExitStatus::Signal(15)));
    assert_eq!((r.signals[0].name.as_str(), r.signals[0].target), ("SIGTERM", Target::Group));
    assert!(r.swept && r.warnings.is_empty(), "{r:?}");
    assert_eq!(r.exit_code(false), 143);
}

#[test]
fn a_stop_request_escalates_to_sigkill_after_the_grace() {
    let config = Config {
        grace: Duration::from_millis(50),
        containment: Containment::None,
        ..Config::default()
    };
    // Ready once SIGTERM is ignored; exec keeps it one process.
    let ready = racelab_sandbox::ReadyFifo::new().expect("fifo");
    let script = format!("trap '' TERM; echo ready > {}; exec sleep 60", ready.path().display());
    let args = [OsString::from("-c"), OsString::from(script)];
    let mut sup = Supervisor::start(&config, OsStr::new("/bin/sh"), &args).expect("start");
    ready.wait(Duration::from_secs(5)).expect("the child never got ready");
    sup.stop();
    let r = sup.wait().expect("wait");
    assert_eq!(r.reason, StopReason::ForcedKill, "{r:?}");
    assert_eq!(r.status, Some(ExitStatus::Signal(9)));
    assert_eq!(r.signals.last().map(|s| (s.signo, s.target)), Some((9, Target::Child)));
}

#[test]
fn a_stop_request_after_the_child_exited_reports_the_exit() {
    let args = [OsString::from("-c"), OsString::from("exit 4")];
    let mut sup =
        Supervisor::start(&Config::default(), OsStr::new("/bin/sh"), &args).expect("start");
    let pidfd = pidfd_of(sup.pid().expect("pid"));
    wait_readable(&pidfd, Duration::from_secs(5));
    sup.stop();
    let r = sup.wait().expect("wait");
    assert_eq!((r.reason, r.status), (StopReason::Exited, Some(ExitStatus::Code(4))));
    assert!(r.signals.is_empty(), "nothing was sent to a child already gone: {r:?}");
}

#[test]
fn a_sigkill_stop_signal_makes_the_stop_a_forced_kill() {
    let config = Config {
        stop_signal: Signal::SIGKILL,
        containment: Containment::None,
        ..Config::default()
    };
    let mut sup =
        Supervisor::start(&config, OsStr::new("sleep"), &[OsString::from("60")]).expect("start");
    sup.stop();
    let r = sup.wait().expect("wait");
    assert_eq!((r.reason, r.status), (StopReason::ForcedKill, Some(ExitStatus::Signal(9))));
}

#[test]
fn a_supervisor_dropped_without_wait_kills_and_reaps_its_child() {
    let sup = Supervisor::start(&Config::default(), OsStr::new("sleep"), &[OsString::from("60")])
        .expect("start");
    // Our unreaped child: this pidfd names it, whatever happens to the number later.
    let pidfd = pidfd_of(sup.pid().expect("pid"));
    drop(sup);
    wait_readable(&pidfd, Duration::from_millis(100));
    // Reaped by the drop: waiting on it again finds no child.
    let flags = rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG;
    let again = rustix::process::waitid(rustix::process::WaitId::PidFd(pidfd.as_fd()), flags);
    assert_eq!(again.err(), Some(rustix::io::Errno::CHILD));
}

#[test]
fn a_program_that_cannot_start_is_a_report_from_wait() {
    let sup =
        Supervisor::start(&Config::default(), OsStr::new("/no/such/program"), &[]).expect("start");
    assert_eq!(sup.pid(), None);
    assert_eq!(sup.wait().expect("wait").reason, StopReason::NotFound);
}

fn pidfd_of(pid: i32) -> std::os::fd::OwnedFd {
    let pid = rustix::process::Pid::from_raw(pid).expect("pid");
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open")
}

/// Polls the pidfd until readable (the process exited), failing after `within`.
fn wait_readable(pidfd: &std::os::fd::OwnedFd, within: Duration) {
    let mut fds = [rustix::event::PollFd::new(pidfd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec::try_from(within).expect("timespec");
    let n = rustix::event::poll(&mut fds, Some(&ts)).expect("poll");
    assert_eq!(n, 1, "the process did not exit within {within:?}");
}
