//! `racelab check`: any program, described as data ([`crate::programs::Program`]), checked
//! case by case, its windows found by exploring its own syscalls. No schedule is written per
//! program: the hand-written cells of [`crate::conformance`] are the regression suite, and the
//! held-out test of this search.
//!
//! For each case that applies to the program's roles ([`applies`]):
//!
//! 1. **Probe.** One replay with no schedule, every lifecycle syscall watched
//!    ([`crate::blackbox::LIFECYCLE`]): which of them each process and thread of the program
//!    makes, in order. A case with no window of its own (F1, R1: the case's setup is the whole
//!    test) is judged on this replay.
//! 2. **One point.** For a case whose window is opened by a lab action (E1's SIGTERM to the
//!    program, Z1's burst of orphans, Q4's SIGINT), the action at each point occurrence the
//!    probe saw, in the order they came: `on tini.setpgid: terminate(target)`. Each of these
//!    replays is watched too.
//! 3. **One point, held until another thread's syscall returned.** A window often closes when
//!    the held thread goes on; holding it until a later syscall of another thread has returned
//!    (seen in that point's own replay, after the action) keeps it open:
//!    `on tini.setpgid: terminate(target), await(tini.kill#2.returned)`.
//!
//! A replay whose verdict is `reproduced` is a candidate finding: it is replayed `confirm` times
//! more, unwatched, exactly as the printed command replays it, and stands only if it broke the
//! same invariants every time. One that does not is kept as `flaky (k of N)`, and the search
//! goes on. A case whose budget ran out with nothing found `held`; one that could not draw a
//! single schedule (the program made none of the lifecycle syscalls) is `not explored`, with
//! what the probe saw, never `held`.

use crate::Replayer;
use crate::conformance::{self, Case};
use crate::output::ReplayOutput;
use crate::programs::{Program, Role};
use crate::verdict::Verdict;
use racelab_hooks::EventKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Instant;

/// How hard a check looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckConfig {
    /// Most replays spent searching one case (the confirmations not counted).
    pub budget: u32,
    /// Replays a candidate finding must break in, all of them, to stand (N of N).
    pub confirm: u32,
    /// Occurrences of one point drawn at most (`kill#1` .. `kill#k`).
    pub occurrences: u32,
}

impl Default for CheckConfig {
    fn default() -> CheckConfig {
        CheckConfig { budget: 200, confirm: 20, occurrences: 3 }
    }
}

/// The lab action that opens a case's window, or `None` for a case whose setup is the whole
/// test. Generic per case, never per program.
pub fn window_action(case: &str) -> Option<&'static str> {
    match case {
        "E1" | "E2" | "E2L" => Some("terminate(target)"),
        "Z1" => Some("orphans(child)"),
        "Q4" | "Q4b" => Some("interrupt(target)"),
        "Q1" => Some("exit(child), recycle(child)"),
        _ => None,
    }
}

/// Why a case cannot be explored at syscall boundaries at all, when it cannot.
pub fn unexplorable(case: &str) -> Option<&'static str> {
    match case {
        "Q3" => Some(
            "Q3's window has no syscall inside it (a store of the stop reason between two threads): it needs a code point, which exploration does not draw",
        ),
        _ => None,
    }
}

/// Whether `case` applies to `program`: `Err` says why not.
pub fn applies(case: &Case, program: &Program) -> Result<(), String> {
    if let Some(why) = program.case(case.race).and_then(|c| c.skip.clone()) {
        return Err(why);
    }
    let has = |r: Role| program.roles.contains(&r);
    let forwards = program.forwarded_signals();
    let term = nix::sys::signal::Signal::SIGTERM as i32;
    let roles = |list: &[Role]| list.iter().map(|r| r.name()).collect::<Vec<_>>().join(" or ");
    match case.race {
        "E1" | "F1" if forwards.is_empty() => {
            Err("it forwards no signal (promises.forwards)".into())
        }
        "E1" if !forwards.contains(&term) => Err("it does not forward SIGTERM".into()),
        "E2" | "E2L" if !has(Role::Init) => {
            Err(format!("only for the role {}", roles(&[Role::Init])))
        }
        "E2" | "E2L" if !forwards.contains(&term) => Err("it does not forward SIGTERM".into()),
        "Q1" | "Q3" | "Q4" | "Q4b" | "R1" if !has(Role::WrapperTimeout) => {
            Err(format!("only for the role {}", roles(&[Role::WrapperTimeout])))
        }
        _ => Ok(()),
    }
}

