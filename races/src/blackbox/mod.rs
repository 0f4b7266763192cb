//! One replay against an unmodified program, as the lab's init (PID 1 of a fresh namespace)
//! runs it.
//!
//! Topology: init forks a launcher L. L sets up the workload's pipes as its stdin/stdout and a
//! pipe as its stderr, installs the case's seccomp filter (with a listener) and sends the
//! listener to init over a socket pair, then execs the program P (for a PID 1 case, L first
//! unshares a PID namespace and forks: its child is PID 1 there and does the rest, L mirrors its
//! exit). P's child is the lab's workload W. Init answers P's notifications through a
//! [`racelab_blackbox::Session`]: the schedule's points park P's threads, its lab actions (make
//! W exit, recycle W's PID, signal P) run meanwhile. The oracle judges from what init saw: W's
//! signal log, the victims' fates, /proc, P's exit and stderr, every SIGKILL P sent (seen at the
//! syscall).
//!
//! The files, bottom to top: `launch.rs` (the launcher that becomes the program), `lab.rs`
//! (init's state and its plain moves), `actions.rs` (the lab's actions and the case's own
//! steps), `drive.rs` (the loop, the ground truth, the verdict), and this file: the entry
//! point.

mod actions;
mod drive;
mod lab;
mod launch;

use crate::conformance::{self, Case, CellExpect};
use crate::lab::now;
use crate::output::ReplayOutput;
use crate::programs::{self, Program};
use crate::verdict::Verdict;
use lab::Bb;
use racelab_blackbox::Engine;
use racelab_hooks::{Action, Schedule, Trace};
use racelab_sandbox::Init;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The scenario's name in the runner.
pub const SCENARIO: &str = "program";

/// How long one black-box replay may take inside the namespace.
pub const REPLAY_DEADLINE: Duration = Duration::from_millis(2500);

/// How long a parked syscall may wait for its schedule.
const HOLD_DEADLINE: Duration = Duration::from_millis(1000);

/// What the caller asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramInput {
    /// Race (case) id.
    pub case: String,
    /// Program name.
    pub program: String,
    /// The program's spec, for a program that does not ship with the lab (`racelab check
    /// --spec`); `None`: the bundled spec named `program`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Program>,
    /// A schedule replacing the cell's own; `Some("")` replays with none.
    pub schedule: Option<String>,
    /// The control of a race test: nothing parks; the schedule's actions run once the child
    /// is ready instead of at their points.
    #[serde(default)]
    pub unforced: bool,
    /// A probe as well: every lifecycle syscall of the program ([`LIFECYCLE`]) is notified and
    /// recorded in the trace (arrive and pass), held nowhere.
    #[serde(default)]
    pub watch: bool,
}

/// The syscalls that make up a process's lifecycle: what exploration watches and draws points
/// from (creating and replacing processes, waiting, signalling, signal masks and handlers,
/// groups and sessions, the parent-death signal, ending).
pub const LIFECYCLE: &[&str] = &[
    "clone",
    "clone3",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "wait4",
    "waitid",
    "kill",
    "tgkill",
    "tkill",
    "pidfd_open",
    "pidfd_send_signal",
    "rt_sigprocmask",
    "rt_sigaction",
    "setpgid",
    "setsid",
    "prctl",
    "exit_group",
];

/// The lifecycle syscall points of the program labelled `label`.
pub fn lifecycle_points(label: &str) -> Vec<racelab_hooks::SyscallPoint> {
    LIFECYCLE
        .iter()
        .filter_map(|name| name.parse::<racelab_hooks::Sysno>().ok())
        .map(|s| racelab_hooks::SyscallPoint::new(label, s))
        .collect()
}

/// Runs one black-box replay as init and returns its output as JSON.
pub fn run(input: serde_json::Value, init: &mut Init) -> Result<serde_json::Value, String> {
    let input: ProgramInput =
        serde_json::from_value(input).map_err(|e| format!("bad input: {e}"))?;
    let case = conformance::find_case(&input.case)
        .ok_or_else(|| format!("no black-box case {}", input.case))?;
    let program = match input.spec {
        Some(spec) => spec,
        None => programs::find(&input.program)
            .ok_or_else(|| format!("unknown program {}", input.program))?
            .clone(),
    };
    let cell = conformance::cell(case.race, &program.name);
    let text = match (input.schedule, cell) {
        (Some(text), _) => text,
        (None, Some(cell)) => cell.schedule_for(&program.label()),
        (None, None) => {
            return Err(format!("{} has no cell for {}: give a schedule", case.race, program.name));
        }
    };
    let schedule = Schedule::parse(&text).map_err(|e| format!("malformed schedule: {e}"))?;
    // Why the case does not apply: the cell's word, or the spec's.
    let not_applicable = match cell.map(|c| c.expect) {
        Some(CellExpect::NotApplicable(why)) => Some(why.to_string()),
        _ => program.case(case.race).and_then(|c| c.skip.clone()),
    };
    let out = replay(case, not_applicable, &program, schedule, (input.unforced, input.watch), init);
    serde_json::to_value(out).map_err(|e| e.to_string())
}

fn replay(
    case: &'static Case,
    not_applicable: Option<String>,
    program: &Program,
    schedule: Schedule,
    (unforced, watch): (bool, bool),
    init: &mut Init,
) -> ReplayOutput {
    let t0 = now();
    let text = schedule.to_string();
    let output = |verdict, trace, report| ReplayOutput {
        verdict,
        trace,
        design_report: report,
        schedule: text.clone(),
        wall_ns: now() - t0,
    };
    if let Some(why) = not_applicable {
        return output(
            Verdict::Skipped { reason: format!("not applicable: {why}") },
            Trace::default(),
            None,
        );
    }
    let runner = match std::env::current_exe() {
        Ok(r) => r,
        Err(e) => {
            return output(
                Verdict::LabError { message: format!("current_exe: {e}") },
                Trace::default(),
                None,
            );
        }
    };
    let binary = match program.binary(&runner) {
        Ok(b) => b,
        Err(reason) => return output(Verdict::Skipped { reason }, Trace::default(), None),
    };
    // Unforced: the same actions, at a moment no point chooses (the child's start), and no
    // thread parked anywhere.
    let late: Vec<Action> = if unforced {
        schedule.actions().map(|(_, a)| a.clone()).filter(|a| a.name != "await").collect()
    } else {
        Vec::new()
    };
    let schedule = if unforced { Schedule::new() } else { schedule };
    let engine = match Engine::new(&schedule, HOLD_DEADLINE.as_nanos() as u64) {
        Ok(mut e) => {
            if watch {
                e.watch(lifecycle_points(&program.label()));
            }
            e
        }
        Err(e) => {
            return output(
                Verdict::LabError { message: format!("schedule: {e}") },
                Trace::default(),
                None,
            );
        }
    };
    match Bb::start(case, program, &binary, &runner, engine, init, t0, REPLAY_DEADLINE) {
        Ok(mut bb) => {
            bb.late = late;
            bb.drive();
            let (verdict, trace, report) = bb.judge();
            output(verdict, trace, Some(report))
        }
        Err(message) => output(Verdict::LabError { message }, Trace::default(), None),
    }
}
