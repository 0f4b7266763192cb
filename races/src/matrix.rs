//! The verdict matrix (race x design or program) and its own renderings: the text matrix with
//! timelines, the conformance grid, Mermaid. The machine formats (JSON, JUnit) sit above it, in
//! `schema`, `junit` and `render`.

use crate::catalog::{DesignId, Race};
use crate::output::ReplayOutput;
use crate::verdict::{Expect, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write;

/// What a cell replays against: an instrumented design, or a black-box program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A design of the lab, compiled with its points.
    Design(DesignId),
    /// An unmodified program, parked at its syscalls.
    Program(&'static crate::programs::Program),
}

impl Subject {
    /// Its name: `global_atomics`, `tini-static`.
    pub fn name(&self) -> &'static str {
        match self {
            Subject::Design(d) => d.name(),
            Subject::Program(p) => &p.name,
        }
    }

    /// The option that selects it on the command line: `--design global_atomics`.
    pub fn option(&self) -> String {
        match self {
            Subject::Design(d) => format!("--design {}", d.name()),
            Subject::Program(p) => format!("--program {}", p.name),
        }
    }
}

impl From<DesignId> for Subject {
    fn from(d: DesignId) -> Subject {
        Subject::Design(d)
    }
}

/// All replays of one race against one design or program.
#[derive(Debug)]
pub struct Cell {
    /// The race.
    pub race: &'static Race,
    /// The design or program.
    pub design: Subject,
    /// What the race expects of it.
    pub expect: Expect,
    /// The schedule override, if any.
    pub schedule: Option<String>,
    /// Every replay's output.
    pub runs: Vec<ReplayOutput>,
    /// Why the case does not apply to this program (then nothing runs and the cell is as
    /// expected).
    pub not_applicable: Option<&'static str>,
}

impl Cell {
    /// An empty cell.
    pub fn new(
        race: &'static Race,
        design: impl Into<Subject>,
        expect: Expect,
        schedule: Option<String>,
    ) -> Cell {
        Cell {
            race,
            design: design.into(),
            expect,
            schedule,
            runs: Vec::new(),
            not_applicable: None,
        }
    }

    /// Adds one replay.
    pub fn add(&mut self, out: ReplayOutput) {
        self.runs.push(out);
    }

    /// Replays that did not meet the expectation.
    pub fn failures(&self) -> impl Iterator<Item = (usize, &ReplayOutput, String)> {
        self.runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.expect.check(&r.verdict).err().map(|e| (i, r, e)))
    }

    /// Every replay met the expectation (or the case does not apply).
    pub fn as_expected(&self) -> bool {
        self.not_applicable.is_some() || (!self.runs.is_empty() && self.failures().next().is_none())
    }

    /// Counts per verdict label.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for r in &self.runs {
            *m.entry(r.verdict.label()).or_insert(0) += 1;
        }
        m
    }

    /// The command that replays this cell.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!("racelab replay {} {}", self.race.id, self.design.option());
        if let Some(s) = &self.schedule {
            write!(cmd, " --schedule '{}'", s.replace('\n', "; ")).ok();
        }
        cmd
    }

    /// The invariants the first replay broke (ids).
    pub fn first_invariants(&self) -> Vec<&'static str> {
        let first = self.runs.first().map(|r| r.verdict.invariants()).unwrap_or_default();
        first.iter().map(|i| i.id()).collect()
    }

    /// The result column: verdict counts over the replays, with the invariants the first
    /// replay broke (`reproduced 20/20 [I1]`), or `n/a`.
    pub fn result(&self) -> String {
        if self.not_applicable.is_some() {
            return "n/a".to_string();
        }
        let counts: Vec<String> =
            self.counts().iter().map(|(k, n)| format!("{k} {n}/{}", self.runs.len())).collect();
        let inv = self.first_invariants();
        if inv.is_empty() {
            counts.join(", ")
        } else {
            format!("{} [{}]", counts.join(", "), inv.join(","))
        }
    }

    /// Median wall time of one replay inside the sandbox, in microseconds.
    pub fn median_us(&self) -> u64 {
        let mut w: Vec<u64> = self.runs.iter().map(|r| r.wall_ns / 1000).collect();
        w.sort_unstable();
        w.get(w.len() / 2).copied().unwrap_or(0)
    }
}

/// What the columns of the matrix and of a timeline mean: printed above the text report.
pub const LEGEND: &str = "\
matrix: `expected` is what the catalog demands of the design (reproduce = the legacy design must
break these invariants in every replay; prevent = no replay may break any); `result` counts the
verdicts over the replays, with the invariants the first replay broke; `median` is one replay's
wall time inside its sandbox; `ok` says whether every replay met the expectation.
timeline: time since the first event | pid/tid inside the replay's own PID namespace (1/1 is the
lab's init, which also speaks for the child and the oracle; 2/2 is the design's main thread) |
actor (the part of the design, or lab/child/oracle) | what happened (arrive at a point, park,
release, action, pass, note) | the point or subject | detail.

";

/// The result of a plan.
#[derive(Debug, Default)]
pub struct PlanReport {
    /// One cell per (race, design).
    pub cells: Vec<Cell>,
}

impl PlanReport {
    /// Every cell met its expectation.
    pub fn all_as_expected(&self) -> bool {
        self.cells.iter().all(Cell::as_expected)
    }

