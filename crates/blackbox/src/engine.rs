//! The schedule engine for syscall points: pure bookkeeping, no syscalls. The session feeds it
//! what the kernel reported (a thread arrived at a syscall, a thread is gone, an action ended,
//! time passed) and carries out its decisions (let a syscall run, run a lab action).
//!
//! Semantics, the same as the in-process hook controller's (see racelab-hooks):
//! - `a < b`: the thread arriving at (occurrence #k of) `b` is held until `a` has passed.
//! - `on a: act, ...`: the thread arriving at `a`, once `a`'s edges are met, runs the actions in
//!   the written order before `a` counts as passed. `await(p)` is an action the engine runs
//!   itself: the action list pauses until `p` has passed.
//! - A syscall point passes when its syscall is let go (continued). `p.returned` passes when
//!   the thread that made `p`'s syscall made its next intercepted syscall, or ended. `p.exit`
//!   (held at the syscall's exit with ptrace) passes when the thread is let go back to user
//!   space. A code point passes once the thread was stepped over its instruction (the session
//!   does that before it reports the pass: see [`crate::session`]).
//! - One notification may match several points (`tini.kill` and `tini.kill(SIGTERM)`): it
//!   arrives at each, waits for the edges of each, runs the actions of each.
//! - Every hold has a deadline; the first one to pass makes the run stuck: a report is kept, the
//!   schedule is abandoned and every held thread is let go.

use std::collections::{HashMap, VecDeque};

use racelab_hooks::{
    Action, ActionError, Arg, At, CodePoint, Edge, Event, EventKind, Moment, ParkedThread,
    PointRef, RunReport, Schedule, Step, StuckReason, StuckReport, SyscallPoint, Sysno, Trace,
    UnmetEdge, UnmetReason,
};

/// The kernel's id of one notification (one parked syscall).
pub type NotifId = u64;

/// Where a held thread is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// At the entry of a syscall the filter notifies (seccomp user notification).
    Entry {
        /// The syscall.
        syscall: Sysno,
        /// Its argument registers.
        args: [u64; 6],
    },
    /// At the exit of a syscall (a ptrace syscall-exit stop): it ran, the thread has not
    /// returned to user space.
    Exit {
        /// The syscall.
        syscall: Sysno,
        /// Its argument registers at entry.
        args: [u64; 6],
    },
    /// At an instruction breakpoint (ptrace), before the instruction runs.
    Code {
        /// The code points armed at that instruction.
        points: Vec<CodePoint>,
    },
}

/// What the kernel reported: a thread reached a place the lab holds (a notified syscall entry,
/// a traced syscall exit, a breakpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The hold's id (a seccomp notification's, or one the session made for a ptrace stop).
    pub id: NotifId,
    /// The thread, in the lab's PID namespace.
    pub tid: i32,
    /// Its process.
    pub pid: i32,
    /// The program image it runs, as points name it (`tini`, `dumb_init`).
    pub program: String,
    /// Where it is.
    pub site: Site,
    /// When (CLOCK_MONOTONIC ns).
    pub time_ns: u64,
}

impl Arrival {
    /// Whether the point `p` of a schedule is this arrival.
    fn is_at(&self, p: &PointRef) -> bool {
        let syscall_here = |s: &SyscallPoint, syscall: &Sysno, args: &[u64; 6]| {
            s.program == self.program && s.syscall == *syscall && s.args_match(args)
        };
        match (p, &self.site) {
            (PointRef::Syscall(s), Site::Entry { syscall, args }) => {
                s.moment == Moment::Entry && syscall_here(s, syscall, args)
            }
            (PointRef::Syscall(s), Site::Exit { syscall, args }) => {
                s.moment == Moment::Exit && syscall_here(s, syscall, args)
            }
            (PointRef::Code(c), Site::Code { points }) => {
                c.program == self.program && points.contains(c)
            }
            _ => false,
        }
    }
}

/// What the engine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the parked syscall run.
    Continue(NotifId),
    /// Run a lab action now, then report its end with [`Engine::action_done`]. At most one
    /// action is in flight at a time.
    Run {
        /// The notification whose point carries the action.
        id: NotifId,
        /// The action.
        action: Action,
        /// The point occurrence it is attached to.
        at: At,
    },
}

