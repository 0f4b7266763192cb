//! The machine-readable documents of `racelab replay --format json`, `racelab list --format json`
//! and `racelab doctor --format json`: stable, versioned, documented in docs/json.md.
//!
//! Every document carries `schema` (which document it is) and `version` (bumped on any change a
//! reader could notice: a field removed, renamed or retyped; new fields may be added without a
//! bump). Readers should check both. The types here are the schema: they serialize and
//! deserialize, and a test round-trips each document.

use crate::catalog::{self, DesignId};
use crate::matrix::{Cell, PlanReport};
use crate::verdict::{Expect, Invariant, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of every document below.
pub const VERSION: u32 = 1;

/// `racelab replay --format json`: the verdict matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayDocument {
    /// Always `"racelab.replay"`.
    pub schema: String,
    /// [`VERSION`].
    pub version: u32,
    /// The racelab version that wrote it.
    pub racelab: String,
    /// Every cell met its expectation (the command's exit code is 0 exactly then).
    pub all_as_expected: bool,
    /// The schedule that replaced every race's own (`--schedule`), if any.
    pub schedule_override: Option<String>,
    /// One entry per (race, design): races in the order they were named (catalog order by
    /// default), each race's designs in catalog order.
    pub cells: Vec<CellDocument>,
}

/// One cell: every replay of one race against one design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellDocument {
    /// Race id, `Q1`.
    pub race: String,
    /// Race slug, `kill-recycled-pid`.
    pub slug: String,
    /// What goes wrong, one line.
    pub title: String,
    /// Design name, `global_atomics`.
    pub design: String,
    /// What the catalog expects of this design.
    pub expected: Expected,
    /// The verdict every replay gave (`reproduced`, `prevented`, `not_forced`, `skipped`,
    /// `lab_error`), `mixed` when they differ (see `counts`), or `not_applicable` for a
    /// black-box program the case does not apply to (nothing ran).
    pub actual: String,
    /// Why the case does not apply to this program, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    /// Every replay met the expectation.
    pub as_expected: bool,
    /// How many replays ran.
    pub replays: u32,
    /// Replays per verdict.
    pub counts: Counts,
    /// The invariants broken in any replay, with how often and the first replay's evidence.
    pub violations: Vec<ViolationSummary>,
    /// Median wall time of one replay inside the sandbox (fork of the design to verdict), µs.
    pub median_us: u64,
    /// The command that replays this cell.
    pub replay_command: String,
    /// Up to three replays that did not meet the expectation.
    pub failures: Vec<Failure>,
}

/// What the catalog expects of one design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// `reproduced` (a legacy design that has the race) or `prevented`.
    pub verdict: String,
    /// With `reproduced`: the invariants every replay must break (ids, `I1`..`I7`).
    pub invariants: Vec<String>,
}

/// Replays per verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// The race was forced and an invariant broke.
    pub reproduced: u32,
    /// Every invariant held.
    pub prevented: u32,
    /// The lab could not force the schedule.
    pub not_forced: u32,
    /// A capability is missing here.
    pub skipped: u32,
    /// The lab itself failed.
    pub lab_error: u32,
}

/// One broken invariant of a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationSummary {
    /// `I1`..`I7`.
    pub invariant: String,
    /// What it demands, `no stray signal`.
    pub title: String,
    /// In how many replays it broke.
    pub replays: u32,
    /// The ground truth that showed it, from the first replay that broke it.
    pub evidence: String,
}

/// One replay that did not meet the expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// 0-based index of the replay within the cell.
    pub replay: u32,
    /// Its verdict.
    pub verdict: String,
    /// Why it does not meet the expectation (stuck report, evidence, error).
    pub why: String,
}

/// The snake_case label of a verdict, as in [`Counts`].
pub fn verdict_key(v: &Verdict) -> &'static str {
    match v {
        Verdict::Reproduced { .. } => "reproduced",
        Verdict::Prevented => "prevented",
        Verdict::NotForced { .. } => "not_forced",
        Verdict::Skipped { .. } => "skipped",
        Verdict::LabError { .. } => "lab_error",
    }
}

fn expected(e: &Expect) -> Expected {
    match e {
        Expect::Reproduce(list) => Expected {
            verdict: "reproduced".into(),
            invariants: list.iter().map(|i| i.id().to_string()).collect(),
        },
        Expect::Prevent => Expected { verdict: "prevented".into(), invariants: Vec::new() },
    }
}