    pub(crate) fn text(&self, timelines: bool) -> String {
        let mut s = String::new();
        if self.cells.iter().any(|c| !c.runs.is_empty()) {
            s.push_str(LEGEND);
        }
        writeln!(
            s,
            "{:5} {:21} {:22} {:32} {:>9}  ok",
            "race", "design", "expected", "result", "median"
        )
        .ok();
        for c in &self.cells {
            let result = c.result();
            let expected = if c.not_applicable.is_some() { "n/a".into() } else { c.expect.label() };
            writeln!(
                s,
                "{:5} {:21} {:22} {:32} {:>7}us  {}",
                c.race.id,
                c.design.name(),
                expected,
                result,
                c.median_us(),
                if c.as_expected() { "yes" } else { "NO" }
            )
            .ok();
        }
        let grid = self.grid();
        if !grid.is_empty() {
            s.push('\n');
            s.push_str(&grid);
        }
        // Timelines only where a reader needs them: a cell not as expected (or every cell when
        // asked, or the only one of a run of one); the matrix must not scroll away behind a
        // thousand lines of cells that were fine.
        let all = timelines || self.cells.len() == 1;
        let shown = |c: &&Cell| c.not_applicable.is_none() && (all || !c.as_expected());
        for c in self.cells.iter().filter(shown) {
            writeln!(
                s,
                "\n== {} {} against {}: {}",
                c.race.id,
                c.race.slug,
                c.design.name(),
                c.race.title
            )
            .ok();
            if let Some(first) = c.runs.first() {
                writeln!(s, "schedule: {}", first.schedule.replace('\n', "; ")).ok();
                writeln!(s, "timeline of replay #0:").ok();
                match &first.verdict {
                    Verdict::Reproduced { violations } => {
                        for v in violations {
                            writeln!(s, "violated {}: {}", v.invariant, v.evidence).ok();
                        }
                    }
                    other => {
                        writeln!(s, "verdict: {}", other.label()).ok();
                    }
                }
                s.push_str(&first.trace.to_text());
            }
            for (k, (i, r, why)) in c.failures().take(3).enumerate() {
                writeln!(s, "FAILED replay #{i}: {why}").ok();
                if let Verdict::LabError { message } | Verdict::NotForced { why: message } =
                    &r.verdict
                {
                    writeln!(s, "  {message}").ok();
                }
                writeln!(s, "  replay it: {}", c.replay_command()).ok();
                // The first failure's own timeline: a 1-in-1000 failure is only ever seen
                // once, and replay #0's timeline (above) says nothing about it.
                if k == 0 && i != 0 {
                    writeln!(s, "timeline of replay #{i}:").ok();
                    s.push_str(&r.trace.to_text());
                }
            }
        }
        // The last line a terminal shows: what ran and whether it was all as expected.
        let ran: Vec<&Cell> = self.cells.iter().filter(|c| c.not_applicable.is_none()).collect();
        let off = ran.iter().filter(|c| !c.as_expected()).count();
        let replays: usize = ran.iter().map(|c| c.runs.len()).sum();
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        writeln!(
            s,
            "\n{}, {}: {} as expected, {off} not{}{}",
            plural(ran.len(), "cell"),
            plural(replays, "replay"),
            ran.len() - off,
            if self.cells.len() > ran.len() {
                format!(", {} not applicable", self.cells.len() - ran.len())
            } else {
                String::new()
            },
            if off == 0 { " (exit 0)" } else { " (exit 1: see the timelines above)" }
        )
        .ok();
        s
    }

    /// The conformance grid of the black-box cells: one row per program, one column per case,
    /// `reproduced` / `prevented` / `n/a` (`NO` marks a cell not as expected).
    pub fn grid(&self) -> String {
        let programs: Vec<&str> = crate::programs::all()
            .iter()
            .map(|p| p.name.as_str())
            .filter(|p| self.cells.iter().any(|c| c.design.name() == *p))
            .collect();
        if programs.is_empty() {
            return String::new();
        }
        let mut cases: Vec<&str> = Vec::new();
        for c in &self.cells {
            if matches!(c.design, Subject::Program(_)) && !cases.contains(&c.race.id) {
                cases.push(c.race.id);
            }
        }
        let mut s = String::new();
        write!(s, "{:14}", "program").ok();
        for case in &cases {
            write!(s, " {case:>12}").ok();
        }
        s.push('\n');
        for p in programs {
            write!(s, "{p:14}").ok();
            for case in &cases {
                let cell = self.cells.iter().find(|c| c.race.id == *case && c.design.name() == p);
                let text = match cell {
                    None => "-".to_string(),
                    Some(c) if c.not_applicable.is_some() => "n/a".to_string(),
                    Some(c) => {
                        let label = c.runs.first().map_or("none", |r| r.verdict.label());
                        if c.as_expected() { label.to_string() } else { format!("{label} NO") }
                    }
                };
                write!(s, " {text:>12}").ok();
            }
            s.push('\n');
        }
        s
    }

    pub(crate) fn mermaid(&self) -> String {
        let mut s = String::new();
        for c in &self.cells {
            if let Some(first) = c.runs.first() {
                writeln!(
                    s,
                    "%% {} {} against {}: {}",
                    c.race.id,
                    c.race.slug,
                    c.design.name(),
                    first.verdict.label()
                )
                .ok();
                s.push_str(&first.trace.to_mermaid());
                s.push('\n');
            }
        }
        s
    }
}