/// A schedule the engine cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A hook point in a black-box schedule: nothing marks it in an unmodified program.
    #[error(
        "`{0}` is a hook point: a black-box program passes only syscall points (program.syscall) and code points (program@...)"
    )]
    HookPoint(String),
    /// A `.returned` point where the engine would have to hold a syscall's return.
    #[error(
        "`{0}`: a syscall's return cannot be held, only waited for (put `.returned` before `<` or in await(...))"
    )]
    HeldReturn(String),
    /// `await` without exactly one point argument.
    #[error("`{0}`: await takes one point, await(program.syscall...)")]
    BadAwait(String),
    /// Edges that form a cycle, an occurrence 0...
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug)]
enum Stage {
    /// Waiting for the edges into its occurrences.
    Edges { parked: bool },
    /// Running its actions; `blocked` is set while an `await` waits.
    Actions { queue: VecDeque<(Action, At)>, blocked: bool },
    /// An action is running (the session carries it out).
    InFlight { queue: VecDeque<(Action, At)> },
}

#[derive(Debug)]
struct Held {
    id: NotifId,
    tid: i32,
    pid: i32,
    program: String,
    arrived_ns: u64,
    ats: Vec<At>,
    stage: Stage,
}

/// The engine: one per replay.
#[derive(Debug)]
pub struct Engine {
    schedule: Schedule,
    /// Every point an arrival may match (entries, exits, code points), once each.
    points: Vec<PointRef>,
    /// The syscall entries among them: what the seccomp filter notifies.
    entries: Vec<SyscallPoint>,
    edges: Vec<Edge>,
    actions: Vec<(At, Action)>,
    deadline_ns: u64,
    arrivals: HashMap<PointRef, u32>,
    passes: HashMap<PointRef, u32>,
    held: Vec<Held>,
    /// The action running now: (notification, action text, point occurrence text).
    in_flight: Option<(NotifId, String, String)>,
    /// Threads whose passed points have a `.returned` form in the schedule: (tid, points).
    returning: HashMap<i32, Vec<SyscallPoint>>,
    abandoned: bool,
    stuck: Option<StuckReport>,
    errors: Vec<ActionError>,
    events: Vec<Event>,
}

/// The point an arrival must match for `at`: a `.returned` is observed at its entry.
fn black_box(at: &At, text: &dyn Fn() -> String) -> Result<PointRef, EngineError> {
    match at.point {
        PointRef::Syscall(s) if s.is_returned() => Ok(PointRef::Syscall(s.entry())),
        PointRef::Syscall(_) | PointRef::Code(_) => Ok(at.point),
        PointRef::Hook(_) => Err(EngineError::HookPoint(text())),
    }
}

/// Refuses to hold a `.returned`.
fn holdable(at: &At, text: &dyn Fn() -> String) -> Result<PointRef, EngineError> {
    match at.point {
        PointRef::Syscall(s) if s.is_returned() => Err(EngineError::HeldReturn(text())),
        _ => black_box(at, text),
    }
}

impl Engine {
    /// An engine enforcing `schedule`, every hold bounded by `deadline_ns`.
    pub fn new(schedule: &Schedule, deadline_ns: u64) -> Result<Engine, EngineError> {
        schedule.validate().map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut points = Vec::new();
        let mut add = |p: PointRef| {
            if !points.contains(&p) {
                points.push(p);
            }
        };
        for step in &schedule.steps {
            match step {
                Step::Edge(e) => {
                    add(black_box(&e.before, &|| e.to_string())?);
                    add(holdable(&e.after, &|| e.to_string())?);
                }
                Step::On { at, action } => {
                    add(holdable(at, &|| step.to_string())?);
                    if action.name == "await" {
                        match action.args.as_slice() {
                            [Arg::Point(target)] => add(black_box(target, &|| step.to_string())?),
                            _ => return Err(EngineError::BadAwait(step.to_string())),
                        }
                    }
                }
            }
        }
        let entries = points
            .iter()
            .filter_map(|p| p.syscall().copied())
            .filter(|s| s.moment == Moment::Entry)
            .collect();
        Ok(Engine {
            schedule: schedule.clone(),
            points,
            entries,
            edges: schedule.edges().copied().collect(),
            actions: schedule.actions().map(|(at, a)| (*at, a.clone())).collect(),
            deadline_ns,
            arrivals: HashMap::new(),
            passes: HashMap::new(),
            held: Vec::new(),
            in_flight: None,
            returning: HashMap::new(),
            abandoned: false,
            stuck: None,
            errors: Vec::new(),
            events: Vec::new(),
        })
    }

    /// Also notifies `points` (syscall entries) and records each arrival and pass in the trace,
    /// holding nothing there: a probe of which of them each thread makes, in what order. A
    /// watched point the schedule names as well is the same point (one count of occurrences).
    pub fn watch(&mut self, points: impl IntoIterator<Item = SyscallPoint>) {
        for p in points {
            let p = p.entry();
            if !self.points.contains(&PointRef::Syscall(p)) {
                self.points.push(PointRef::Syscall(p));
            }
            if !self.entries.contains(&p) {
                self.entries.push(p);
            }
        }
    }

