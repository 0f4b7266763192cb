//! races: the race catalog replayed against every design.
//!
//! # The idea
//!
//! A process-lifecycle race (a SIGKILL that reaches a recycled PID, an interrupt that lands
//! during spawn, a wait with no deadline) is usually "proven" once by hand. Here each one is a
//! [`catalog::Race`]: a schedule over named points (see `racelab-hooks`), a setup, and the
//! invariants an oracle checks. A replay forces the schedule on real processes inside a fresh
//! PID namespace and judges the outcome from ground truth the lab collected itself.
//!
//! # One replay
//!
//! 1. [`replay_once`] starts the runner executable through `racelab_sandbox::run`: a fresh
//!    exec that unshares a PID + mount (+ user) namespace. A [`Replayer`] (the CLI, the
//!    catalog tests) execs the runner once as a server and forks a fresh runner per replay.
//! 2. The namespace's PID 1 is the lab's init ([`scenario`]). It forks the design process,
//!    which arms the schedule, runs the design ([`design`]) over the workload child
//!    (`racelab_sandbox::workload`, driven over its stdin and stdout), and sends its hook
//!    actions (make the child exit, recycle its PID, interrupt) to init over a socket
//!    ([`link`]).
//! 3. The oracle ([`oracle`]) turns victim fates, the child's signal log, /proc and the trace
//!    into a [`verdict::Verdict`]: `reproduced` (with the broken invariants and evidence),
//!    `prevented`, `not forced` (the lab could not force the schedule), `skipped` (a missing
//!    capability, named) or `lab error`.
//!
//! # The modules, bottom to top
//!
//! Each module uses only modules listed before it here.
//!
//! - What a race is: [`verdict`] (the invariants, the verdict), [`catalog`] (the races, the
//!   designs, each race's setup).
//! - The facts the oracle judges: [`child_log`] (what the workload said), [`design_report`]
//!   (the design's own word), [`truth`] (what the lab saw); [`output`] (what a replay hands
//!   back), [`programs`] (the black-box programs and how to read their reports).
//! - Gathering and judging: [`conformance`] (which program runs which case), [`evidence`]
//!   (ground truth read from the kernel), [`oracle`] (the verdict from the facts).
//! - The designs: [`design`] (the adapters), [`link`] (the design process's line to init).
//! - Init's side shared by both scenarios: `lab` (pipes, notes, the workload's channel).
//! - The scenarios: [`scenario`] (instrumented designs), [`blackbox`] (unmodified programs).
//! - [`runner`]: the runner executable's dispatch to a scenario.
//! - The caller's side: [`matrix`], [`schema`], [`junit`], [`render`], [`docs`], [`explore`],
//!   and this file (replays through the sandbox, plans).
//!
//! # Running it
//!
//! `cargo test -p races` replays every race against every design it applies to,
//! `RACES_REPEAT` times each (default 10): a legacy design must reproduce every time, the
//! reference never. `racelab replay Q1 --design global_atomics --repeat 1000` is the long run;
//! `--schedule` replaces a race's schedule, `--format mermaid` draws the timeline.
//!
//! # Reading a failure
//!
//! A failing cell prints the replay command, the verdict with its evidence, and the merged
//! trace: the design's points (arrive, park, release, pass, actions) and the lab's notes
//! (what the child said, which PID a victim took), in time order.
//!
//! # Limitations
//!
//! A race's schedule names points the designs mark; a design without a point never reaches
//! it, so an edge into it is vacuous there. Single-threaded designs bind all their actors to
//! their one thread, and an edge they could only satisfy by waiting for themselves is recorded
//! as unrealizable instead of deadlocking.

// The modules, bottom to top (see the crate docs): each uses only modules of the groups above
// its own.

// What a race is and what a replay concludes.
pub mod verdict;

pub mod catalog;

// The facts the oracle judges.
pub mod child_log;
pub mod design_report;
pub mod truth;

