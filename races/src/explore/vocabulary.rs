//! What a design does in a race when nobody forces anything: the point occurrences it passes,
//! on which thread and in which order, learned from a few probe replays, and the lab actions
//! the race's setup makes meaningful. Generated schedules only name what is in here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use racelab_hooks::points::{self, Point};
use racelab_hooks::{Action, Arg, At, EventKind, Schedule, Step, Trace};

use crate::Replayer;
use crate::catalog::{DesignId, Race, Stop};
use crate::output::ReplayOutput;
use crate::scenario::Patience;
use crate::verdict::{Invariant, Verdict};

/// The probes' park deadline (and wait for the child's `ready`).
const PROBE_PARK: Duration = Duration::from_millis(250);

/// A thread of one probe replay: (probe, pid, tid). Threads of different probes are never the
/// same thread (pids and tids are those of the probe's own namespace).
pub type ThreadKey = (usize, u32, u32);

/// One probe replay: what it scheduled and what it showed.
#[derive(Debug, Clone)]
pub struct Probe {
    /// What it is for: `unforced`, `child exits`, `interrupted`.
    pub name: &'static str,
    /// The schedule it ran.
    pub schedule: Schedule,
    /// Its output.
    pub output: ReplayOutput,
}

/// The points a design passes in a race, and the actions the lab may take there.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Every point passed in some probe, in catalog order, with the highest occurrence seen.
    pub points: Vec<(&'static Point, u32)>,
    /// The threads each point was passed on.
    threads_of: BTreeMap<u16, BTreeSet<ThreadKey>>,
    /// Each thread's occurrences in the order it passed them; an occurrence belongs to the
    /// thread of the first probe that passed it. Ordered by (probe, first pass time).
    pub threads: Vec<Vec<At>>,
    /// The lab actions this race makes meaningful (without `interrupt(design)` for a design
    /// that dies of SIGINT before it can report).
    pub actions: Vec<Action>,
    /// Indices into `points` where an action may be attached.
    pub action_points: Vec<usize>,
    /// Ordered pairs of indices into `points` on different threads: the edges worth generating.
    pub edge_pairs: Vec<(usize, usize)>,
    /// How long exploration replays wait (see [`Patience`]).
    pub patience: Patience,
    /// The probe replays it was learned from.
    pub probes: Vec<Probe>,
}

/// The lab actions a race's setup makes meaningful, in a fixed order.
///
/// The child may exit or be waited for in any race; the design may be interrupted in any race
/// without an outer process. A recycled PID only matters where the oracle watches victims (I1); orphans only where the
/// child's setup forks them; the outer kill only where there is an outer process.
pub fn actions_for(race: &Race) -> Vec<Action> {
    let ident = |s: &str| Arg::Ident(s.to_string());
    let mut v =
        vec![Action::new("exit", vec![ident("child")]), Action::new("ready", vec![ident("child")])];
    // Where there is an outer process the lab's interrupt reaches it, not the design: that is
    // `kill(outer)` again (with SIGINT), and the design dies with no report to judge.
    if race.setup.stop != Stop::KillOuter {
        v.push(Action::new("interrupt", vec![ident("design")]));
    }
    if race.invariants.contains(&Invariant::I1NoStraySignal) {
        v.push(Action::new("recycle", vec![ident("child")]));
    }
    if race.setup.child_start.is_some_and(|c| c.starts_with("fork-orphans")) {
        v.push(Action::new("orphans", vec![ident("child")]));
    }
    if race.setup.stop == Stop::KillOuter {
        v.push(Action::new("kill", vec![ident("outer")]));
    }
    v
}

/// Whether a lab action may be attached to `point`. Points of the `signal` actor may sit in a
/// signal handler (the legacy designs' SIGINT handlers), where a lab action, which is ordinary
/// code that allocates and talks over a socket, is not async-signal-safe: never there. Points
/// of the `lab` actor come after the design returned: what happens then is not the design's
/// doing (orphans exiting after a reaper returned are nobody's to reap).
fn actions_allowed_at(point: &Point) -> bool {
    !matches!(point.actor(), "signal" | "lab")
}

/// The point occurrences a trace passed: (occurrence, thread, time).
fn passes(trace: &Trace) -> Vec<(At, (u32, u32), u64)> {
    trace
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Pass)
        .filter_map(|e| {
            let (name, occurrence) = match e.subject.split_once('#') {
                Some((n, o)) => (n, o.parse().ok()?),
                None => (e.subject.as_str(), 1),
            };
            let point = points::by_name(name)?;
            Some((At::nth(point, occurrence), (e.pid, e.tid), e.time_ns))
        })
        .collect()
}