    /// The distinct syscall entry points the schedule names (the filter must notify each).
    pub fn points(&self) -> &[SyscallPoint] {
        &self.entries
    }

    /// Whether the schedule holds a syscall exit or an instruction: then the program must be
    /// traced (see [`crate::trace`]).
    pub fn needs_ptrace(&self) -> bool {
        self.points
            .iter()
            .any(|p| p.code().is_some() || p.syscall().is_some_and(|s| s.moment == Moment::Exit))
    }

    /// The `.exit` points the schedule names (held at a ptrace syscall-exit stop).
    pub fn exit_points(&self) -> Vec<SyscallPoint> {
        let exits = self.points.iter().filter_map(|p| p.syscall().copied());
        exits.filter(|s| s.moment == Moment::Exit).collect()
    }

    /// The code points the schedule names, each with the number of arrivals the schedule
    /// needs there (its highest occurrence named): the breakpoint stays armed until then.
    pub fn code_points(&self) -> Vec<(CodePoint, u32)> {
        let mut out: Vec<(CodePoint, u32)> = Vec::new();
        let awaited = self.actions.iter().flat_map(|(_, a)| {
            a.args.iter().filter_map(|arg| match arg {
                Arg::Point(at) => Some(*at),
                _ => None,
            })
        });
        let ats = self.edges.iter().flat_map(|e| [e.before, e.after]);
        let ats = ats.chain(self.actions.iter().map(|(at, _)| *at)).chain(awaited);
        for at in ats {
            let PointRef::Code(c) = at.point else { continue };
            match out.iter_mut().find(|(p, _)| *p == c) {
                Some((_, n)) => *n = (*n).max(at.occurrence),
                None => out.push((c, at.occurrence)),
            }
        }
        out
    }

    /// Whether the schedule waits for a syscall's return anywhere (then every thread's next
    /// syscall must be observed: the session adds probe rules).
    pub fn needs_returns(&self) -> bool {
        self.edges.iter().any(|e| e.before.point.syscall().is_some_and(|s| s.is_returned()))
            || self.actions.iter().any(|(_, a)| {
                matches!(a.args.as_slice(), [Arg::Point(p)] if p.point.syscall().is_some_and(|s| s.is_returned()))
            })
    }

    fn event(
        &mut self,
        h: (&str, i32, i32),
        time_ns: u64,
        kind: EventKind,
        subject: String,
        detail: String,
    ) {
        self.events.push(Event {
            time_ns,
            pid: h.2 as u32,
            tid: h.1 as u32,
            actor: h.0.to_string(),
            kind,
            subject,
            detail,
            peer: None,
        });
    }

    fn passed(&self, at: &At) -> bool {
        match at.point {
            PointRef::Hook(_) => false,
            p => self.passes.get(&p).copied().unwrap_or(0) >= at.occurrence,
        }
    }

    fn unmet_edges_into(&self, ats: &[At]) -> Vec<Edge> {
        self.edges
            .iter()
            .filter(|e| ats.contains(&e.after) && !self.passed(&e.before))
            .copied()
            .collect()
    }

    /// A thread's earlier syscalls returned: it made another one, or it ended.
    fn returned(&mut self, tid: i32, pid: i32, program: &str, time_ns: u64) {
        let Some(points) = self.returning.remove(&tid) else { return };
        for p in points {
            let r = p.returning();
            let n = self.passes.entry(PointRef::Syscall(r)).or_insert(0);
            *n += 1;
            let subject = At::nth(r, *n).to_string();
            self.event((program, tid, pid), time_ns, EventKind::Pass, subject, String::new());
        }
    }

    /// A notification arrived. Returns what to do now.
    pub fn arrive(&mut self, a: Arrival) -> Vec<Decision> {
        // Only a syscall entry shows that the thread's previous syscall returned (an exit or
        // a breakpoint comes before the thread made another one).
        if matches!(a.site, Site::Entry { .. }) {
            self.returned(a.tid, a.pid, &a.program, a.time_ns);
        }
        let matching: Vec<PointRef> = self.points.iter().filter(|p| a.is_at(p)).copied().collect();
        if matching.is_empty() {
            // Not a point, but it may have shown that an earlier syscall of this thread
            // returned: that can release others.
            let mut out = vec![Decision::Continue(a.id)];
            out.extend(self.progress(a.time_ns));
            return out;
        }
        let mut ats = Vec::new();
        for p in matching {
            let n = self.arrivals.entry(p).or_insert(0);
            *n += 1;
            ats.push(At::nth(p, *n));
        }
        for at in &ats {
            let who = (a.program.as_str(), a.tid, a.pid);
            self.event(who, a.time_ns, EventKind::Arrive, at.to_string(), String::new());
        }
        if self.abandoned {
            for at in &ats {
                self.event(
                    (a.program.as_str(), a.tid, a.pid),
                    a.time_ns,
                    EventKind::Abandoned,
                    at.to_string(),
                    String::new(),
                );
            }
            return vec![Decision::Continue(a.id)];
        }
        self.held.push(Held {
            id: a.id,
            tid: a.tid,
            pid: a.pid,
            program: a.program,
            arrived_ns: a.time_ns,
            ats,
            stage: Stage::Edges { parked: false },
        });
        self.progress(a.time_ns)
    }

