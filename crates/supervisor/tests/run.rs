//! The library on real processes: statuses, reasons and containment errors as `run` reports
//! them. (Signals sent to the supervising process are tested through the `supervise` binary in
//! the root package, because libtest is multi-threaded.)

use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use racelab_supervisor::{Config, Containment, ErrorKind, ExitStatus, StopReason, Target, run};

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