/// The cases `racelab check` knows, in its order.
pub fn cases() -> impl Iterator<Item = &'static Case> {
    conformance::CASES.iter()
}

/// A finding: a schedule that breaks invariants, and how often it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// The schedule, in its text form.
    pub schedule: String,
    /// The invariants it broke in the replay that found it, by id (`I3`).
    pub invariants: Vec<String>,
    /// The evidence of each, from that replay.
    pub evidence: Vec<String>,
    /// Replays of the confirmation that broke the same invariants.
    pub reproduced: u32,
    /// Replays of the confirmation.
    pub of: u32,
    /// The pair of events whose order decides it, found by flipping the schedule's one
    /// ordering and replaying ([`racing_pair`]); `None` for a finding with no schedule (the
    /// case's setup breaks the program whatever the order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub racing_pair: Option<String>,
    /// The replay that found it (verdict, timeline).
    pub found_by: ReplayOutput,
}

/// What one case showed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CaseVerdict {
    /// Every replay the budget allowed held every invariant.
    Held,
    /// A schedule broke invariants in N of N replays.
    Broke {
        /// The finding.
        finding: Box<Finding>,
        /// The spec says the case is known to break, and why (`[cases.E2] known = "..."`):
        /// reported, not failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known: Option<String>,
    },
    /// A schedule broke invariants, but not every time: timing-dependent.
    Flaky {
        /// The finding, with its rate.
        finding: Box<Finding>,
    },
    /// The case does not apply to the program.
    NotApplicable {
        /// Why.
        reason: String,
    },
    /// No schedule could be drawn or run: nothing was tested.
    NotExplored {
        /// Why, with what the probe saw.
        reason: String,
        /// The lab cannot explore this case at syscall boundaries (a limit of the lab, said
        /// as such, not a failure of the program's check); otherwise the program made none of
        /// the syscalls the case needs, and the check fails.
        lab_limit: bool,
    },
    /// A capability or the program is missing.
    Skipped {
        /// What, and how to get it.
        reason: String,
    },
    /// The lab failed.
    LabError {
        /// What went wrong.
        message: String,
    },
}

impl CaseVerdict {
    /// The word a matrix prints.
    pub fn label(&self) -> String {
        match self {
            CaseVerdict::Held => "held".into(),
            CaseVerdict::Broke { known: None, .. } => "broke".into(),
            CaseVerdict::Broke { known: Some(_), .. } => "broke (known)".into(),
            CaseVerdict::Flaky { finding } => {
                format!("flaky ({} of {})", finding.reproduced, finding.of)
            }
            CaseVerdict::NotApplicable { .. } => "n/a".into(),
            CaseVerdict::NotExplored { .. } => "not explored".into(),
            CaseVerdict::Skipped { .. } => "skipped".into(),
            CaseVerdict::LabError { .. } => "lab error".into(),
        }
    }

    /// Whether a CI gate fails on it: a finding (flaky or not), a case nothing was tested in,
    /// a lab error. Not applicable passes; skipped passes unless the caller is strict.
    pub fn fails(&self) -> bool {
        matches!(
            self,
            CaseVerdict::Broke { known: None, .. }
                | CaseVerdict::Flaky { .. }
                | CaseVerdict::NotExplored { lab_limit: false, .. }
                | CaseVerdict::LabError { .. }
        )
    }
}