pub mod output;
pub mod programs;

// How facts are gathered and judged; which programs run which cases.
pub mod check;
pub mod conformance;
pub mod evidence;
pub mod oracle;

// The designs, and the link from the design process to the lab's init.
pub mod design;
pub mod link;

// Init's side of every replay.
mod lab;

// The scenarios: instrumented designs, unmodified programs.
pub mod blackbox;
pub mod scenario;

// The runner executable's dispatch.
pub mod runner;

// The caller's side: reports, docs pages, exploration.
pub mod explore;
pub mod matrix;

pub mod docs;
pub mod schema;

pub mod junit;

pub mod render;

pub use matrix::PlanReport;
pub use output::ReplayOutput;
pub use render::Format;

use catalog::{DesignId, Race};
use racelab_hooks::{HookError, Schedule};
use scenario::ReplayInput;
use std::path::Path;
use std::time::Duration;
use verdict::Verdict;

/// Parses a schedule in the hooks' text form (unknown points are an error listing the known).
pub fn parse_schedule(text: &str) -> Result<Schedule, HookError> {
    Schedule::parse(text)
}

/// What to replay.
#[derive(Debug, Default, Clone)]
pub struct ReplayPlan {
    /// Races (empty: the whole catalog).
    pub races: Vec<&'static Race>,
    /// Designs (empty: every design each race applies to).
    pub designs: Vec<DesignId>,
    /// A schedule replacing every race's own.
    pub schedule: Option<Schedule>,
    /// Replays per race and design (at least 1).
    pub repeat: u32,
    /// Black-box programs to replay the races against (instead of the designs).
    pub programs: Vec<&'static programs::Program>,
}

/// Who the runner runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// The caller's own user.
    Caller,
    /// uid/gid 65534 through `setpriv` (the caller must be root): proves the lab works for a
    /// normal user, with a user namespace.
    Nobody,
}

/// Replays `race` against `design` once, through the runner executable `runner`.
pub fn replay_once(
    runner: &Path,
    race: &Race,
    design: DesignId,
    schedule: Option<&str>,
) -> ReplayOutput {
    replay_as(runner, race, design, schedule, RunAs::Caller)
}

/// Like [`replay_once`], choosing the user the runner runs as.
pub fn replay_as(
    runner: &Path,
    race: &Race,
    design: DesignId,
    schedule: Option<&str>,
    user: RunAs,
) -> ReplayOutput {
    end_replays_on_interrupt();
    let (input, spec) = request(race, design, schedule, None);
    let cmd = as_user(racelab_sandbox::command(runner, scenario::SCENARIO, &input, &spec), user);
    answer(racelab_sandbox::run_command(cmd, &spec), race, schedule)
}

/// Makes SIGINT, SIGTERM and SIGHUP end this process's replays and then the process, cleanly
/// and within [`racelab_sandbox::interrupt::INTERRUPT_BOUND`]
/// ([`racelab_sandbox::interrupt::install`]). Every entry point that starts replays calls it:
/// a test binary has no `main` of ours to call it from. A front end with a `main` calls it (or
/// the sandbox's `install`) first thing. Idempotent; a failure is said once, on stderr.
pub fn end_replays_on_interrupt() {
    static SAID: std::sync::Once = std::sync::Once::new();
    if let Err(e) = racelab_sandbox::interrupt::install() {
        SAID.call_once(|| eprintln!("racelab: an interrupt will not end replays cleanly: {e}"));
    }
}

/// Replays many times from one exec of the runner: a runner server (`racelab_sandbox::Server`)
/// forks a fresh single-threaded runner for every replay, which then builds its namespace and
/// runs the scenario exactly as an exec'd runner would. The exec (the dearest step of a short
/// replay) is paid once, at the first replay. A server that fails is dropped and the next
/// replay starts a new one.
#[derive(Debug)]
pub struct Replayer {
    runner: std::path::PathBuf,
    user: RunAs,
    server: Option<racelab_sandbox::Server>,
}

