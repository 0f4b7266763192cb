//! Captured output (H1): the child's streams come back in the report, a grandchild that holds
//! the pipe is swept with the tree so the read ends, and a holder outside the tree bounds the
//! read instead of hanging it.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use racelab_supervisor::{Config, ExitStatus, StopReason, run};

fn sh(config: &Config, script: &str) -> racelab_supervisor::Report {
    let args = [OsString::from("-c"), OsString::from(script)];
    run(config, OsStr::new("/bin/sh"), &args).expect("run")
}

fn capturing() -> Config {
    Config { capture_stdout: true, capture_stderr: true, ..Config::default() }
}

#[test]
fn captured_output_comes_back_in_the_report_with_its_end_of_file() {
    let r = sh(&capturing(), "echo out; echo err >&2; exit 3");
    assert_eq!((r.reason, r.status), (StopReason::Exited, Some(ExitStatus::Code(3))));
    let c = r.captured.expect("captured");
    assert_eq!((c.stdout.as_slice(), c.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    assert!(c.complete && !c.truncated, "{c:?}");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn nothing_is_captured_unless_asked() {
    let r = sh(&Config::default(), "exit 0");
    assert_eq!(r.captured, None);
}

#[test]
fn a_grandchild_in_the_childs_group_that_holds_the_pipe_is_swept_and_the_read_ends() {
    // The shell exits at once; its background sleep inherited stdout and would hold the pipe
    // for a minute. The sweep kills the group while the shell is an unreaped zombie.
    let r = sh(&capturing(), "sleep 60 & echo started");
    assert_eq!(r.reason, StopReason::Exited);
    assert!(r.swept, "{r:?}");
    let c = r.captured.clone().expect("captured");
    assert_eq!(c.stdout, b"started\n");
    assert!(c.complete, "the sweep closed every holder of the pipe: {r:?}");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_timeout_ends_the_read_even_when_a_grandchild_that_ignores_sigterm_holds_the_pipe() {
    // H1's shape: the timeout stops the child; a grandchild that survives SIGTERM holds the
    // captured stream. The group sweep after the child's end kills it, so the end of file comes.
    let config = Config { timeout: Some(Duration::from_millis(20)), ..capturing() };
    let r = sh(&config, "(trap '' TERM; exec sleep 60) & echo started; wait");
    assert_eq!(r.reason, StopReason::Duration, "{r:?}");
    let c = r.captured.clone().expect("captured");
    assert_eq!(c.stdout, b"started\n");
    assert!(c.complete, "{r:?}");
}

#[test]
fn a_process_outside_the_tree_holding_the_pipe_bounds_the_read_with_a_warning() {
    // A daemon in a session of its own escapes the group sweep and keeps stdout. The shell
    // passes the daemon's pid on (through a FIFO, so it is captured before the shell exits),
    // then exits; the read gives up after output_wait.
    let config = Config { output_wait: Duration::from_millis(50), ..capturing() };
    let script = "f=$(mktemp -u); mkfifo \"$f\"; \
                  setsid sh -c \"echo \\$\\$ > $f; exec sleep 60\" & \
                  read pid < \"$f\"; rm -f \"$f\"; echo \"$pid\"";
    let r = sh(&config, script);
    let c = r.captured.clone().expect("captured");
    let daemon: i32 = String::from_utf8_lossy(&c.stdout).trim().parse().expect("daemon pid");
    // Clean up first: the daemon is alive (it holds the pipe), so its pid still names it.
    if let Some(pid) = rustix::process::Pid::from_raw(daemon) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    assert_eq!(r.reason, StopReason::Exited);
    assert!(!c.complete, "{r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("captured output: still held open")),
        "{:?}",
        r.warnings
    );
}