/// One case of one check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    /// The case (race id).
    pub case: String,
    /// Its title.
    pub title: String,
    /// What it showed.
    #[serde(flatten)]
    pub verdict: CaseVerdict,
    /// Schedules replayed in the search (confirmations not counted).
    pub schedules: u32,
    /// Replays in all, confirmations included.
    pub replays: u32,
    /// Replays whose schedule the program never met (`not forced`).
    pub not_forced: u32,
    /// Seconds the case took.
    pub seconds: f64,
    /// Distinct lifecycle point occurrences the replays reached (`tini.setpgid#1`).
    pub points_reached: u32,
    /// The program's lifecycle syscalls the probe saw, in order, one line per thread.
    pub probe: Vec<String>,
}

/// A thread's lifecycle point arrivals in one replay: (time, tid, occurrence text).
fn arrivals(out: &ReplayOutput, label: &str) -> Vec<(u64, u32, String)> {
    out.trace
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Arrive && e.actor == label)
        .map(|e| (e.time_ns, e.tid, e.subject.clone()))
        .collect()
}

/// When the schedule's action began in `out` (its thread's arrival at the point it holds), and
/// that thread. The arrival, not the action's end: a program may react to the action (forward
/// the signal) before the lab records that the action is done.
fn action_ran(out: &ReplayOutput) -> Option<(u64, u32)> {
    let action = out.trace.events.iter().find(|e| e.kind == EventKind::Action)?;
    let arrived = out
        .trace
        .events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Arrive && e.tid == action.tid && e.time_ns <= action.time_ns
        })
        .map(|e| e.time_ns)
        .max();
    Some((arrived.unwrap_or(action.time_ns), action.tid))
}

/// Whether a replay that kept every invariant tested nothing: a Z1 replay whose program ended
/// before it went quiet after the burst (no zombies were counted).
fn untested(out: &ReplayOutput) -> bool {
    out.trace.events.iter().any(|e| e.detail == crate::evidence::NO_COUNT)
}

/// The probe's lines: per thread, its lifecycle syscalls in order.
fn probe_lines(out: &ReplayOutput, label: &str) -> Vec<String> {
    let mut threads: Vec<(u32, Vec<String>)> = Vec::new();
    for (_, tid, subject) in arrivals(out, label) {
        let at = subject.strip_prefix(&format!("{label}.")).unwrap_or(&subject).to_string();
        match threads.iter_mut().find(|(t, _)| *t == tid) {
            Some((_, v)) => v.push(at),
            None => threads.push((tid, vec![at])),
        }
    }
    threads.into_iter().map(|(t, v)| format!("thread {t}: {}", v.join(" "))).collect()
}

/// A point occurrence at another moment of its syscall: `tini.kill#2` at `.returned` is
/// `tini.kill.returned#2` (the occurrence comes last).
fn at_moment(subject: &str, moment: &str) -> String {
    match subject.rsplit_once('#') {
        Some((base, n)) => format!("{base}.{moment}#{n}"),
        None => format!("{subject}.{moment}"),
    }
}

/// The `.exit` form of a process-creating syscall's occurrence (`tini.clone#2` is
/// `tini.clone.exit#2`), or `None` for any other syscall.
fn exit_point(subject: &str, label: &str) -> Option<String> {
    let base = subject.rsplit_once('#').map_or(subject, |(b, _)| b);
    let syscall = base.strip_prefix(label)?.strip_prefix('.')?;
    ["clone", "clone3", "fork", "vfork"].contains(&syscall).then(|| at_moment(subject, "exit"))
}

fn occurrence(subject: &str) -> u32 {
    subject.rsplit_once('#').and_then(|(_, n)| n.parse().ok()).unwrap_or(1)
}

fn broken(v: &Verdict) -> Option<(Vec<String>, Vec<String>)> {
    match v {
        Verdict::Reproduced { violations } => Some((
            violations.iter().map(|v| v.invariant.id().to_string()).collect(),
            violations.iter().map(|v| format!("{}: {}", v.invariant.id(), v.evidence)).collect(),
        )),
        _ => None,
    }
}