impl CellDocument {
    /// The summary of one cell.
    pub fn from_cell(cell: &Cell) -> CellDocument {
        let mut counts = Counts::default();
        let mut broken: BTreeMap<Invariant, (u32, String)> = BTreeMap::new();
        for run in &cell.runs {
            match &run.verdict {
                Verdict::Reproduced { violations } => {
                    counts.reproduced += 1;
                    let mut seen = Vec::new();
                    for v in violations {
                        if seen.contains(&v.invariant) {
                            continue;
                        }
                        seen.push(v.invariant);
                        let entry = broken.entry(v.invariant).or_insert((0, v.evidence.clone()));
                        entry.0 += 1;
                    }
                }
                Verdict::Prevented => counts.prevented += 1,
                Verdict::NotForced { .. } => counts.not_forced += 1,
                Verdict::Skipped { .. } => counts.skipped += 1,
                Verdict::LabError { .. } => counts.lab_error += 1,
            }
        }
        let labels: Vec<&str> = cell.runs.iter().map(|r| verdict_key(&r.verdict)).collect();
        let actual = match labels.first() {
            _ if cell.not_applicable.is_some() => "not_applicable".to_string(),
            Some(first) if labels.iter().all(|l| l == first) => (*first).to_string(),
            Some(_) => "mixed".to_string(),
            None => "none".to_string(),
        };
        CellDocument {
            race: cell.race.id.to_string(),
            slug: cell.race.slug.to_string(),
            title: cell.race.title.to_string(),
            design: cell.design.name().to_string(),
            expected: expected(&cell.expect),
            actual,
            not_applicable: cell.not_applicable.map(str::to_string),
            as_expected: cell.as_expected(),
            replays: cell.runs.len() as u32,
            counts,
            violations: broken
                .into_iter()
                .map(|(i, (replays, evidence))| ViolationSummary {
                    invariant: i.id().to_string(),
                    title: i.title().to_string(),
                    replays,
                    evidence,
                })
                .collect(),
            median_us: cell.median_us(),
            replay_command: cell.replay_command(),
            failures: cell
                .failures()
                .take(3)
                .map(|(i, r, why)| Failure {
                    replay: i as u32,
                    verdict: verdict_key(&r.verdict).to_string(),
                    why,
                })
                .collect(),
        }
    }
}

impl ReplayDocument {
    /// The document of a plan's report.
    pub fn from_report(report: &PlanReport) -> ReplayDocument {
        ReplayDocument {
            schema: "racelab.replay".into(),
            version: VERSION,
            racelab: env!("CARGO_PKG_VERSION").into(),
            all_as_expected: report.all_as_expected(),
            schedule_override: report.cells.iter().find_map(|c| c.schedule.clone()),
            cells: report.cells.iter().map(CellDocument::from_cell).collect(),
        }
    }
}

/// `racelab list --format json`: the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDocument {
    /// Always `"racelab.list"`.
    pub schema: String,
    /// [`VERSION`].
    pub version: u32,
    /// Every race, in catalog order.
    pub races: Vec<RaceEntry>,
    /// Every design the lab knows.
    pub designs: Vec<String>,
}

/// One race of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaceEntry {
    /// `Q1`.
    pub id: String,
    /// `kill-recycled-pid`.
    pub slug: String,
    /// What goes wrong.
    pub title: String,
    /// The public bug it comes from.
    pub origin: String,
    /// The invariants the oracle checks (ids).
    pub invariants: Vec<String>,
    /// The schedule, in the hooks' text form (canonical, items joined by `; `).
    pub schedule: String,
    /// The designs it runs against, with what each must show.
    pub designs: Vec<DesignEntry>,
}

/// A design a race runs against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesignEntry {
    /// Design name.
    pub design: String,
    /// What it must show.
    pub expected: Expected,
}

impl ListDocument {
    /// The catalog as a document.
    pub fn catalog() -> ListDocument {
        ListDocument {
            schema: "racelab.list".into(),
            version: VERSION,
            races: catalog::CATALOG
                .iter()
                .map(|r| RaceEntry {
                    id: r.id.into(),
                    slug: r.slug.into(),
                    title: r.title.into(),
                    origin: r.origin.into(),
                    invariants: r.invariants.iter().map(|i| i.id().to_string()).collect(),
                    schedule: racelab_hooks::Schedule::parse(r.schedule)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|_| r.schedule.to_string()),
                    designs: r
                        .designs
                        .iter()
                        .map(|(d, e)| DesignEntry {
                            design: d.name().into(),
                            expected: expected(e),
                        })
                        .collect(),
                })
                .collect(),
            designs: DesignId::ALL.iter().map(|d| d.name().to_string()).collect(),
        }
    }
}

/// `racelab list --programs --format json`: the black-box programs and where each is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramsDocument {
    /// Always `"racelab.programs"`.
    pub schema: String,
    /// [`VERSION`].
    pub version: u32,
    /// Every program, in matrix order.
    pub programs: Vec<ProgramEntry>,
}

