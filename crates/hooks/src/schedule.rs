//! Schedules as plain data: happens-before edges between point occurrences, and lab actions
//! attached to point occurrences. The text form is documented in the crate docs; [`Display`]
//! prints the canonical form and [`Schedule::parse`] reads it back (`parse(print(s)) == s`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::code_point::CodePoint;
use crate::error::HookError;
use crate::points::Point;
use crate::syscall_point::SyscallPoint;

/// Most edges one schedule may carry (the controller keeps them in a fixed table).
pub const MAX_EDGES: usize = 64;

/// A point a schedule names: a hook point compiled into a design, a syscall of an unmodified
/// program ([`SyscallPoint`]) or an instruction of one ([`CodePoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointRef {
    /// A point of the catalog, marked in code with `point!`.
    Hook(&'static Point),
    /// The entry, exit or return of a syscall of a black-box program.
    Syscall(SyscallPoint),
    /// An instruction of a black-box program.
    Code(CodePoint),
}

impl PointRef {
    /// The hook point, if this is one.
    pub fn hook(&self) -> Option<&'static Point> {
        match self {
            PointRef::Hook(p) => Some(p),
            PointRef::Syscall(_) | PointRef::Code(_) => None,
        }
    }

    /// The syscall point, if this is one.
    pub fn syscall(&self) -> Option<&SyscallPoint> {
        match self {
            PointRef::Hook(_) | PointRef::Code(_) => None,
            PointRef::Syscall(s) => Some(s),
        }
    }

    /// The code point, if this is one.
    pub fn code(&self) -> Option<&CodePoint> {
        match self {
            PointRef::Code(c) => Some(c),
            PointRef::Hook(_) | PointRef::Syscall(_) => None,
        }
    }

    /// Who reaches it: the actor of a hook point, the program of a syscall point.
    pub fn actor(&self) -> &'static str {
        match self {
            PointRef::Hook(p) => p.actor(),
            PointRef::Syscall(s) => s.program,
            PointRef::Code(c) => c.program,
        }
    }
}

impl From<&'static Point> for PointRef {
    fn from(p: &'static Point) -> PointRef {
        PointRef::Hook(p)
    }
}

impl From<SyscallPoint> for PointRef {
    fn from(s: SyscallPoint) -> PointRef {
        PointRef::Syscall(s)
    }
}

impl From<CodePoint> for PointRef {
    fn from(c: CodePoint) -> PointRef {
        PointRef::Code(c)
    }
}

impl fmt::Display for PointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointRef::Hook(p) => f.write_str(p.name),
            PointRef::Syscall(s) => write!(f, "{s}"),
            PointRef::Code(c) => write!(f, "{c}"),
        }
    }
}

/// One occurrence of a point: `escalation.pid_loaded#2` is the second arrival there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct At {
    /// The point.
    pub point: PointRef,
    /// 1-based occurrence: `#1` is the first arrival (the default when none is written).
    pub occurrence: u32,
}

impl At {
    /// The first occurrence of `point`.
    pub fn first(point: impl Into<PointRef>) -> At {
        At { point: point.into(), occurrence: 1 }
    }

    /// The `n`th (1-based) occurrence of `point`.
    pub fn nth(point: impl Into<PointRef>, n: u32) -> At {
        At { point: point.into(), occurrence: n }
    }

    /// The hook point's index in [`crate::points::ALL`]; `usize::MAX` for a syscall point
    /// (the controller refuses those when it is armed, so it never looks one up).
    #[cfg_attr(not(feature = "hooks"), allow(dead_code))]
    pub(crate) fn hook_index(&self) -> usize {
        self.point.hook().map_or(usize::MAX, |p| usize::from(p.index))
    }
}

impl From<&'static Point> for At {
    fn from(point: &'static Point) -> At {
        At::first(point)
    }
}

impl From<SyscallPoint> for At {
    fn from(point: SyscallPoint) -> At {
        At::first(point)
    }
}

impl From<CodePoint> for At {
    fn from(point: CodePoint) -> At {
        At::first(point)
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.point)?;
        if self.occurrence != 1 {
            write!(f, "#{}", self.occurrence)?;
        }
        Ok(())
    }
}

/// `before < after`: the thread arriving at `after` waits until `before` has been passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Edge {
    /// The occurrence that must be passed first.
    pub before: At,
    /// The occurrence that waits.
    pub after: At,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} < {}", self.before, self.after)
    }
}