/// Checks one case of `program` (see the module docs). `progress` hears of each replay.
pub fn check_case(
    replayer: &mut Replayer,
    case: &'static Case,
    program: &Program,
    cfg: &CheckConfig,
    progress: &mut dyn FnMut(&str, &ReplayOutput),
) -> CaseReport {
    let started = Instant::now();
    let race = case.race();
    let mut report = CaseReport {
        case: case.race.to_string(),
        title: race.title.to_string(),
        verdict: CaseVerdict::Held,
        schedules: 0,
        replays: 0,
        not_forced: 0,
        seconds: 0.0,
        points_reached: 0,
        probe: Vec::new(),
    };
    let done = |mut r: CaseReport, verdict: CaseVerdict| {
        r.verdict = verdict;
        r.seconds = started.elapsed().as_secs_f64();
        r
    };
    if let Err(reason) = applies(case, program) {
        return done(report, CaseVerdict::NotApplicable { reason });
    }
    if let Some(reason) = unexplorable(case.race) {
        let reason = reason.to_string();
        return done(report, CaseVerdict::NotExplored { reason, lab_limit: true });
    }
    let label = program.label();
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut flaky: Option<Finding> = None;
    let mut lab_errors: Vec<String> = Vec::new();
    // Why the first replay that tested nothing did not.
    let mut untested_why: Option<String> = None;
    // The schedules still to try, in order, and those tried.
    let mut queue: std::collections::VecDeque<(String, u32)> = [(String::new(), 0)].into();
    let mut tried: BTreeSet<String> = BTreeSet::new();
    while let Some((schedule, level)) = queue.pop_front() {
        if report.schedules >= cfg.budget {
            break;
        }
        if !tried.insert(schedule.clone()) {
            continue;
        }
        let out = replayer.replay_program_watched(case, program, &schedule);
        progress(&schedule, &out);
        report.schedules += 1;
        report.replays += 1;
        let seen = arrivals(&out, &label);
        reached.extend(seen.iter().map(|(_, _, s)| s.clone()));
        if level == 0 {
            report.probe = probe_lines(&out, &label);
        }
        match &out.verdict {
            Verdict::Skipped { reason } => {
                return done(report, CaseVerdict::Skipped { reason: reason.clone() });
            }
            Verdict::LabError { message } => lab_errors.push(message.clone()),
            Verdict::NotForced { why } => {
                report.not_forced += 1;
                untested_why.get_or_insert_with(|| why.clone());
            }
            // A Z1 replay whose program ended before it went quiet counted nothing: the oracle
            // has nothing to hold against it, and the check must not call that `held`.
            Verdict::Prevented if untested(&out) => {
                report.not_forced += 1;
                untested_why.get_or_insert_with(|| crate::evidence::NO_COUNT.to_string());
            }
            _ => {}
        }
        if let Some((invariants, evidence)) = broken(&out.verdict) {
            // Confirm exactly as the printed command replays it: unwatched, N times.
            let mut same = 0;
            for _ in 0..cfg.confirm {
                let again = replayer.replay_program(case, program, Some(&schedule));
                progress(&schedule, &again);
                report.replays += 1;
                if broken(&again.verdict).is_some_and(|(i, _)| i == invariants) {
                    same += 1;
                }
            }
            let mut finding = Finding {
                schedule: schedule.clone(),
                invariants,
                evidence,
                reproduced: same,
                of: cfg.confirm,
                racing_pair: None,
                found_by: out.clone(),
            };
            if same == cfg.confirm {
                let flips = racing_pair(replayer, case, program, cfg, &mut finding, progress);
                report.replays += flips;
                report.points_reached = reached.len() as u32;
                let known = program.case(case.race).and_then(|c| c.known.clone());
                return done(report, CaseVerdict::Broke { finding: Box::new(finding), known });
            }
            if flaky.as_ref().is_none_or(|f| f.reproduced < finding.reproduced) {
                flaky = Some(finding);
            }
        }
        let Some(action) = window_action(case.race) else { continue };
        match level {
            // Level 1: the action at each point occurrence the probe saw.
            0 => {
                for (_, _, at) in &seen {
                    if occurrence(at) <= cfg.occurrences {
                        queue.push_back((format!("on {at}: {action}"), 1));
                    }
                }
                // The moment a process-creating syscall returned in the parent (the child
                // exists, its PID is not stored yet) has no syscall of its own: held at the
                // syscall's exit, with ptrace.
                for (_, _, at) in &seen {
                    if let Some(exit) = exit_point(at, &label)
                        && occurrence(at) <= cfg.occurrences
                    {
                        queue.push_back((format!("on {exit}: {action}"), 1));
                    }
                }
            }
            // Level 2: held until a later syscall of another thread returned.
            1 => {
                let Some((t, held)) = action_ran(&out) else { continue };
                for (time, tid, at) in &seen {
                    if *time >= t && *tid != held && occurrence(at) <= cfg.occurrences {
                        let returned = at_moment(at, "returned");
                        queue.push_back((format!("{schedule}, await({returned})"), 2));
                    }
                }
            }
            _ => {}
        }
    }
    report.points_reached = reached.len() as u32;
    if let Some(finding) = flaky {
        return done(report, CaseVerdict::Flaky { finding: Box::new(finding) });
    }
    if report.schedules > 0 && lab_errors.len() as u32 == report.schedules {
        let message = lab_errors.into_iter().next().unwrap_or_default();
        return done(report, CaseVerdict::LabError { message });
    }
    if reached.is_empty() {
        let reason = format!(
            "no thread labelled `{label}` made any of the lifecycle syscalls ({}): is `{label}` the file name of the binary that runs (a script's interpreter has its own)?",
            crate::blackbox::LIFECYCLE.join(", "),
        );
        return done(report, CaseVerdict::NotExplored { reason, lab_limit: false });
    }
    if window_action(case.race).is_some()
        && report.not_forced + 1 >= report.schedules
        && report.schedules > 1
    {
        let reason = format!(
            "no drawn schedule tested anything ({} of {} not forced; the first: {})",
            report.not_forced,
            report.schedules,
            untested_why.unwrap_or_default()
        );
        return done(report, CaseVerdict::NotExplored { reason, lab_limit: false });
    }
    done(report, CaseVerdict::Held)
}