impl Replayer {
    /// A replayer over the runner executable `runner`, run as `user`. Starts nothing yet.
    pub fn new(runner: &Path, user: RunAs) -> Replayer {
        end_replays_on_interrupt();
        Replayer { runner: runner.to_path_buf(), user, server: None }
    }

    /// Replays case `case` against the black-box program `program` once (see
    /// [`replay_program`]).
    pub fn replay_program(
        &mut self,
        case: &conformance::Case,
        program: &programs::Program,
        schedule: Option<&str>,
    ) -> ReplayOutput {
        self.run_program(case, program, schedule, Mode::Forced)
    }

    /// Like [`Replayer::replay_program`], probing as well: the trace records every lifecycle
    /// syscall the program makes ([`blackbox::LIFECYCLE`]), each thread's arrivals in order.
    pub fn replay_program_watched(
        &mut self,
        case: &conformance::Case,
        program: &programs::Program,
        schedule: &str,
    ) -> ReplayOutput {
        self.run_program(case, program, Some(schedule), Mode::Watched)
    }

    /// The control of a black-box race test: nothing parks, and the cell's actions run once
    /// the child is ready instead of at their points. A legacy cell must not reproduce every
    /// time this way, or the lab is not what forces it.
    pub fn replay_program_unforced(
        &mut self,
        case: &conformance::Case,
        program: &programs::Program,
    ) -> ReplayOutput {
        self.replay_program_unforced_with(case, program, None)
    }

    /// Like [`Replayer::replay_program_unforced`], with `schedule`'s actions instead of the
    /// cell's (`None`: the cell's).
    pub fn replay_program_unforced_with(
        &mut self,
        case: &conformance::Case,
        program: &programs::Program,
        schedule: Option<&str>,
    ) -> ReplayOutput {
        self.run_program(case, program, schedule, Mode::Unforced)
    }

    fn run_program(
        &mut self,
        case: &conformance::Case,
        program: &programs::Program,
        schedule: Option<&str>,
        mode: Mode,
    ) -> ReplayOutput {
        let (input, spec) = program_request(case, program, schedule, mode);
        self.run(blackbox::SCENARIO, input, spec, case.race(), schedule)
    }

    fn run(
        &mut self,
        scenario: &str,
        input: serde_json::Value,
        spec: racelab_sandbox::Spec,
        race: &Race,
        schedule: Option<&str>,
    ) -> ReplayOutput {
        let mut server = match self.server.take() {
            Some(s) => s,
            None => {
                let cmd = as_user(racelab_sandbox::Server::command(&self.runner), self.user);
                match racelab_sandbox::Server::start(cmd) {
                    Ok(s) => s,
                    Err(e) => return answer(Err(e), race, schedule),
                }
            }
        };
        let result = server.run(scenario, &input, &spec);
        if result.is_ok() {
            self.server = Some(server);
        }
        answer(result, race, schedule)
    }

    /// Replays `race` against `design` once (see [`replay_once`]).
    pub fn replay(
        &mut self,
        race: &Race,
        design: DesignId,
        schedule: Option<&str>,
    ) -> ReplayOutput {
        self.replay_with(race, design, schedule, None)
    }

    /// Like [`Replayer::replay`], with the lab's waits shortened or lengthened (`None`: the
    /// defaults, [`scenario::Patience::DEFAULT`]).
    pub fn replay_with(
        &mut self,
        race: &Race,
        design: DesignId,
        schedule: Option<&str>,
        patience: Option<scenario::Patience>,
    ) -> ReplayOutput {
        let (input, spec) = request(race, design, schedule, patience);
        self.run(scenario::SCENARIO, input, spec, race, schedule)
    }
}