/// A schedule attaching `actions` to every point of the catalog: the first point the design
/// passes runs them, later ones fail harmlessly (the oracle then says `not forced`).
fn everywhere(actions: &[Action]) -> Schedule {
    let steps = points::ALL
        .iter()
        .filter(|p| actions_allowed_at(p))
        .flat_map(|p| actions.iter().map(|a| Step::On { at: At::first(*p), action: a.clone() }))
        .collect();
    Schedule { steps }
}

/// Errors of the probes.
#[derive(Debug)]
pub(crate) enum ProbeFailure {
    /// The race cannot run here (a missing capability).
    Skipped(String),
    /// The unforced replay failed in the lab itself.
    Lab(String),
}

impl Vocabulary {
    /// Learns the vocabulary of `race` against `design` from probe replays (default patience):
    ///
    /// 1. `unforced`: the empty schedule, the path the design takes when nobody forces anything;
    /// 2. `child exits`: `exit(child)` attached to every point, so a design that would wait
    ///    forever for its child (no duration, no stop) runs to the end and shows its points
    ///    (the first point reached exits the child; later ones fail harmlessly); where the lab
    ///    would kill an outer process, `spare(outer)` first, so the design lives to report;
    /// 3. `interrupted`: the same, plus `interrupt(design)` at the last point passed so far,
    ///    so the design's interrupt path shows its points too, late enough not to race
    ///    anything.
    pub(crate) fn learn(
        replayer: &mut Replayer,
        race: &'static Race,
        design: DesignId,
    ) -> Result<Vocabulary, ProbeFailure> {
        let mut probes: Vec<Probe> = Vec::new();
        // The default patience, but an action waits at most 250 ms for the child to say
        // ready: `exit(child)` attached to a point before the spawn waits for nothing.
        let patience = Patience { park: PROBE_PARK, ..Patience::DEFAULT };
        let mut run = |name: &'static str, schedule: Schedule, probes: &mut Vec<Probe>| {
            let text = schedule.to_string();
            let output = replayer.replay_with(race, design, Some(&text), Some(patience));
            probes.push(Probe { name, schedule, output });
        };
        run("unforced", Schedule::new(), &mut probes);
        match &probes[0].output.verdict {
            Verdict::Skipped { reason } => return Err(ProbeFailure::Skipped(reason.clone())),
            Verdict::LabError { message } => return Err(ProbeFailure::Lab(message.clone())),
            _ => {}
        }
        let ident = |s: &str| Arg::Ident(s.to_string());
        // Where the lab kills an outer process once the child is up (O1, O3), the design dies
        // with it and its trace is lost: these probes spare the outer process.
        let mut first = Vec::new();
        if race.setup.stop == Stop::KillOuter {
            first.push(Action::new("spare", vec![ident("outer")]));
        }
        first.push(Action::new("exit", vec![ident("child")]));
        let exits = everywhere(&first);
        run("child exits", exits.clone(), &mut probes);
        let last = probes
            .iter()
            .flat_map(|p| passes(&p.output.trace))
            .filter(|(at, _, _)| at.point.hook().is_some_and(actions_allowed_at))
            .max_by_key(|(_, _, t)| *t)
            .map(|(at, _, _)| at);
        if let Some(at) = last {
            let mut schedule =
                Schedule::new().on(at, Action::new("interrupt", vec![ident("design")]));
            schedule.steps.extend(exits.steps);
            run("interrupted", schedule, &mut probes);
        }
        Ok(Vocabulary::from_probes(race, probes))
    }

    /// Builds the vocabulary from probe outputs (pure: no replay).
    pub fn from_probes(race: &Race, probes: Vec<Probe>) -> Vocabulary {
        let mut max_occurrence: BTreeMap<u16, (&'static Point, u32)> = BTreeMap::new();
        let mut threads_of: BTreeMap<u16, BTreeSet<ThreadKey>> = BTreeMap::new();
        let mut owner: BTreeMap<(u16, u32), (ThreadKey, u64)> = BTreeMap::new();
        for (i, probe) in probes.iter().enumerate() {
            for (at, (pid, tid), time) in passes(&probe.output.trace) {
                let Some(point) = at.point.hook() else { continue };
                let entry = max_occurrence.entry(point.index).or_insert((point, 0));
                entry.1 = entry.1.max(at.occurrence);
                threads_of.entry(point.index).or_default().insert((i, pid, tid));
                owner.entry((point.index, at.occurrence)).or_insert(((i, pid, tid), time));
            }
        }
        let points: Vec<(&'static Point, u32)> = max_occurrence.into_values().collect();
        // Threads: each occurrence on the thread of the first probe that passed it.
        let mut by_thread: BTreeMap<ThreadKey, Vec<(u64, At)>> = BTreeMap::new();
        for ((index, occurrence), (thread, time)) in &owner {
            let point = points::ALL[usize::from(*index)];
            by_thread.entry(*thread).or_default().push((*time, At::nth(point, *occurrence)));
        }
        let mut threads: Vec<(ThreadKey, u64, Vec<At>)> = by_thread
            .into_iter()
            .map(|(key, mut events)| {
                events.sort_by_key(|(t, at)| (*t, at.point.hook().map(|p| p.index), at.occurrence));
                let first = events.first().map_or(0, |(t, _)| *t);
                (key, first, events.into_iter().map(|(_, at)| at).collect())
            })
            .collect();
        threads.sort_by_key(|(key, first, _)| (key.0, *first));
        let threads: Vec<Vec<At>> = threads.into_iter().map(|(_, _, v)| v).collect();

        // Two points are on one thread when every probe that passed both passed each on that
        // one same thread (and some probe passed both).
        let same_thread = |a: &Point, b: &Point| {
            let in_probe = |p: &Point, i: usize| -> BTreeSet<ThreadKey> {
                threads_of[&p.index].iter().filter(|t| t.0 == i).copied().collect()
            };
            let mut together = false;
            for i in 0..probes.len() {
                let (ta, tb) = (in_probe(a, i), in_probe(b, i));
                if ta.is_empty() || tb.is_empty() {
                    continue;
                }
                if ta.len() != 1 || ta != tb {
                    return false;
                }
                together = true;
            }
            together
        };
        let mut edge_pairs = Vec::new();
        for (i, (a, _)) in points.iter().enumerate() {
            for (j, (b, _)) in points.iter().enumerate() {
                // An edge within one thread is program order (nothing forced) or the thread
                // waiting for itself (never met): neither can expose a race.
                if !same_thread(a, b) {
                    edge_pairs.push((i, j));
                }
            }
        }
        let action_points =
            (0..points.len()).filter(|&i| actions_allowed_at(points[i].0)).collect();
        let patience = patience_for(race, &probes);
        // A design the interrupted probe did not survive long enough to report (no handler:
        // SIGINT's default action killed it) gets no `interrupt(design)`: drawing it would only
        // end replays with nothing to judge.
        let reported = |name: &str| {
            probes.iter().any(|p| p.name == name && !passes(&p.output.trace).is_empty())
        };
        let dies_of_interrupt = probes.iter().any(|p| p.name == "interrupted")
            && !reported("interrupted")
            && reported("child exits");
        let mut actions = actions_for(race);
        if dies_of_interrupt {
            actions.retain(|a| a.name != "interrupt");
        }
        Vocabulary {
            points,
            threads_of,
            threads,
            actions,
            action_points,
            edge_pairs,
            patience,
            probes,
        }
    }

    /// How many distinct point occurrences the probes passed.
    pub fn occurrences(&self) -> usize {
        self.threads.iter().map(Vec::len).sum()
    }

    /// How many threads the probes showed (threads of different probes counted apart).
    pub fn thread_count(&self) -> usize {
        self.threads_of.values().flatten().collect::<BTreeSet<_>>().len()
    }
}

/// Time the design spent in lab actions that failed (a probe's `exit(child)` attached before
/// the child existed waits for it, then fails): lab time, not the design's.
fn failed_action_time(trace: &Trace) -> Duration {
    let mut started: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut total = 0;
    for e in &trace.events {
        match e.kind {
            EventKind::Action => {
                started.insert((e.pid, e.tid), e.time_ns);
            }
            EventKind::ActionFailed => {
                if let Some(t) = started.remove(&(e.pid, e.tid)) {
                    total += e.time_ns.saturating_sub(t);
                }
            }
            _ => {}
        }
    }
    Duration::from_nanos(total)
}

/// Exploration's patience, from what the probes needed (their failed lab actions left out):
/// a parked thread waits at most twice the longest a probe took to pass all its points (at
/// least the race's own timers plus 50 ms, at least 100 ms, at most the default); the design
/// gets that plus twice the slowest probe that finished (the lab extends it past I4's bound
/// when a stop is requested, so the bound check always happens).
fn patience_for(race: &Race, probes: &[Probe]) -> Patience {
    let span = |o: &ReplayOutput| {
        let times: Vec<u64> = passes(&o.trace).iter().map(|(_, _, t)| *t).collect();
        match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) => {
                Duration::from_nanos(b - a).saturating_sub(failed_action_time(&o.trace))
            }
            _ => Duration::ZERO,
        }
    };
    let longest_span = probes.iter().map(|p| span(&p.output)).max().unwrap_or_default();
    // A probe finished when the design's report came back (its trace has the design's points).
    let slowest = probes
        .iter()
        .filter(|p| !passes(&p.output.trace).is_empty())
        .map(|p| {
            Duration::from_nanos(p.output.wall_ns)
                .saturating_sub(failed_action_time(&p.output.trace))
        })
        .max()
        .unwrap_or(Patience::DEFAULT.replay);
    let timers = race.setup.duration.unwrap_or_default() + race.setup.grace;
    let park = (longest_span * 2)
        .max(timers + Duration::from_millis(50))
        .max(Duration::from_millis(100))
        .min(Patience::DEFAULT.park);
    let replay = (park + slowest * 2 + Duration::from_millis(100))
        .clamp(Duration::from_millis(200), Patience::DEFAULT.replay);
    Patience { park, replay }
}

