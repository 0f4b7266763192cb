//! Small programs for a replica to supervise, driven by their arguments and stdin, so tests
//! synchronise on what a workload prints instead of sleeping.
//!
//! `racelab-legacy-wrapper workload KIND [ARG]`:
//! - `exit CODE`: exit at once with CODE.
//! - `ignore-term`: SIGTERM ignored, print `ready PID`, block until killed (SIGKILL).
//! - `report-term [CODE]`: print `ready PID`, wait for SIGTERM, print `got SIGTERM`, exit CODE.
//! - `wait-stdin [CODE]`: print `ready PID`, read stdin to EOF, exit CODE (0).
//! - `orphans N`: make N orphans (double spawn; each grandchild exits at once), print
//!   `orphan PID` for each, then `orphans-done`, then read stdin to EOF and exit 0.
//!
//! Each workload asks for SIGKILL when its parent thread dies (PR_SET_PDEATHSIG), so a workload
//! never outlives the replica that runs it, even when a test kills the replica; except with
//! `RACELAB_WORKLOAD_ORPHANABLE=1`, for a test that shows an orphan (and then kills it itself).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, Signal};

/// Runs the workload named by `args` (see the module docs) and exits.
pub fn workload_main(args: impl IntoIterator<Item = OsString>) -> ! {
    let args: Vec<String> = args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let number = |i: usize, default: i32| -> i32 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    if std::env::var_os("RACELAB_WORKLOAD_ORPHANABLE").is_none_or(|v| v != "1") {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    }
    match args.first().map(String::as_str) {
        Some("exit") => std::process::exit(number(1, 0)),
        Some("ignore-term") => {
            if let Err(e) = racelab_sys::sigaction::ignore(Signal::SIGTERM) {
                fail(&format!("sigaction: {e}"));
            }
            say(&format!("ready {}", std::process::id()));
            loop {
                std::thread::park();
            }
        }
        Some("report-term") => {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            if let Err(e) = set.thread_block() {
                fail(&format!("sigprocmask: {e}"));
            }
            say(&format!("ready {}", std::process::id()));
            match set.wait() {
                Ok(_) => say("got SIGTERM"),
                Err(e) => fail(&format!("sigwait: {e}")),
            }
            std::process::exit(number(1, 0))
        }
        Some("wait-stdin") => {
            say(&format!("ready {}", std::process::id()));
            drain_stdin();
            std::process::exit(number(1, 0))
        }
        Some("spawn-orphan") => {
            // The middle of a double spawn: start a grandchild and exit without waiting.
            let grandchild = Command::new(self_exe())
                .args(["workload", "exit", "0"])
                .stdin(Stdio::null())
                .spawn();
            match grandchild {
                Ok(g) => say(&format!("orphan {}", g.id())),
                Err(e) => fail(&format!("spawn: {e}")),
            }
            std::process::exit(0)
        }
        Some("orphans") => {
            for _ in 0..number(1, 1) {
                let status = Command::new(self_exe())
                    .args(["workload", "spawn-orphan"])
                    .stdin(Stdio::null())
                    .status();
                if !status.is_ok_and(|s| s.success()) {
                    fail("spawn-orphan failed");
                }
            }
            say("orphans-done");
            drain_stdin();
            std::process::exit(0)
        }
        other => fail(&format!("unknown workload {other:?}")),
    }
}

fn self_exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}")))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn drain_stdin() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn fail(msg: &str) -> ! {
    eprintln!("racelab-legacy workload: {msg}");
    std::process::exit(125)
}