/// Names the pair of events whose order decides a finding that stands (N of N), by flipping
/// the one ordering its schedule imposes and replaying:
///
/// - `on P: A, await(Q.returned)`: the same without the await. If that still breaks N of N,
///   the await decided nothing and the shorter schedule becomes the finding (a shrink step);
///   its own pair is then named below. Otherwise the pair is (P held, Q returned): the window
///   is open only while P's thread waits for Q.
/// - `on P: A`: the same action with no point to hold (unforced: it runs once the child is
///   ready). If that breaks less than every time, the pair is (A, P): the action must land
///   while the thread is at P. If it breaks every time too, no interleaving decides it.
///
/// The flips cost up to `cfg.confirm` replays each; `progress` hears of each, and their count
/// is returned.
pub fn racing_pair(
    replayer: &mut Replayer,
    case: &'static Case,
    program: &Program,
    cfg: &CheckConfig,
    finding: &mut Finding,
    progress: &mut dyn FnMut(&str, &ReplayOutput),
) -> u32 {
    let mut replays = 0;
    let same = |v: &Verdict, f: &Finding| broken(v).is_some_and(|(i, _)| i == f.invariants);
    // How many of `n` replays of `run` break the finding's invariants; stops at the first
    // that does not (one is enough to show the order matters).
    let mut count =
        |run: &mut dyn FnMut(&mut Replayer) -> ReplayOutput, f: &Finding, what: &str| {
            let mut k = 0;
            for _ in 0..cfg.confirm {
                replays += 1;
                let out = run(replayer);
                progress(what, &out);
                if !same(&out.verdict, f) {
                    break;
                }
                k += 1;
            }
            k
        };
    if let Some((shorter, awaited)) = finding.schedule.rsplit_once(", await(") {
        let awaited = awaited.trim_end_matches(')').to_string();
        let shorter = shorter.to_string();
        let k = count(&mut |r| r.replay_program(case, program, Some(&shorter)), finding, &shorter);
        if k < cfg.confirm {
            let held = shorter.split(':').next().unwrap_or("").trim_start_matches("on ");
            finding.racing_pair = Some(format!(
                "{held} held until {awaited}: without the wait the window closes ({k} of {} replays broke before one did not)",
                cfg.confirm
            ));
            return replays;
        }
        // The await decided nothing: the shorter schedule is the finding (N of N above).
        finding.schedule = shorter;
    }
    let Some((at, action)) = finding.schedule.strip_prefix("on ").and_then(|s| s.split_once(": "))
    else {
        return replays;
    };
    let (at, action) = (at.to_string(), action.to_string());
    let schedule = finding.schedule.clone();
    let unforced = format!("{schedule} (unforced)");
    let k = count(
        &mut |r| r.replay_program_unforced_with(case, program, Some(&schedule)),
        finding,
        &unforced,
    );
    finding.racing_pair = Some(if k < cfg.confirm {
        format!(
            "{action} while the thread is at {at}: the same action once the child is ready broke {k} of {} times before one did not",
            cfg.confirm
        )
    } else {
        format!(
            "none: {action} breaks it at any moment ({k} of {} unforced replays broke)",
            cfg.confirm
        )
    });
    replays
}