    /// The action of notification `id` ended with `result`.
    pub fn action_done(
        &mut self,
        id: NotifId,
        result: Result<(), String>,
        time_ns: u64,
    ) -> Vec<Decision> {
        let Some((running, action, at)) = self.in_flight.take() else { return Vec::new() };
        if running != id {
            self.in_flight = Some((running, action, at));
            return Vec::new();
        }
        let who = self.held.iter().find(|h| h.id == id).map(|h| (h.program.clone(), h.tid, h.pid));
        let (program, tid, pid) = who.unwrap_or_default();
        match result {
            Ok(()) => self.event((&program, tid, pid), time_ns, EventKind::Action, action, at),
            Err(message) => {
                self.errors.push(ActionError {
                    at: at.clone(),
                    action: action.clone(),
                    tid: tid as u32,
                    message: message.clone(),
                });
                self.event(
                    (&program, tid, pid),
                    time_ns,
                    EventKind::ActionFailed,
                    action,
                    format!("at {at}: {message}"),
                );
            }
        }
        if let Some(h) = self.held.iter_mut().find(|h| h.id == id)
            && let Stage::InFlight { queue } = &mut h.stage
        {
            let queue = std::mem::take(queue);
            h.stage = Stage::Actions { queue, blocked: false };
        }
        self.progress(time_ns)
    }

    /// Counts the passes of a thread that goes, and remembers the points whose return matters.
    /// Returns the notification to answer.
    fn pass(&mut self, h: Held, time_ns: u64) -> NotifId {
        for at in &h.ats {
            *self.passes.entry(at.point).or_insert(0) += 1;
            self.event(
                (&h.program, h.tid, h.pid),
                time_ns,
                EventKind::Pass,
                at.to_string(),
                String::new(),
            );
            if let PointRef::Syscall(p) = at.point
                && p.moment == Moment::Entry
                && self.awaits_return_of(&p)
            {
                self.returning.entry(h.tid).or_default().push(p);
            }
        }
        h.id
    }

    fn awaits_return_of(&self, p: &SyscallPoint) -> bool {
        let r = p.returning();
        self.edges.iter().any(|e| e.before.point == PointRef::Syscall(r))
            || self.actions.iter().any(|(_, a)| {
                matches!(a.args.as_slice(), [Arg::Point(at)] if at.point == PointRef::Syscall(r))
            })
    }

    /// Ends the run: every thread still held is let go (a stuck report says where they were),
    /// and the report lists the edges never enforced and the actions that failed.
    pub fn finish(&mut self, time_ns: u64) -> (Vec<Decision>, RunReport) {
        let mut out = Vec::new();
        if !self.held.is_empty() && self.stuck.is_none() {
            self.stuck = Some(self.stuck_report(StuckReason::FinishedWhileParked, time_ns));
        }
        if !self.held.is_empty() {
            self.in_flight = None;
            out = self.abandon(time_ns);
        }
        let unmet_edges: Vec<UnmetEdge> = self
            .edges
            .iter()
            .filter(|e| !(self.passed(&e.before) && self.passed(&e.after)))
            .map(|e| {
                let reached =
                    self.arrivals.get(&e.after.point).copied().unwrap_or(0) >= e.after.occurrence;
                let reason = if reached {
                    UnmetReason::Abandoned
                } else {
                    let before_passes = self.passes.get(&e.before.point).copied().unwrap_or(0);
                    UnmetReason::AfterNeverReached { before_passes }
                };
                UnmetEdge { edge: e.to_string(), reason }
            })
            .collect();
        // Actions whose point was never reached: the program took another path (or has no such
        // syscall there). Listed like an edge whose later point was never reached.
        let mut unmet_edges = unmet_edges;
        for (at, action) in &self.actions {
            let reached = self.arrivals.get(&at.point).copied().unwrap_or(0) >= at.occurrence;
            if !reached {
                unmet_edges.push(UnmetEdge {
                    edge: format!("on {at}: {action}"),
                    reason: UnmetReason::AfterNeverReached { before_passes: 0 },
                });
            }
        }
        let mut trace = Trace { events: std::mem::take(&mut self.events), dropped: 0 };
        trace.sort();
        let report = RunReport {
            trace,
            stuck: self.stuck.take(),
            unmet_edges,
            action_errors: std::mem::take(&mut self.errors),
            still_inside: 0,
        };
        (out, report)
    }