/// One argument of a lab action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Arg {
    /// An identifier such as `child` or `SIGTERM`.
    Ident(String),
    /// A signed integer.
    Int(i64),
    /// A duration written `10ms`, `2s`, `500us` or `7ns`.
    Duration(Duration),
    /// A point occurrence, such as the argument of `await(tini.kill(SIGTERM).returned)`.
    Point(At),
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Ident(s) => f.write_str(s),
            Arg::Int(i) => write!(f, "{i}"),
            Arg::Duration(d) => {
                let ns = d.as_nanos();
                if ns % 1_000_000_000 == 0 {
                    write!(f, "{}s", ns / 1_000_000_000)
                } else if ns % 1_000_000 == 0 {
                    write!(f, "{}ms", ns / 1_000_000)
                } else if ns % 1_000 == 0 {
                    write!(f, "{}us", ns / 1_000)
                } else {
                    write!(f, "{ns}ns")
                }
            }
            Arg::Point(at) => write!(f, "{at}"),
        }
    }
}

/// A lab action, as named in a schedule: `recycle(child)`, `signal(child, SIGTERM)`,
/// `freeze(10ms)`. The controller does not know what it means: the caller's [`Actions`] does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Action {
    /// The action's name (an identifier).
    pub name: String,
    /// Its arguments, in order.
    pub args: Vec<Arg>,
}

impl Action {
    /// An action with a name and arguments.
    pub fn new(name: impl Into<String>, args: Vec<Arg>) -> Action {
        Action { name: name.into(), args }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        f.write_str(")")
    }
}

/// One item of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// A happens-before edge.
    Edge(Edge),
    /// `on at: action`: the thread arriving at `at` runs `action` before `at` counts as passed.
    On {
        /// Where the action runs.
        at: At,
        /// What runs.
        action: Action,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Edge(e) => write!(f, "{e}"),
            Step::On { at, action } => write!(f, "on {at}: {action}"),
        }
    }
}

/// A schedule: edges and actions, in the order they were written.
///
/// Printed with `{}` it gives the canonical text form (items joined by `; `), which
/// [`Schedule::parse`] reads back to an equal value. Serde serializes it as that string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// The items, in order. Actions attached to the same occurrence run in this order.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// An empty schedule: every point passes, the trace still records them.
    pub fn new() -> Schedule {
        Schedule::default()
    }

    /// Adds the edge `before < after`.
    pub fn edge(mut self, before: impl Into<At>, after: impl Into<At>) -> Schedule {
        self.steps.push(Step::Edge(Edge { before: before.into(), after: after.into() }));
        self
    }

    /// Attaches `action` to `at`.
    pub fn on(mut self, at: impl Into<At>, action: Action) -> Schedule {
        self.steps.push(Step::On { at: at.into(), action });
        self
    }

    /// The edges, in order.
    pub fn edges(&self) -> impl Iterator<Item = &Edge> {
        self.steps.iter().filter_map(|s| match s {
            Step::Edge(e) => Some(e),
            Step::On { .. } => None,
        })
    }

    /// Whether any point of the schedule is a point of a black-box program (a syscall or a code
    /// point): a black-box schedule.
    pub fn has_syscall_points(&self) -> bool {
        self.points().any(|p| p.hook().is_none())
    }

    /// Whether some point needs ptrace to be held: a syscall's `.exit` or a code point (seccomp
    /// sees syscall entries only). `await(p)` arguments count too.
    pub fn needs_ptrace(&self) -> bool {
        let ptrace = |p: &PointRef| p.code().is_some() || p.syscall().is_some_and(|s| s.is_exit());
        self.points().any(|p| ptrace(&p))
            || self.actions().any(|(_, a)| {
                a.args.iter().any(|arg| matches!(arg, Arg::Point(at) if ptrace(&at.point)))
            })
    }

    /// Every point the schedule names, in order of appearance (with repeats).
    pub fn points(&self) -> impl Iterator<Item = PointRef> + '_ {
        self.steps.iter().flat_map(|s| match s {
            Step::Edge(e) => vec![e.before.point, e.after.point],
            Step::On { at, .. } => vec![at.point],
        })
    }

    /// The attached actions, in order.
    pub fn actions(&self) -> impl Iterator<Item = (&At, &Action)> {
        self.steps.iter().filter_map(|s| match s {
            Step::On { at, action } => Some((at, action)),
            Step::Edge(_) => None,
        })
    }

    /// Checks that the controller can enforce this schedule: occurrences are at least 1, there
    /// are at most [`MAX_EDGES`] edges, and the edges have no cycle (which would always be stuck).
    pub fn validate(&self) -> Result<(), HookError> {
        let invalid = |reason: String| Err(HookError::InvalidSchedule { reason });
        for s in &self.steps {
            let ats: Vec<&At> = match s {
                Step::Edge(e) => vec![&e.before, &e.after],
                Step::On { at, .. } => vec![at],
            };
            if ats.iter().any(|a| a.occurrence == 0) {
                return invalid(format!("`{s}`: occurrences start at #1"));
            }
        }
        let edges: Vec<&Edge> = self.edges().collect();
        if edges.len() > MAX_EDGES {
            return Err(HookError::Capacity {
                what: "schedule edges",
                requested: edges.len(),
                max: MAX_EDGES,
            });
        }
        if let Some(cycle) = find_cycle(&edges) {
            let text: Vec<String> = cycle.iter().map(ToString::to_string).collect();
            return invalid(format!("the edges form a cycle: {}", text.join(" < ")));
        }
        Ok(())
    }
}

