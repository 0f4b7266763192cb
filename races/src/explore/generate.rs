//! Schedules as proptest values: [`ScheduleStrategy`] draws a `Vec<Step>` over a
//! [`Vocabulary`] (uniformly at random, or PCT-style), and [`StepsTree`] shrinks it the way a
//! person would: drop steps, then lower occurrences toward `#1`.

use std::fmt;
use std::sync::Arc;

use proptest::num::u32::BinarySearch;
use proptest::prelude::RngExt;
use proptest::strategy::{NewTree, Strategy, ValueTree};
use proptest::test_runner::{TestRng, TestRunner};
use racelab_hooks::{At, Edge, MAX_EDGES, Step};

use super::vocabulary::Vocabulary;

/// Most edges the random strategy draws for one schedule.
pub const MAX_RANDOM_EDGES: u32 = 4;

/// How schedules are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchStrategy {
    /// Up to [`MAX_RANDOM_EDGES`] edges, each between two points of different threads drawn
    /// uniformly, occurrences uniform up to the highest the probes saw; plus the lab actions.
    Random,
    /// PCT (Burckhardt et al., ASPLOS 2010): distinct random priorities per thread, `depth - 1`
    /// random priority change points over the point occurrences, the resulting total order of
    /// occurrences turned into one edge per switch of thread; plus the lab actions.
    Pct {
        /// The bug depth `d` PCT targets: `d - 1` change points.
        depth: u32,
    },
}

impl SearchStrategy {
    /// `random` or `pct`.
    pub fn name(self) -> &'static str {
        match self {
            SearchStrategy::Random => "random",
            SearchStrategy::Pct { .. } => "pct",
        }
    }
}

impl fmt::Display for SearchStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchStrategy::Random => f.write_str("random"),
            SearchStrategy::Pct { depth } => write!(f, "pct (depth {depth})"),
        }
    }
}

/// A proptest strategy over `Vec<Step>` for one race and design.
#[derive(Debug, Clone)]
pub struct ScheduleStrategy {
    vocabulary: Arc<Vocabulary>,
    search: SearchStrategy,
}

impl ScheduleStrategy {
    /// Draws schedules over `vocabulary` with `search`.
    pub fn new(vocabulary: Arc<Vocabulary>, search: SearchStrategy) -> ScheduleStrategy {
        ScheduleStrategy { vocabulary, search }
    }

    /// One schedule, from `rng`.
    pub fn draw(&self, rng: &mut TestRng) -> Vec<Step> {
        let v = &self.vocabulary;
        let mut steps = lab_actions(v, rng);
        match self.search {
            SearchStrategy::Random => steps.extend(random_edges(v, rng)),
            SearchStrategy::Pct { depth } => steps.extend(pct_edges(v, depth, rng)),
        }
        steps
    }
}

impl Strategy for ScheduleStrategy {
    type Tree = StepsTree;
    type Value = Vec<Step>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        Ok(StepsTree::new(self.draw(runner.rng())))
    }
}

/// An occurrence of point `i` of the vocabulary, uniform up to the highest seen.
fn occurrence(v: &Vocabulary, i: usize, rng: &mut TestRng) -> At {
    let (point, max) = v.points[i];
    At::nth(point, rng.random_range(1..=max.max(1)))
}

/// Each lab action of the race, with probability 1/2, at a uniform point occurrence.
fn lab_actions(v: &Vocabulary, rng: &mut TestRng) -> Vec<Step> {
    let mut steps = Vec::new();
    if v.action_points.is_empty() {
        return steps;
    }
    for action in &v.actions {
        if rng.random_bool(0.5) {
            let i = v.action_points[rng.random_range(0..v.action_points.len())];
            steps.push(Step::On { at: occurrence(v, i, rng), action: action.clone() });
        }
    }
    steps
}

fn random_edges(v: &Vocabulary, rng: &mut TestRng) -> Vec<Step> {
    if v.edge_pairs.is_empty() {
        return Vec::new();
    }
    let n = rng.random_range(0..=MAX_RANDOM_EDGES);
    (0..n)
        .map(|_| {
            let (a, b) = v.edge_pairs[rng.random_range(0..v.edge_pairs.len())];
            Step::Edge(Edge { before: occurrence(v, a, rng), after: occurrence(v, b, rng) })
        })
        .collect()
}