#[cfg(test)]
mod tests {
    use super::*;
    use racelab_hooks::Event;

    fn pass(pid: u32, tid: u32, t: u64, subject: &str) -> Event {
        Event {
            time_ns: t,
            pid,
            tid,
            actor: subject.split('.').next().unwrap_or("").into(),
            kind: EventKind::Pass,
            subject: subject.into(),
            detail: String::new(),
            peer: None,
        }
    }

    fn probe(events: Vec<Event>) -> Probe {
        Probe {
            name: "unforced",
            schedule: Schedule::new(),
            output: ReplayOutput {
                verdict: Verdict::Prevented,
                trace: Trace { events, dropped: 0 },
                design_report: None,
                schedule: String::new(),
                wall_ns: 10_000_000,
            },
        }
    }

    #[test]
    fn edges_are_only_offered_between_points_of_different_threads() {
        let race = crate::catalog::find("Q1").unwrap();
        let v = Vocabulary::from_probes(
            race,
            vec![probe(vec![
                pass(2, 2, 1, "main.spawned"),
                pass(2, 4, 2, "escalation.pid_loaded"),
                pass(2, 2, 3, "main.reaped"),
                pass(2, 2, 4, "main.reaped#2"),
            ])],
        );
        let names: Vec<&str> = v.points.iter().map(|(p, _)| p.name).collect();
        assert_eq!(names, ["main.spawned", "main.reaped", "escalation.pid_loaded"]);
        assert_eq!(v.points[1].1, 2, "main.reaped was passed twice");
        // main.* with escalation.* both ways; never main.* with main.*.
        assert_eq!(v.edge_pairs.len(), 4);
        assert_eq!(v.threads.len(), 2);
        assert_eq!(v.threads[0].len(), 3);
        assert!(v.actions.iter().any(|a| a.name == "recycle"), "Q1 watches victims (I1)");
    }