/// Depth-first search for a cycle; returns its nodes, first node repeated at the end.
fn find_cycle(edges: &[&Edge]) -> Option<Vec<At>> {
    let mut next: HashMap<At, Vec<At>> = HashMap::new();
    for e in edges {
        next.entry(e.before).or_default().push(e.after);
    }
    let mut done: HashSet<At> = HashSet::new();
    for start in next.keys().copied() {
        let mut path: Vec<At> = Vec::new();
        if visit(start, &next, &mut done, &mut path) {
            return Some(path);
        }
    }
    None
}

fn visit(n: At, next: &HashMap<At, Vec<At>>, done: &mut HashSet<At>, path: &mut Vec<At>) -> bool {
    if let Some(pos) = path.iter().position(|p| *p == n) {
        path.drain(..pos);
        path.push(n);
        return true;
    }
    if done.contains(&n) {
        return false;
    }
    path.push(n);
    for m in next.get(&n).into_iter().flatten() {
        if visit(*m, next, done, path) {
            return true;
        }
    }
    path.pop();
    done.insert(n);
    false
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The caller's lab actions. The controller calls [`Actions::run`] on the thread that arrived at
/// the point, after the point's edges are met and before the point counts as passed.
///
/// An `Err` is recorded in the trace and in [`RunReport::action_errors`](crate::RunReport) and
/// makes the run unclean; it does not panic. Actions are ordinary code: they may allocate and
/// lock, so do not attach one to a point that sits in a signal handler unless the action itself
/// is async-signal-safe.
pub trait Actions: Send + Sync {
    /// Performs `action`, reached at `at`.
    fn run(&self, action: &Action, at: &'static Point) -> Result<(), String>;
}

impl<F> Actions for F
where
    F: Fn(&Action, &'static Point) -> Result<(), String> + Send + Sync,
{
    fn run(&self, action: &Action, at: &'static Point) -> Result<(), String> {
        self(action, at)
    }
}

/// An [`Actions`] that knows no action: every attached action fails with "unknown action".
#[derive(Debug, Clone, Copy, Default)]
pub struct NoActions;

impl Actions for NoActions {
    fn run(&self, action: &Action, _at: &'static Point) -> Result<(), String> {
        Err(format!("unknown action `{}` (no actions were supplied)", action.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::points::{escalation, main};

    #[test]
    fn display_omits_the_default_occurrence_and_prints_units() {
        let s = Schedule::new().edge(&escalation::pid_loaded, At::nth(&main::reaped, 2)).on(
            &main::reaped,
            Action::new(
                "freeze",
                vec![
                    Arg::Duration(Duration::from_millis(10)),
                    Arg::Int(-3),
                    Arg::Ident("child".into()),
                ],
            ),
        );
        assert_eq!(
            s.to_string(),
            "escalation.pid_loaded < main.reaped#2; on main.reaped: freeze(10ms, -3, child)"
        );
    }

    #[test]
    fn a_cycle_is_rejected_with_its_points() {
        let s =
            Schedule::new().edge(&main::spawned, &main::reaped).edge(&main::reaped, &main::spawned);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
        assert!(err.contains("main.spawned") && err.contains("main.reaped"), "{err}");
    }

    #[test]
    fn later_occurrences_of_the_same_point_are_not_a_cycle() {
        let s = Schedule::new().edge(&main::reaped, At::nth(&main::reaped, 2));
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn occurrence_zero_is_rejected() {
        let s = Schedule::new().edge(At::nth(&main::spawned, 0), &main::reaped);
        assert!(matches!(s.validate(), Err(HookError::InvalidSchedule { .. })));
    }

    #[test]
    fn serde_uses_the_text_form() {
        let s = Schedule::new().edge(&main::spawned, &main::reaped);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"main.spawned < main.reaped\"");
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
    }
}