/// PCT's order over the vocabulary's threads, as edges at every switch of thread.
///
/// The paper's scheduler runs the enabled thread of highest priority; at the i-th change
/// point (a step number) the running thread's priority drops to `d - i`, below every initial
/// priority. We simulate it over the occurrences the probes saw, assuming every thread is
/// always enabled (the lab cannot see what a thread waits for in the kernel), and write the
/// resulting total order as happens-before edges where it switches threads. A thread the
/// kernel actually blocks (a reap before the child died) makes the schedule unrealizable: the
/// lab reports it as `not forced` and exploration moves on.
pub fn pct_order(threads: &[Vec<At>], depth: u32, rng: &mut TestRng) -> Vec<(usize, At)> {
    let n = threads.len();
    let k: usize = threads.iter().map(Vec::len).sum();
    let d = depth.max(1) as usize;
    // Distinct initial priorities d..d+n, in random order (Fisher-Yates).
    let mut priority: Vec<usize> = (d..d + n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        priority.swap(i, j);
    }
    // d - 1 distinct change points among the steps 1..=k.
    let mut change: Vec<usize> = Vec::new();
    while change.len() < (d - 1).min(k) {
        let c = rng.random_range(1..=k);
        if !change.contains(&c) {
            change.push(c);
        }
    }
    let mut next = vec![0usize; n];
    let mut order = Vec::with_capacity(k);
    for step in 1..=k {
        let Some(t) = (0..n).filter(|&t| next[t] < threads[t].len()).max_by_key(|&t| priority[t])
        else {
            break;
        };
        order.push((t, threads[t][next[t]]));
        next[t] += 1;
        if let Some(i) = change.iter().position(|&c| c == step) {
            priority[t] = d - (i + 1);
        }
    }
    order
}

fn pct_edges(v: &Vocabulary, depth: u32, rng: &mut TestRng) -> Vec<Step> {
    let order = pct_order(&v.threads, depth, rng);
    order
        .windows(2)
        .filter(|w| w[0].0 != w[1].0)
        .map(|w| Step::Edge(Edge { before: w[0].1, after: w[1].1 }))
        .take(MAX_EDGES)
        .collect()
}

/// Where shrinking is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Trying to drop the step at this index (and every later one in turn).
    Drop(usize),
    /// Lowering the occurrence of step `.0`'s `.1`-th point.
    Lower(usize, usize),
    Done,
}

/// What the last simplification did, for `complicate`.
#[derive(Debug, Clone, Copy)]
enum Last {
    Dropped(usize),
    Lowered(usize, usize),
}

/// A schedule being shrunk: first every step is tried without (one at a time, keeping the
/// removal when the violation persists), then every occurrence is lowered toward `#1` by
/// binary search. The same moves a person makes by hand to a failing schedule.
#[derive(Debug, Clone)]
pub struct StepsTree {
    steps: Vec<Step>,
    included: Vec<bool>,
    occurrences: Vec<Vec<BinarySearch>>,
    phase: Phase,
    last: Option<Last>,
}

fn ats(step: &Step) -> Vec<At> {
    match step {
        Step::Edge(e) => vec![e.before, e.after],
        Step::On { at, .. } => vec![*at],
    }
}

impl StepsTree {
    /// A tree whose current value is `steps`.
    pub fn new(steps: Vec<Step>) -> StepsTree {
        let occurrences = steps
            .iter()
            .map(|s| ats(s).iter().map(|a| BinarySearch::new_above(1, a.occurrence)).collect())
            .collect();
        StepsTree {
            included: vec![true; steps.len()],
            steps,
            occurrences,
            phase: Phase::Drop(0),
            last: None,
        }
    }

    /// Moves to the next smaller candidate; false when there is none.
    fn advance(&mut self) -> bool {
        loop {
            match self.phase {
                Phase::Drop(i) => match (i..self.steps.len()).find(|&j| self.included[j]) {
                    Some(j) => {
                        self.included[j] = false;
                        self.phase = Phase::Drop(j + 1);
                        self.last = Some(Last::Dropped(j));
                        return true;
                    }
                    None => self.phase = Phase::Lower(0, 0),
                },
                Phase::Lower(i, k) => {
                    if i >= self.steps.len() {
                        self.phase = Phase::Done;
                    } else if !self.included[i] || k >= self.occurrences[i].len() {
                        self.phase = Phase::Lower(i + 1, 0);
                    } else if self.occurrences[i][k].simplify() {
                        self.last = Some(Last::Lowered(i, k));
                        return true;
                    } else {
                        self.phase = Phase::Lower(i, k + 1);
                    }
                }
                Phase::Done => {
                    self.last = None;
                    return false;
                }
            }
        }
    }
}

impl ValueTree for StepsTree {
    type Value = Vec<Step>;