/// The whole check of one program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// `racelab.check`.
    pub schema: String,
    /// The document's version ([`VERSION`]).
    pub version: u32,
    /// The program's name.
    pub program: String,
    /// The label its points use.
    pub label: String,
    /// Its binary.
    pub binary: Option<String>,
    /// The cases, in order.
    pub cases: Vec<CaseReport>,
    /// The budget and confirmation used.
    pub budget: u32,
    /// N of N.
    pub confirm: u32,
}

/// The JSON document's name.
pub const SCHEMA: &str = "racelab.check";
/// Its version: bumped when a field is removed, renamed, or changes type or meaning.
pub const VERSION: u32 = 1;

impl CheckReport {
    /// Whether a CI gate passes: no case broke, was flaky, went unexplored or failed the lab;
    /// with `strict`, no case was skipped either.
    pub fn passed(&self, strict: bool) -> bool {
        let skipped = |c: &CaseReport| matches!(c.verdict, CaseVerdict::Skipped { .. });
        !self.cases.iter().any(|c| c.verdict.fails() || (strict && skipped(c)))
    }
}

/// What the hand-written matrix says of `case` on `program`, in a check's words: `broke`,
/// `held`, `n/a`, or `no cell`.
pub fn catalogued(case: &str, program: &str) -> &'static str {
    use crate::verdict::Expect;
    match conformance::cell(case, program).map(|c| c.expect) {
        Some(conformance::CellExpect::Run(Expect::Reproduce(_))) => "broke",
        Some(conformance::CellExpect::Run(_)) => "held",
        Some(conformance::CellExpect::NotApplicable(_)) => "n/a",
        None => "no cell",
    }
}

/// Whether an explored verdict agrees with the catalogued one (a case with no cell agrees
/// with anything: it is new ground).
pub fn agrees(catalogued: &str, explored: &CaseVerdict) -> bool {
    matches!(
        (catalogued, explored),
        ("no cell", _)
            | ("broke", CaseVerdict::Broke { .. })
            | ("held", CaseVerdict::Held)
            | ("n/a", CaseVerdict::NotApplicable { .. })
    )
}