/// One black-box program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramEntry {
    /// Its name (`--program NAME`).
    pub name: String,
    /// The image label of its syscall points (`dumb_init.setsid`).
    pub label: String,
    /// What it is.
    pub about: String,
    /// Its binary here, when installed.
    pub binary: Option<String>,
    /// When it is not installed: what is missing and how to install it.
    pub missing: String,
    /// The cases of the conformance matrix it has a cell in.
    pub cases: Vec<String>,
}

impl ProgramsDocument {
    /// Every program, with where its binary is on this machine (`runner` locates the target
    /// directory for the crates.io programs and for `supervise`).
    pub fn probe(runner: &std::path::Path) -> ProgramsDocument {
        ProgramsDocument {
            schema: "racelab.programs".into(),
            version: VERSION,
            programs: crate::programs::all()
                .iter()
                .map(|p| {
                    let found = p.binary(runner);
                    ProgramEntry {
                        name: p.name.clone(),
                        label: p.label(),
                        about: p.about.clone(),
                        binary: found.as_ref().ok().map(|b| b.display().to_string()),
                        missing: found.err().unwrap_or_default(),
                        cases: crate::conformance::CELLS
                            .iter()
                            .filter(|c| c.program == p.name)
                            .map(|c| c.case.to_string())
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

/// `racelab doctor --format json`: what this machine allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorDocument {
    /// Always `"racelab.doctor"`.
    pub schema: String,
    /// [`VERSION`].
    pub version: u32,
    /// Every probed capability, in display order.
    pub capabilities: Vec<CapabilityEntry>,
}

/// One probed capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityEntry {
    /// Stable key, `ns_last_pid`.
    pub key: String,
    /// Human label, `ns_last_pid`, `cgroup v2 writable`.
    pub name: String,
    /// Whether it is available.
    pub available: bool,
    /// How it was found out, or why it is missing.
    pub detail: String,
}

impl DoctorDocument {
    /// The document of a probe.
    pub fn from_probe(caps: &racelab_sandbox::Capabilities) -> DoctorDocument {
        DoctorDocument {
            schema: "racelab.doctor".into(),
            version: VERSION,
            capabilities: caps
                .entries()
                .into_iter()
                .map(|(key, name, c)| CapabilityEntry {
                    key: key.into(),
                    name: name.into(),
                    available: c.available,
                    detail: c.detail.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ReplayOutput;
    use crate::verdict::Violation;

    fn output(verdict: Verdict, wall_ns: u64) -> ReplayOutput {
        ReplayOutput {
            verdict,
            trace: Default::default(),
            design_report: None,
            schedule: String::new(),
            wall_ns,
        }
    }

    fn sample_report() -> PlanReport {
        let q1 = catalog::find("Q1").unwrap();
        let mut legacy = Cell::new(q1, DesignId::GlobalAtomics, q1.designs[0].1, None);
        let v = Violation {
            invariant: Invariant::I1NoStraySignal,
            evidence: "the victim that took PID 5 was killed by signal 9".into(),
        };
        legacy.add(output(Verdict::Reproduced { violations: vec![v.clone()] }, 3_000_000));
        legacy.add(output(Verdict::NotForced { why: "stuck: main.reaped".into() }, 5_000_000));
        let mut reference = Cell::new(q1, DesignId::Reference, Expect::Prevent, None);
        reference.add(output(Verdict::Prevented, 2_000_000));
        PlanReport { cells: vec![legacy, reference] }
    }

    #[test]
    fn a_replay_document_round_trips_through_json() {
        let doc = ReplayDocument::from_report(&sample_report());
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let back: ReplayDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
        assert_eq!(back.schema, "racelab.replay");
        assert_eq!(back.version, VERSION);
    }

    #[test]
    fn a_cell_counts_verdicts_and_keeps_the_first_evidence() {
        let doc = ReplayDocument::from_report(&sample_report());
        let legacy = &doc.cells[0];
        assert_eq!(legacy.actual, "mixed");
        assert!(!legacy.as_expected);
        assert_eq!(legacy.counts, Counts { reproduced: 1, not_forced: 1, ..Counts::default() });
        assert_eq!(legacy.violations.len(), 1);
        assert_eq!(legacy.violations[0].invariant, "I1");
        assert_eq!(legacy.failures.len(), 1);
        assert_eq!(legacy.failures[0].replay, 1);
        assert_eq!(legacy.replay_command, "racelab replay Q1 --design global_atomics");
        assert_eq!(doc.cells[1].actual, "prevented");
        assert!(!doc.all_as_expected);
    }

    #[test]
    fn the_list_document_round_trips_and_names_every_race() {
        let doc = ListDocument::catalog();
        let back: ListDocument =
            serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        assert_eq!(doc.races.len(), catalog::CATALOG.len());
    }
}