/// The scenario's input and the sandbox spec of one replay.
fn request(
    race: &Race,
    design: DesignId,
    schedule: Option<&str>,
    patience: Option<scenario::Patience>,
) -> (serde_json::Value, racelab_sandbox::Spec) {
    let input = ReplayInput {
        race: race.id.to_string(),
        design: design.name().to_string(),
        schedule: schedule.map(str::to_string),
        patience,
    };
    let spec = racelab_sandbox::Spec {
        // Room for the lab's own deadline (which time held in lab actions extends, up to
        // REPLAY_DEADLINE + 1.5 s) and its cleanup: a runner killed before its cleanup leaves
        // an O2 child frozen.
        deadline: scenario::REPLAY_DEADLINE + Duration::from_secs(5),
        ..racelab_sandbox::Spec::default()
    };
    (serde_json::to_value(&input).unwrap_or_default(), spec)
}

/// How a black-box replay runs its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At its points.
    Forced,
    /// At its points, every lifecycle syscall recorded as well (a probe).
    Watched,
    /// Its actions once the child is ready, nothing held (the control of a race test).
    Unforced,
}

/// The input and sandbox spec of one black-box replay.
fn program_request(
    case: &conformance::Case,
    program: &programs::Program,
    schedule: Option<&str>,
    mode: Mode,
) -> (serde_json::Value, racelab_sandbox::Spec) {
    // A bundled program travels by name; any other by its whole spec.
    let bundled = programs::find(&program.name).is_some_and(|p| p == program);
    let input = blackbox::ProgramInput {
        case: case.race.to_string(),
        program: program.name.to_string(),
        spec: (!bundled).then(|| program.clone()),
        watch: mode == Mode::Watched,
        schedule: schedule.map(str::to_string),
        unforced: mode == Mode::Unforced,
    };
    let spec = racelab_sandbox::Spec {
        deadline: blackbox::REPLAY_DEADLINE + Duration::from_secs(3),
        ..racelab_sandbox::Spec::default()
    };
    (serde_json::to_value(&input).unwrap_or_default(), spec)
}

/// Replays `case` against the black-box `program` once, through an exec of the runner.
pub fn replay_program(
    runner: &Path,
    case: &conformance::Case,
    program: &programs::Program,
    schedule: Option<&str>,
    user: RunAs,
) -> ReplayOutput {
    end_replays_on_interrupt();
    let (input, spec) = program_request(case, program, schedule, Mode::Forced);
    let cmd = as_user(racelab_sandbox::command(runner, blackbox::SCENARIO, &input, &spec), user);
    answer(racelab_sandbox::run_command(cmd, &spec), case.race(), schedule)
}

/// `cmd` as `user`: wrapped in `setpriv` for [`RunAs::Nobody`].
fn as_user(cmd: std::process::Command, user: RunAs) -> std::process::Command {
    if user == RunAs::Caller {
        return cmd;
    }
    let mut wrapped = std::process::Command::new("setpriv");
    wrapped
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    // The wrapped command's stdio (setpriv execs it, so the pipes reach the runner): a server
    // talks over stdin and stdout, a one-shot runner reads nothing and reports on both outputs.
    use std::process::Stdio;
    if cmd.get_args().any(|a| a == racelab_sandbox::SERVE_MODE) {
        wrapped.stdin(Stdio::piped()).stdout(Stdio::piped());
    } else {
        wrapped.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    wrapped
}

/// The replay's output from the sandbox's outcome (a lab error when there is none).
fn answer(
    outcome: Result<racelab_sandbox::RunOutcome, racelab_sandbox::SandboxError>,
    race: &Race,
    schedule: Option<&str>,
) -> ReplayOutput {
    let lab_error = |message: String| {
        ReplayOutput::early(
            Verdict::LabError { message },
            schedule.unwrap_or(race.schedule).to_string(),
            0,
        )
    };
    match outcome {
        Ok(racelab_sandbox::RunOutcome::Finished { output, .. }) => serde_json::from_value(output)
            .unwrap_or_else(|e| lab_error(format!("bad replay output: {e}"))),
        Ok(other) => lab_error(format!("the sandbox run did not finish: {other:?}")),
        Err(e) => lab_error(format!("sandbox: {e}")),
    }
}

/// The black-box cells a plan runs: (case, cell), cases in matrix order (or as named), each
/// case's programs in the order of the program list.
pub fn program_cells(
    plan: &ReplayPlan,
) -> Vec<(&'static conformance::Case, &'static conformance::Cell)> {
    let cases: Vec<&'static conformance::Case> = if plan.races.is_empty() {
        conformance::CASES.iter().collect()
    } else {
        plan.races.iter().filter_map(|r| conformance::find_case(r.id)).collect()
    };
    let mut out = Vec::new();
    for case in cases {
        for program in &plan.programs {
            if let Some(cell) = conformance::cell(case.race, &program.name) {
                out.push((case, cell));
            }
        }
    }
    out
}

