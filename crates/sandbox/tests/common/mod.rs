//! Helpers shared by the sandbox's integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, ChildStderr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use racelab_sandbox::{RunOutcome, Spec, run};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags};
use serde_json::Value;

pub const RUNNER: &str = env!("CARGO_BIN_EXE_racelab-sandbox-runner");

pub fn runner() -> &'static Path {
    Path::new(RUNNER)
}

/// Whether a sandbox can be built here; false prints a skip (or panics under RACELAB_STRICT).
pub fn sandbox_or_skip() -> bool {
    let spec = Spec::with_deadline(Duration::from_secs(5));
    let ok = matches!(
        run(runner(), "whoami", &serde_json::json!({}), &spec),
        Ok(RunOutcome::Finished { .. })
    );
    !racelab_sandbox::skip_unless(ok, "a sandbox", "no PID+mount(+user) namespaces here")
}

/// Runs a scenario that must finish; returns its output.
pub fn finished(scenario: &str, input: Value, spec: &Spec) -> Value {
    match run(runner(), scenario, &input, spec) {
        Ok(RunOutcome::Finished { output, .. }) => output,
        other => panic!("{scenario}: expected Finished, got {other:?}"),
    }
}

/// Reads stderr lines on a helper thread, so the test can wait for one with a deadline.
pub fn stderr_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line that starts with `prefix`, at most `timeout`.
pub fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => continue,
            Err(e) => panic!("no line starting with {prefix:?} within {timeout:?}: {e}"),
        }
    }
}

/// `pid` and every descendant (via /proc/PID/task/TID/children), each with a pidfd.
pub fn tree_pidfds(pid: i32) -> Vec<(i32, OwnedFd)> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Some(raw) = Pid::from_raw(p) else { continue };
        let Ok(fd) = rustix::process::pidfd_open(raw, PidfdFlags::empty()) else { continue };
        out.push((p, fd));
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for t in tasks.flatten() {
            let path = t.path().join("children");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            todo.extend(text.split_ascii_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    out
}

/// Whether the process behind `pidfd` has ended, waiting at most `timeout`.
pub fn ended_within(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let ts = Timespec::try_from(timeout).unwrap();
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    rustix::event::poll(&mut fds, Some(&ts)).unwrap() == 1
}

/// Kills and reaps a child of the test (for guards).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Number of mounts this process sees.
pub fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}