/// docs/check.md's held-out table: every bundled program checked from scratch (no schedule of
/// the matrix used), each case's explored verdict beside the catalogued one, with the schedules
/// and seconds it took and the schedule found.
pub fn heldout_page(reports: &[CheckReport], command: &str) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# `racelab check` on the lab's own programs: the held-out test\n");
    let _ = writeln!(
        s,
        "Generated by `{command}`: every program of `programs/*.toml` checked from scratch, with \
         none of the hand-written schedules of the conformance matrix (races/src/conformance.rs). \
         Each case's verdict found by exploration stands beside the matrix's own (`broke` for a \
         reproduced cell, `held` for a prevented one). A finding counts only when it broke the same \
         invariants in every confirmation replay. `schedules` is how many schedules the search \
         replayed before it stopped (at the finding, or at its budget); `s` its seconds, \
         confirmations included. Cases that neither the matrix nor the program's roles make \
         apply are left out.\n"
    );
    let (mut agree, mut total, mut found, mut catalogued_broke) = (0, 0, 0, 0);
    let _ = writeln!(
        s,
        "| program | case | matrix | explored | agrees | schedules | s | schedule found |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---:|---:|---|");
    for r in reports {
        for c in &r.cases {
            let cat = catalogued(&c.case, &r.program);
            let ok = agrees(cat, &c.verdict);
            if cat != "no cell" {
                total += 1;
                agree += usize::from(ok);
            }
            // A case the matrix has no cell for and that does not apply says nothing: left out.
            if cat == "no cell" && matches!(c.verdict, CaseVerdict::NotApplicable { .. }) {
                continue;
            }
            if cat == "broke" {
                catalogued_broke += 1;
                found += usize::from(matches!(c.verdict, CaseVerdict::Broke { .. }));
            }
            let pair = match &c.verdict {
                CaseVerdict::Broke { finding, .. } => {
                    finding.racing_pair.clone().unwrap_or_default()
                }
                _ => String::new(),
            };
            let schedule = match &c.verdict {
                CaseVerdict::Broke { finding, .. } | CaseVerdict::Flaky { finding } => {
                    if finding.schedule.is_empty() {
                        "(none: the case's setup)".to_string()
                    } else {
                        format!("`{}`", finding.schedule.replace('\n', "; "))
                    }
                }
                CaseVerdict::NotApplicable { .. } => String::new(),
                CaseVerdict::NotExplored { reason, .. }
                | CaseVerdict::Skipped { reason }
                | CaseVerdict::LabError { message: reason } => reason.replace('|', "/"),
                CaseVerdict::Held => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {cat} | {} | {} | {} | {:.1} | {schedule} | {} |",
                r.program,
                c.case,
                c.verdict.label(),
                if cat == "no cell" {
                    "new"
                } else if ok {
                    "yes"
                } else {
                    "**no**"
                },
                c.schedules,
                c.seconds,
                pair.replace('|', "/")
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{agree} of {total} catalogued cells agree; {found} of the {catalogued_broke} reproduced cells were rediscovered from scratch.\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::find;

    fn case(id: &str) -> &'static Case {
        conformance::find_case(id).unwrap()
    }

    #[test]
    fn cases_apply_by_role_and_promise_as_the_matrix_has_them() {
        // Every cell the hand-written matrix replays applies, and every n/a cell does not.
        for cell in conformance::CELLS {
            let program = find(cell.program).unwrap();
            let applies = applies(case(cell.case), program).is_ok();
            let replayed = matches!(cell.expect, conformance::CellExpect::Run(_));
            assert_eq!(applies, replayed, "{} {}", cell.case, cell.program);
        }
        assert!(applies(case("E2"), find("timeout").unwrap()).is_err());
        assert!(applies(case("Q1"), find("tini").unwrap()).is_err());
    }

    #[test]
    fn every_case_either_has_an_action_or_is_its_own_test() {
        for c in cases() {
            let own = matches!(c.race, "F1" | "R1");
            assert!(
                window_action(c.race).is_some() || own || unexplorable(c.race).is_some(),
                "{}",
                c.race
            );
        }
        assert_eq!(occurrence("tini.kill#3"), 3);
        assert_eq!(occurrence("tini.kill"), 1);
        assert_eq!(
            exit_point("timeout.clone#2", "timeout").as_deref(),
            Some("timeout.clone.exit#2")
        );
        assert_eq!(exit_point("timeout.clone", "timeout").as_deref(), Some("timeout.clone.exit"));
        assert_eq!(exit_point("timeout.kill", "timeout"), None);
        // Each form parses as the schedule language writes it.
        for s in
            ["on t.setpgid: terminate(target), await(t.kill.returned#2)", "on t.clone.exit#2: x()"]
        {
            racelab_hooks::Schedule::parse(s).unwrap();
        }
        assert_eq!(at_moment("t.kill#2", "returned"), "t.kill.returned#2");
    }
}