    fn current(&self) -> Vec<Step> {
        self.steps
            .iter()
            .zip(&self.included)
            .zip(&self.occurrences)
            .filter(|((_, inc), _)| **inc)
            .map(|((step, _), occ)| {
                let n = |k: usize| occ[k].current();
                match step {
                    Step::Edge(e) => Step::Edge(Edge {
                        before: At { occurrence: n(0), ..e.before },
                        after: At { occurrence: n(1), ..e.after },
                    }),
                    Step::On { at, action } => {
                        Step::On { at: At { occurrence: n(0), ..*at }, action: action.clone() }
                    }
                }
            })
            .collect()
    }

    fn simplify(&mut self) -> bool {
        self.advance()
    }

    /// The last simplification lost the violation: undo it, and go straight on to the next
    /// candidate (the undone value failed before; testing it again would only cost a replay).
    fn complicate(&mut self) -> bool {
        match self.last.take() {
            Some(Last::Dropped(i)) => {
                self.included[i] = true;
                self.advance()
            }
            Some(Last::Lowered(i, k)) => {
                if self.occurrences[i][k].complicate() {
                    self.last = Some(Last::Lowered(i, k));
                    true
                } else {
                    self.phase = Phase::Lower(i, k + 1);
                    self.advance()
                }
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError};
    use racelab_hooks::Schedule;
    use racelab_hooks::points::{escalation, main};

    fn rng(seed: u8) -> TestRng {
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32])
    }

    #[test]
    fn pct_keeps_each_threads_order_and_switches_only_when_a_thread_ends_or_changes_priority() {
        let threads = vec![
            vec![At::first(&main::spawned), At::first(&main::reaped), At::first(&main::classified)],
            vec![At::first(&escalation::pid_loaded), At::first(&escalation::before_kill)],
        ];
        for seed in 0..50 {
            let order = pct_order(&threads, 3, &mut rng(seed));
            assert_eq!(order.len(), 5);
            for (t, thread) in threads.iter().enumerate() {
                let mine: Vec<At> =
                    order.iter().filter(|(u, _)| *u == t).map(|(_, a)| *a).collect();
                assert_eq!(&mine, thread, "seed {seed}");
            }
            // A switch happens when a thread runs out (n - 1 times) or at a change point (d - 1).
            let switches = order.windows(2).filter(|w| w[0].0 != w[1].0).count();
            let (n, d) = (threads.len(), 3);
            assert!(switches <= (n - 1) + (d - 1), "seed {seed}: {switches} switches");
        }
    }

    #[test]
    fn pct_with_depth_one_runs_threads_one_after_another() {
        let threads =
            vec![vec![At::first(&main::spawned)], vec![At::first(&escalation::pid_loaded)]];
        let order = pct_order(&threads, 1, &mut rng(7));
        assert_eq!(order.windows(2).filter(|w| w[0].0 != w[1].0).count(), 1);
    }

    /// proptest's runner, driving the tree, ends at the smallest schedule that still fails.
    #[test]
    fn shrinking_drops_needless_steps_and_lowers_occurrences() {
        let start = Schedule::parse(
            "main.spawned < escalation.pid_loaded; on main.reaped#4: recycle(child); \
             escalation.before_kill < main.classified; main.reaped#3 < escalation.kill_sent",
        )
        .unwrap()
        .steps;
        struct Fixed(Vec<Step>);
        impl fmt::Debug for Fixed {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Fixed")
            }
        }
        impl Strategy for Fixed {
            type Tree = StepsTree;
            type Value = Vec<Step>;
            fn new_tree(&self, _: &mut TestRunner) -> NewTree<Self> {
                Ok(StepsTree::new(self.0.clone()))
            }
        }
        // "Fails" while it recycles at main.reaped#2 or later and keeps the kill edge.
        let fails = |steps: &[Step]| {
            let recycles = steps.iter().any(|s| {
                matches!(s, Step::On { at, action } if action.name == "recycle" && at.occurrence >= 2)
            });
            let kill = steps.iter().any(|s| matches!(s, Step::Edge(e) if e.after.point.to_string() == "escalation.kill_sent"));
            recycles && kill
        };
        let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
        let result = runner.run(&Fixed(start), |steps| {
            if fails(&steps) { Err(TestCaseError::fail("violation")) } else { Ok(()) }
        });
        let Err(TestError::Fail(_, minimal)) = result else { panic!("{result:?}") };
        assert_eq!(
            Schedule { steps: minimal }.to_string(),
            "on main.reaped#2: recycle(child); main.reaped < escalation.kill_sent"
        );
    }
}