    /// The parked thread of notification `id` is gone (it died, or its syscall was withdrawn).
    pub fn gone(&mut self, id: NotifId, time_ns: u64) -> Vec<Decision> {
        if let Some(i) = self.held.iter().position(|h| h.id == id) {
            let h = self.held.remove(i);
            for at in &h.ats {
                self.event(
                    (&h.program, h.tid, h.pid),
                    time_ns,
                    EventKind::Note,
                    at.to_string(),
                    "the thread left the point without passing (it died)".into(),
                );
            }
        }
        self.progress(time_ns)
    }

    /// Thread `tid` (of `pid`, running `program`) ended: its pending returns happened.
    pub fn thread_ended(
        &mut self,
        tid: i32,
        pid: i32,
        program: &str,
        time_ns: u64,
    ) -> Vec<Decision> {
        self.returned(tid, pid, program, time_ns);
        self.progress(time_ns)
    }

    /// Held threads whose action list waits in `await(p)`: (notification, p's program).
    pub fn blocked_awaits(&self) -> Vec<(NotifId, &'static str)> {
        self.held
            .iter()
            .filter_map(|h| match &h.stage {
                Stage::Actions { queue, blocked: true } => match queue.front() {
                    Some((a, _)) => match a.args.as_slice() {
                        [Arg::Point(p)] => Some((h.id, p.point.actor())),
                        _ => None,
                    },
                    None => None,
                },
                _ => None,
            })
            .collect()
    }

    /// The `await` that notification `id` is blocked in can never be met: the awaited
    /// program cannot run until this thread goes (it waits for it, as a vfork parent waits
    /// for its child's exec). Like an unrealizable edge of the hook controller, it is recorded
    /// and skipped.
    pub fn skip_await(&mut self, id: NotifId, time_ns: u64) -> Vec<Decision> {
        let Some(h) = self.held.iter_mut().find(|h| h.id == id) else { return Vec::new() };
        let Stage::Actions { queue, blocked } = &mut h.stage else { return Vec::new() };
        let Some((action, at)) = queue.pop_front() else { return Vec::new() };
        *blocked = false;
        let who = (h.program.clone(), h.tid, h.pid);
        self.event(
            (&who.0, who.1, who.2),
            time_ns,
            EventKind::Unrealizable,
            at.to_string(),
            format!("{action}: the awaited program cannot run until this thread goes"),
        );
        self.progress(time_ns)
    }

    /// Threads that have pending `.returned` points (the session watches them end).
    pub fn returning_threads(&self) -> Vec<i32> {
        self.returning.keys().copied().collect()
    }

    /// Time passed: checks the deadlines. Returns what to do.
    pub fn tick(&mut self, time_ns: u64) -> Vec<Decision> {
        if self.abandoned {
            return Vec::new();
        }
        let overdue = self.held.iter().find(|h| {
            let waiting =
                matches!(h.stage, Stage::Edges { .. } | Stage::Actions { blocked: true, .. });
            waiting && time_ns.saturating_sub(h.arrived_ns) >= self.deadline_ns
        });
        let Some(h) = overdue else { return Vec::new() };
        let (tid, point) = (h.tid as u32, h.ats.first().map(|a| a.to_string()).unwrap_or_default());
        let reason = StuckReason::Deadline {
            deadline_ms: self.deadline_ns / 1_000_000,
            tid,
            point: point.clone(),
        };
        let who = (h.program.clone(), h.tid, h.pid);
        self.event(
            (&who.0, who.1, who.2),
            time_ns,
            EventKind::Stuck,
            point,
            format!("deadline of {} ms passed", self.deadline_ns / 1_000_000),
        );
        self.stuck = Some(self.stuck_report(reason, time_ns));
        self.abandon(time_ns)
    }

    fn stuck_report(&self, reason: StuckReason, time_ns: u64) -> StuckReport {
        let parked = self
            .held
            .iter()
            .map(|h| ParkedThread {
                tid: h.tid as u32,
                actor: h.program.clone(),
                point: h.ats.iter().map(ToString::to_string).collect::<Vec<_>>().join(" + "),
                waiting_for: match &h.stage {
                    Stage::Edges { .. } => {
                        self.unmet_edges_into(&h.ats).iter().map(ToString::to_string).collect()
                    }
                    Stage::Actions { queue, blocked: true } => {
                        queue.front().map(|(a, _)| a.to_string()).into_iter().collect()
                    }
                    _ => vec!["its action to end".into()],
                },
            })
            .collect();
        let mut trace = Trace { events: self.events.clone(), dropped: 0 };
        trace.sort();
        StuckReport {
            reason,
            at_ns: time_ns,
            parked,
            parked_unlisted: 0,
            unmet_edges: self
                .edges
                .iter()
                .filter(|e| !self.passed(&e.before) || !self.passed(&e.after))
                .map(ToString::to_string)
                .collect(),
            schedule: self.schedule.to_string(),
            trace,
        }
    }