/// The cells a plan runs, in catalog order: (race, design, what the race expects of it).
pub fn plan_cells(plan: &ReplayPlan) -> Vec<(&'static Race, DesignId, verdict::Expect)> {
    if !plan.programs.is_empty() {
        return Vec::new();
    }
    let races: Vec<&'static Race> =
        if plan.races.is_empty() { catalog::CATALOG.iter().collect() } else { plan.races.clone() };
    let mut cells = Vec::new();
    for race in races {
        for &(design, expect) in race.designs {
            if plan.designs.is_empty() || plan.designs.contains(&design) {
                cells.push((race, design, expect));
            }
        }
    }
    cells
}

/// Runs a plan: every (race, design) cell `repeat` times.
pub fn run_plan(runner: &Path, plan: &ReplayPlan) -> PlanReport {
    run_plan_with(runner, plan, &mut |_, _| {})
}

/// Like [`run_plan`], calling `progress(cell, replay)` after every replay (for a progress bar).
pub fn run_plan_with(
    runner: &Path,
    plan: &ReplayPlan,
    progress: &mut dyn FnMut(&matrix::Cell, &ReplayOutput),
) -> PlanReport {
    let schedule = plan.schedule.as_ref().map(|s| s.to_string());
    let mut replayer = Replayer::new(runner, RunAs::Caller);
    let mut report = PlanReport::default();
    for (case, cell) in program_cells(plan) {
        let program = programs::find(cell.program).expect("every cell names a bundled program");
        let (expect, na) = match cell.expect {
            conformance::CellExpect::Run(e) => (e, None),
            conformance::CellExpect::NotApplicable(why) => (verdict::Expect::Prevent, Some(why)),
        };
        let mut out = matrix::Cell::new(
            case.race(),
            matrix::Subject::Program(program),
            expect,
            schedule.clone(),
        );
        out.not_applicable = na;
        if na.is_none() {
            for _ in 0..plan.repeat.max(1) {
                let r = replayer.replay_program(case, program, schedule.as_deref());
                progress(&out, &r);
                out.add(r);
            }
        }
        report.cells.push(out);
    }
    for (race, design, expect) in plan_cells(plan) {
        let mut cell = matrix::Cell::new(race, design, expect, schedule.clone());
        for _ in 0..plan.repeat.max(1) {
            let out = replayer.replay(race, design, schedule.as_deref());
            progress(&cell, &out);
            cell.add(out);
        }
        report.cells.push(cell);
    }
    report
}

/// Replays `race` once against each design it applies to and renders its docs page.
pub fn race_page(runner: &Path, race: &'static Race) -> String {
    let mut replayer = Replayer::new(runner, RunAs::Caller);
    let runs: Vec<(DesignId, ReplayOutput)> =
        race.designs.iter().map(|&(d, _)| (d, replayer.replay(race, d, None))).collect();
    docs::page(race, &runs)
}