    #[test]
    fn points_of_one_thread_in_every_probe_get_no_edge_between_them() {
        let race = crate::catalog::find("Z2").unwrap();
        let mut second = probe(vec![pass(2, 7, 1, "main.spawned"), pass(2, 7, 2, "main.reaped")]);
        second.name = "child exits";
        let v = Vocabulary::from_probes(
            race,
            vec![probe(vec![pass(2, 2, 1, "main.spawned"), pass(2, 2, 2, "main.reaped")]), second],
        );
        assert!(v.edge_pairs.is_empty(), "{:?}", v.edge_pairs);
        assert_eq!(v.thread_count(), 2, "threads of different probes are counted apart");
    }

    #[test]
    fn actions_follow_the_race_setup() {
        let names = |id: &str| -> Vec<String> {
            actions_for(crate::catalog::find(id).unwrap()).into_iter().map(|a| a.name).collect()
        };
        assert_eq!(names("Q3"), ["exit", "ready", "interrupt"]);
        assert!(names("Z1").contains(&"orphans".to_string()));
        assert!(names("O1").contains(&"kill".to_string()));
        assert!(!names("O1").contains(&"interrupt".to_string()));
    }

    #[test]
    fn no_action_is_attached_to_a_point_that_may_sit_in_a_signal_handler() {
        let s = everywhere(&[Action::new("exit", vec![])]);
        assert!(s.actions().all(|(at, _)| at.point.actor() != "signal"));
        assert!(s.actions().count() > 5);
    }
}