    /// Gives up on the schedule: every held thread (but one whose action is running) goes.
    fn abandon(&mut self, time_ns: u64) -> Vec<Decision> {
        self.abandoned = true;
        let mut out = Vec::new();
        let in_flight = self.in_flight.as_ref().map(|f| f.0);
        let held = std::mem::take(&mut self.held);
        for h in held {
            if Some(h.id) == in_flight {
                self.held.push(h);
                continue;
            }
            for at in &h.ats {
                self.event(
                    (&h.program, h.tid, h.pid),
                    time_ns,
                    EventKind::Abandoned,
                    at.to_string(),
                    String::new(),
                );
            }
            out.push(Decision::Continue(h.id));
        }
        out
    }

    /// Moves every held thread as far as it can go.
    fn progress(&mut self, time_ns: u64) -> Vec<Decision> {
        let mut out = Vec::new();
        loop {
            let mut moved = false;
            let mut i = 0;
            while i < self.held.len() {
                match self.step(i, time_ns, &mut out) {
                    Step1::Stay => i += 1,
                    Step1::Moved => moved = true,
                    Step1::Removed => moved = true,
                }
            }
            if !moved {
                return out;
            }
        }
    }

    fn step(&mut self, i: usize, time_ns: u64, out: &mut Vec<Decision>) -> Step1 {
        let abandoned = self.abandoned;
        let h = &self.held[i];
        let who = (h.program.clone(), h.tid, h.pid);
        let ats = h.ats.clone();
        let subject = ats.first().map(|a| a.to_string()).unwrap_or_default();
        let who = (who.0.as_str(), who.1, who.2);
        match &h.stage {
            Stage::Edges { parked } => {
                let parked = *parked;
                let unmet = if abandoned { Vec::new() } else { self.unmet_edges_into(&ats) };
                if !unmet.is_empty() {
                    if !parked {
                        let detail = unmet.iter().map(ToString::to_string).collect::<Vec<_>>();
                        self.event(who, time_ns, EventKind::Park, subject, detail.join(", "));
                        self.held[i].stage = Stage::Edges { parked: true };
                    }
                    return Step1::Stay;
                }
                if parked {
                    let into: Vec<&Edge> =
                        self.edges.iter().filter(|e| ats.contains(&e.after)).collect();
                    let detail: Vec<String> = into.iter().map(ToString::to_string).collect();
                    let peer = into.first().map(|e| e.before.point.actor().to_string());
                    self.event(who, time_ns, EventKind::Release, subject, detail.join(", "));
                    if let Some(last) = self.events.last_mut() {
                        last.peer = peer;
                    }
                }
                let queue: VecDeque<(Action, At)> = self
                    .actions
                    .iter()
                    .filter(|(at, _)| ats.contains(at))
                    .map(|(at, a)| (a.clone(), *at))
                    .collect();
                self.held[i].stage = Stage::Actions { queue, blocked: false };
                Step1::Moved
            }
            Stage::InFlight { .. } => Step1::Stay,
            Stage::Actions { queue, blocked } => {
                let blocked = *blocked;
                let Some((action, at)) = queue.front().cloned() else {
                    let h = self.held.remove(i);
                    out.push(Decision::Continue(self.pass(h, time_ns)));
                    return Step1::Removed;
                };
                if action.name == "await" {
                    let target = match action.args.as_slice() {
                        [Arg::Point(p)] => *p,
                        _ => return Step1::Stay,
                    };
                    if abandoned || self.passed(&target) {
                        if let Stage::Actions { queue, .. } = &mut self.held[i].stage {
                            queue.pop_front();
                        }
                        return Step1::Moved;
                    }
                    if !blocked {
                        if let Stage::Actions { blocked, .. } = &mut self.held[i].stage {
                            *blocked = true;
                        }
                        self.event(
                            who,
                            time_ns,
                            EventKind::Park,
                            at.to_string(),
                            action.to_string(),
                        );
                    }
                    return Step1::Stay;
                }
                if self.in_flight.is_some() {
                    return Step1::Stay;
                }
                let id = self.held[i].id;
                if let Stage::Actions { queue, .. } = &mut self.held[i].stage {
                    let mut queue = std::mem::take(queue);
                    queue.pop_front();
                    self.held[i].stage = Stage::InFlight { queue };
                }
                self.in_flight = Some((id, action.to_string(), at.to_string()));
                out.push(Decision::Run { id, action, at });
                Step1::Moved
            }
        }
    }
}

