//! With the `hooks` feature: arm a schedule from the environment around one wrapper run, so a
//! test (or the lab's runner) can hold a replica's race window open in its own process.
//!
//! - `RACELAB_LEGACY_SCHEDULE`: the schedule text (racelab-hooks syntax). Absent: nothing armed.
//! - `RACELAB_LEGACY_DEADLINE_MS`: the controller's wait deadline (default 5000).
//! - `RACELAB_LEGACY_AWAIT`: a point name; before disarming, wait (up to the deadline) until it
//!   was passed, so a detached thread's late steps make it into the trace.
//!
//! Actions understood: `raise(SIGINT|SIGTERM|SIGHUP)`, which sends that signal to this process
//! from the arriving thread (the lab's stand-in for "a signal arrives right here").
//! At the end the report goes to stderr: a line `racelab-legacy hooks: clean=BOOL`, then the
//! report (the trace, or a stuck report).

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use racelab_hooks::{Action, Arg, ArmOptions, Armed, Point, Schedule, arm, points};

/// A schedule armed from the environment, or nothing.
#[derive(Debug)]
pub struct EnvArmed(Option<(Armed, Option<&'static Point>, Duration)>);

/// Arms `RACELAB_LEGACY_SCHEDULE` if set; exits 2 with a message when it does not parse.
pub fn arm_from_env() -> EnvArmed {
    let Some(text) = std::env::var_os("RACELAB_LEGACY_SCHEDULE") else {
        return EnvArmed(None);
    };
    let fail = |msg: String| -> ! {
        eprintln!("racelab-legacy hooks: {msg}");
        std::process::exit(2)
    };
    let schedule = Schedule::parse(&text.to_string_lossy())
        .unwrap_or_else(|e| fail(format!("bad RACELAB_LEGACY_SCHEDULE: {e}")));
    let deadline = std::env::var("RACELAB_LEGACY_DEADLINE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    let await_point = std::env::var("RACELAB_LEGACY_AWAIT").ok().map(|name| {
        points::by_name(&name).unwrap_or_else(|| fail(format!("unknown point {name:?}")))
    });
    let options = ArmOptions { deadline, ..ArmOptions::default() };
    let armed =
        arm(schedule, Arc::new(run_action), options).unwrap_or_else(|e| fail(format!("arm: {e}")));
    EnvArmed(Some((armed, await_point, deadline)))
}

impl EnvArmed {
    /// Waits for the awaited point (if any), disarms and prints the report on stderr.
    pub fn finish(self) {
        let Some((armed, await_point, deadline)) = self.0 else {
            return;
        };
        if let Some(point) = await_point
            && !armed.wait_passed(point, deadline)
        {
            eprintln!("racelab-legacy hooks: {} was not passed within {deadline:?}", point.name);
        }
        let report = armed.finish();
        eprintln!("racelab-legacy hooks: clean={}\n{report}", report.is_clean());
    }
}

fn run_action(action: &Action, _at: &'static Point) -> Result<(), String> {
    match (action.name.as_str(), action.args.as_slice()) {
        ("raise", [Arg::Ident(name)]) => {
            let signal = match name.as_str() {
                "SIGINT" => Signal::SIGINT,
                "SIGTERM" => Signal::SIGTERM,
                "SIGHUP" => Signal::SIGHUP,
                other => return Err(format!("raise: unsupported signal {other}")),
            };
            // To this process (any thread may take it), as an outside sender would.
            nix::sys::signal::kill(nix::unistd::getpid(), signal).map_err(|e| e.to_string())
        }
        _ => Err(format!("unknown action {action} (known: raise(SIGINT|SIGTERM|SIGHUP))")),
    }
}
