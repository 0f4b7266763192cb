//! The verdict matrix (race x design) and its renderings: text, JSON (docs/json.md), JUnit XML,
//! Mermaid.

use crate::catalog::{DesignId, Race};
use crate::scenario::ReplayOutput;
use crate::verdict::{Expect, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The matrix and each cell's timeline, as text.
    Text,
    /// The versioned summary document of docs/json.md ([`crate::schema::ReplayDocument`]).
    Json,
    /// A JUnit XML report, one test case per cell ([`crate::junit`]).
    Junit,
    /// Each cell's timeline as a Mermaid sequence diagram.
    Mermaid,
}

/// All replays of one race against one design.
#[derive(Debug)]
pub struct Cell {
    /// The race.
    pub race: &'static Race,
    /// The design.
    pub design: DesignId,
    /// What the race expects of it.
    pub expect: Expect,
    /// The schedule override, if any.
    pub schedule: Option<String>,
    /// Every replay's output.
    pub runs: Vec<ReplayOutput>,
}

impl Cell {
    /// An empty cell.
    pub fn new(
        race: &'static Race,
        design: DesignId,
        expect: Expect,
        schedule: Option<String>,
    ) -> Cell {
        Cell { race, design, expect, schedule, runs: Vec::new() }
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

    /// Every replay met the expectation.
    pub fn as_expected(&self) -> bool {
        !self.runs.is_empty() && self.failures().next().is_none()
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
        let mut cmd = format!("racelab replay {} --design {}", self.race.id, self.design.name());
        if let Some(s) = &self.schedule {
            write!(cmd, " --schedule '{}'", s.replace('\n', "; ")).ok();
        }
        cmd
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

    /// Renders the report.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Json => {
                let doc = crate::schema::ReplayDocument::from_report(self);
                serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
            }
            Format::Junit => crate::junit::render(self),
            Format::Mermaid => self.mermaid(),
        }
    }

    fn text(&self) -> String {
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
            let counts: Vec<String> =
                c.counts().iter().map(|(k, n)| format!("{k} {n}/{}", c.runs.len())).collect();
            let inv: Vec<&str> = c
                .runs
                .first()
                .map(|r| r.verdict.invariants())
                .unwrap_or_default()
                .iter()
                .map(|i| i.id())
                .collect();
            let result = if inv.is_empty() {
                counts.join(", ")
            } else {
                format!("{} [{}]", counts.join(", "), inv.join(","))
            };
            writeln!(
                s,
                "{:5} {:21} {:22} {:32} {:>7}us  {}",
                c.race.id,
                c.design.name(),
                c.expect.label(),
                result,
                c.median_us(),
                if c.as_expected() { "yes" } else { "NO" }
            )
            .ok();
        }
        for c in &self.cells {
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
            for (i, r, why) in c.failures().take(3) {
                writeln!(s, "FAILED replay #{i}: {why}").ok();
                if let Verdict::LabError { message } | Verdict::NotForced { why: message } =
                    &r.verdict
                {
                    writeln!(s, "  {message}").ok();
                }
                writeln!(s, "  replay it: {}", c.replay_command()).ok();
            }
        }
        s
    }

    fn mermaid(&self) -> String {
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