enum Step1 {
    Stay,
    Moved,
    Removed,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn engine(text: &str) -> Engine {
        Engine::new(&Schedule::parse(text).unwrap(), 100 * MS).unwrap()
    }

    fn at(id: NotifId, tid: i32, program: &str, syscall: &str, args: [u64; 6], ms: u64) -> Arrival {
        Arrival {
            id,
            tid,
            pid: 100,
            program: program.into(),
            site: Site::Entry { syscall: syscall.parse().unwrap(), args },
            time_ns: ms * MS,
        }
    }

    fn run_names(d: &[Decision]) -> Vec<String> {
        d.iter()
            .map(|d| match d {
                Decision::Continue(id) => format!("go {id}"),
                Decision::Run { action, .. } => format!("run {action}"),
            })
            .collect()
    }

    #[test]
    fn a_syscall_no_point_names_goes_at_once() {
        let mut e = engine("on piano.kill(SIGKILL): exit(child)");
        assert_eq!(
            e.arrive(at(1, 7, "piano", "kill", [5, 15, 0, 0, 0, 0], 0)),
            [Decision::Continue(1)]
        );
        // The same syscall from another image (the workload) is not piano's.
        assert_eq!(
            e.arrive(at(2, 8, "racelab", "kill", [5, 9, 0, 0, 0, 0], 0)),
            [Decision::Continue(2)]
        );
    }

    #[test]
    fn an_edge_holds_the_later_point_until_the_earlier_passed() {
        let mut e = engine("piano.kill(SIGKILL) < piano.rt_sigaction(SIGINT)#2");
        let first = e.arrive(at(1, 7, "piano", "rt_sigaction", [2, 0, 0, 0, 0, 0], 0));
        assert_eq!(first, [Decision::Continue(1)], "occurrence #1 has no edge");
        assert!(e.arrive(at(2, 7, "piano", "rt_sigaction", [2, 0, 0, 0, 0, 0], 1)).is_empty());
        let go = e.arrive(at(3, 9, "piano", "kill", [5, 9, 0, 0, 0, 0], 2));
        assert_eq!(go, [Decision::Continue(3), Decision::Continue(2)]);
        let (_, report) = e.finish(3 * MS);
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn actions_run_one_at_a_time_in_order_before_the_point_passes() {
        let mut e = engine("on piano.kill(SIGKILL): exit(child), recycle(child)");
        let d = e.arrive(at(1, 9, "piano", "kill", [5, 9, 0, 0, 0, 0], 0));
        assert_eq!(run_names(&d), ["run exit(child)"]);
        assert_eq!(run_names(&e.action_done(1, Ok(()), 1)), ["run recycle(child)"]);
        assert_eq!(e.action_done(1, Ok(()), 2), [Decision::Continue(1)]);
    }

    #[test]
    fn await_waits_for_another_threads_syscall_to_return() {
        let mut e =
            engine("on tini.setpgid: terminate(target), await(tini.kill(SIGTERM).returned)");
        assert!(e.needs_returns());
        let d = e.arrive(at(1, 20, "tini", "setpgid", [0; 6], 0));
        assert_eq!(run_names(&d), ["run terminate(target)"]);
        assert!(e.action_done(1, Ok(()), 1).is_empty(), "the await holds the child");
        // tini forwards the signal: its kill goes, the child is still held.
        let d = e.arrive(at(2, 10, "tini", "kill", [(-20i64) as u64, 15, 0, 0, 0, 0], 2));
        assert_eq!(d, [Decision::Continue(2)]);
        // tini's next syscall shows the kill returned: the child goes.
        let d = e.arrive(at(3, 10, "tini", "wait4", [u64::MAX, 0, 1, 0, 0, 0], 3));
        assert_eq!(d, [Decision::Continue(3), Decision::Continue(1)]);
        let (_, report) = e.finish(4 * MS);
        assert!(report.is_clean(), "{report}");
        let passes: Vec<&str> = report
            .trace
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Pass)
            .map(|e| e.subject.as_str())
            .collect();
        assert_eq!(
            passes,
            ["tini.kill(_, SIGTERM)", "tini.kill(_, SIGTERM).returned", "tini.setpgid"]
        );
    }

    #[test]
    fn a_thread_that_ends_has_returned() {
        let mut e = engine("piano.kill(SIGKILL).returned < piano.exit_group");
        assert_eq!(
            e.arrive(at(1, 9, "piano", "kill", [5, 9, 0, 0, 0, 0], 0)),
            [Decision::Continue(1)]
        );
        assert!(e.arrive(at(2, 7, "piano", "exit_group", [0; 6], 1)).is_empty());
        assert_eq!(e.returning_threads(), [9]);
        assert_eq!(e.thread_ended(9, 100, "piano", 2), [Decision::Continue(2)]);
    }

    #[test]
    fn a_hold_past_its_deadline_is_stuck_and_the_schedule_abandoned() {
        let mut e = engine("piano.kill(SIGKILL) < piano.wait4");
        assert!(e.arrive(at(1, 7, "piano", "wait4", [0; 6], 0)).is_empty());
        assert!(e.tick(50 * MS).is_empty());
        assert_eq!(e.tick(100 * MS), [Decision::Continue(1)]);
        // From now on every point passes at once.
        assert_eq!(e.arrive(at(2, 7, "piano", "wait4", [0; 6], 101)), [Decision::Continue(2)]);
        let (_, report) = e.finish(102 * MS);
        let stuck = report.stuck.expect("stuck report");
        assert_eq!(stuck.parked.len(), 1);
        assert_eq!(stuck.parked[0].waiting_for, ["piano.kill(_, SIGKILL) < piano.wait4"]);
    }

    #[test]
    fn a_failed_action_is_reported_and_the_point_still_passes() {
        let mut e = engine("on piano.kill(SIGKILL): recycle(child)");
        e.arrive(at(1, 9, "piano", "kill", [5, 9, 0, 0, 0, 0], 0));
        assert_eq!(e.action_done(1, Err("no pid".into()), 1), [Decision::Continue(1)]);
        let (_, report) = e.finish(2 * MS);
        assert_eq!(report.action_errors.len(), 1);
        assert_eq!(report.action_errors[0].action, "recycle(child)");
    }

    fn site(id: NotifId, tid: i32, program: &str, site: Site, ms: u64) -> Arrival {
        Arrival { id, tid, pid: 100, program: program.into(), site, time_ns: ms * MS }
    }

    #[test]
    fn a_held_exit_runs_its_actions_after_the_syscall_and_entries_are_not_notified() {
        let mut e = engine("on timeout.clone.exit: terminate(target)");
        assert!(e.needs_ptrace());
        assert!(e.points().is_empty(), "an exit needs no seccomp rule");
        assert_eq!(e.exit_points().len(), 1);
        let syscall: Sysno = "clone".parse().unwrap();
        // A notified entry of the same syscall (another schedule item could name it) is not
        // the exit.
        let entry = at(1, 7, "timeout", "clone", [0x1200011, 0, 0, 0, 0, 0], 0);
        assert_eq!(e.arrive(entry), [Decision::Continue(1)]);
        let exit = Site::Exit { syscall, args: [0x1200011, 0, 0, 0, 0, 0] };
        let d = e.arrive(site(2, 7, "timeout", exit, 1));
        assert_eq!(run_names(&d), ["run terminate(target)"]);
        assert_eq!(e.action_done(2, Ok(()), 2), [Decision::Continue(2)]);
        let (_, report) = e.finish(3 * MS);
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn a_code_point_is_held_until_its_edge_is_met_and_needs_its_highest_occurrence() {
        let text =
            "a.write(1) < a@store(a::FLAG, worker); a@store(a::FLAG, worker)#3 < a.exit_group";
        let mut e = engine(text);
        assert!(e.needs_ptrace());
        let flag = CodePoint::store("a", "a::FLAG", Some("worker"));
        assert_eq!(e.code_points(), [(flag, 3)]);
        let code = || Site::Code { points: vec![flag] };
        assert!(e.arrive(site(1, 8, "a", code(), 0)).is_empty(), "held until main wrote");
        // Another program's instruction at the same point name is not this one.
        assert_eq!(e.arrive(site(2, 9, "b", code(), 1)), [Decision::Continue(2)]);
        let d = e.arrive(at(3, 7, "a", "write", [1, 0, 0, 0, 0, 0], 2));
        assert_eq!(d, [Decision::Continue(3), Decision::Continue(1)]);
        let (_, report) = e.finish(3 * MS);
        assert_eq!(report.unmet_edges.len(), 1, "#3 was never reached: {report}");
    }

    #[test]
    fn holding_a_return_or_naming_a_hook_point_is_refused() {
        let s = Schedule::parse("piano.wait4 < piano.kill(SIGKILL).returned").unwrap();
        assert!(matches!(Engine::new(&s, MS), Err(EngineError::HeldReturn(_))));
        let s = Schedule::parse("main.spawned < piano.wait4").unwrap();
        assert!(matches!(Engine::new(&s, MS), Err(EngineError::HookPoint(_))));
    }
}
