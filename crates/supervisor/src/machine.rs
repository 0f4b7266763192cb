//! The pure state machine: events in, actions out, no kernel calls.
//!
//! Every decision of the supervisor is made here, in one step per event: whether to forward a
//! signal, when to escalate, and the stop reason. Because the decision to SIGKILL and the
//! reason are written by the same `on` call, a report can never deny a kill it made (Q3); because
//! the machine emits no signal to the child once it has seen its exit, and the shell only reaps
//! when told to (`Action::Reap`, always the last action about the child), a signal can never
//! reach a recycled PID (Q1); because signals (and stop requests) that arrive before `Spawned`
//! are queued and replayed, an early interrupt is never lost (Q4). Timers are requests: every
//! stop phase arms one, so a stop ends within `grace + 2 * kill_wait` of its start (O2).
//!
//! The shell (`crate::shell`) feeds real events; the proptests at the bottom feed random ones.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::report::{ExitStatus, Report, SentSignal, StopReason, Target};

/// What the machine can do to the child's tree, from the chosen containment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Only the child itself can be signalled.
    ChildOnly,
    /// The child leads its own process group: signals go to the group.
    Group,
    /// The child's tree is a cgroup v2 leaf: `cgroup.kill` is available.
    Cgroup,
    /// The child is PID 1 of its own PID namespace: its death kills the tree.
    PidNamespace,
}

/// The fixed inputs of one supervision.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Send the stop signal after this long.
    pub timeout: Option<Duration>,
    /// Time between the stop signal and SIGKILL.
    pub grace: Duration,
    /// Bounded wait after SIGKILL (and again after cgroup.kill) before giving up.
    pub kill_wait: Duration,
    /// The signal sent when the timeout expires.
    pub stop_signal: Signal,
    /// What can be signalled or killed.
    pub tree: Tree,
}

/// A timer the machine arms. Arming a kind again replaces its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The supervision's timeout.
    Duration,
    /// The grace period after the stop signal.
    Grace,
    /// The bounded wait after SIGKILL or cgroup.kill.
    KillWait,
}

/// Why the program could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnFailure {
    /// ENOENT (and friends): exit code 127.
    NotFound(String),
    /// Any other exec error: exit code 126.
    CannotExecute(String),
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The child exists and its pidfd is held.
    Spawned {
        /// Its pid (for the report).
        pid: i32,
    },
    /// The program could not be executed.
    SpawnFailed(SpawnFailure),
    /// The main child has exited with this status (known, not yet reaped).
    Exited(ExitStatus),
    /// The supervisor received this forwarded signal.
    Signal(Signal),
    /// The embedding program asked for a stop (`Supervisor::stop`, on the supervising thread).
    /// It starts the same bounded stop as a stop signal reaching the supervisor (the reason is
    /// `Interrupted`), with the policy's `stop_signal`; once a stop is under way it changes
    /// nothing.
    Stop,
    /// A timer fired.
    Timer(Timer),
}

/// Something the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `sig` to `target` (`Child` by pidfd, `Group` by kill(-pgid)).
    Signal {
        /// Recipient.
        target: Target,
        /// The signal.
        sig: Signal,
    },
    /// `cgroup.kill` the whole tree (cgroup containment only): after the SIGKILL's bounded wait,
    /// or at once when the stop signal itself is SIGKILL.
    KillTree,
    /// Arm (or re-arm) a timer to fire `after` from now.
    Arm {
        /// Which timer.
        timer: Timer,
        /// Delay from the event being handled.
        after: Duration,
    },
    /// Disarm a timer.
    Cancel(Timer),
    /// The main child exited: kill what is left of its tree (group SIGKILL while the leader
    /// is still an unreaped zombie, or cgroup.kill). Always before `Reap`.
    Sweep,
    /// Collect the main child's status. After this, its PID may be reused: nothing about the
    /// child follows.
    Reap,
    /// The supervision is over.
    Finish(Box<Report>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Terminating,
    Killing,
    TreeKilling,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Duration,
    /// A stop signal reached the supervisor, or the embedding program asked for a stop.
    Interrupted,
}

/// What arrived before `Spawned` and is replayed right after it (Q4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Signal(Signal),
    Stop,
}

/// Signals that start a stop when the supervisor receives them (the rest are only forwarded).
pub fn is_stop_signal(sig: Signal) -> bool {
    matches!(sig, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT)
}

/// The supervisor's state machine. See the module doc.
#[derive(Debug)]
pub struct Machine {
    policy: Policy,
    phase: Phase,
    cause: Option<Cause>,
    forced: bool,
    pid: Option<i32>,
    pending: Vec<Pending>,
    signals: Vec<SentSignal>,
    warnings: Vec<String>,
}

impl Machine {
    /// A machine for one supervision, before spawn.
    pub fn new(policy: Policy) -> Machine {
        Machine {
            policy,
            phase: Phase::Starting,
            cause: None,
            forced: false,
            pid: None,
            pending: Vec::new(),
            signals: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// True once `Finish` was emitted: every later event is ignored.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// True while the main child may still be running (spawned, exit not yet seen).
    pub fn child_alive(&self) -> bool {
        !matches!(self.phase, Phase::Starting | Phase::Done)
    }

    /// Handles one event at `now` (time since start) and returns the actions, in order.
    pub fn on(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.phase, event) {
            (Phase::Done, _) => {}
            (Phase::Starting, Event::Spawned { pid }) => {
                self.pid = Some(pid);
                self.phase = Phase::Running;
                if let Some(t) = self.policy.timeout {
                    out.push(Action::Arm { timer: Timer::Duration, after: t });
                }
                // Q4: interrupts that arrived while spawning are delivered now, not dropped.
                for p in std::mem::take(&mut self.pending) {
                    match p {
                        Pending::Signal(sig) => self.on_signal(now, sig, &mut out),
                        Pending::Stop => self.on_stop(now, &mut out),
                    }
                }
            }
            (Phase::Starting, Event::SpawnFailed(f)) => {
                let (reason, msg) = match f {
                    SpawnFailure::NotFound(m) => (StopReason::NotFound, m),
                    SpawnFailure::CannotExecute(m) => (StopReason::ExecFailed, m),
                };
                self.finish(now, reason, None, Some(msg), &mut out);
            }
            (Phase::Starting, Event::Signal(sig)) => self.pending.push(Pending::Signal(sig)),
            (Phase::Starting, Event::Stop) => self.pending.push(Pending::Stop),
            (Phase::Starting, _) => {}
            (_, Event::Exited(status)) => {
                let reason = if self.forced {
                    StopReason::ForcedKill
                } else {
                    match (self.cause, status) {
                        (Some(Cause::Duration), _) => StopReason::Duration,
                        (Some(Cause::Interrupted), _) => StopReason::Interrupted,
                        (None, ExitStatus::Signal(_)) => StopReason::SignalledExternally,
                        (None, ExitStatus::Code(_)) => StopReason::Exited,
                    }
                };
                for t in [Timer::Duration, Timer::Grace, Timer::KillWait] {
                    out.push(Action::Cancel(t));
                }
                if self.policy.tree != Tree::ChildOnly {
                    out.push(Action::Sweep);
                }
                out.push(Action::Reap);
                self.finish(now, reason, Some(status), None, &mut out);
            }
            (_, Event::Signal(sig)) => self.on_signal(now, sig, &mut out),
            (_, Event::Stop) => self.on_stop(now, &mut out),
            (Phase::Running, Event::Timer(Timer::Duration)) => {
                self.cause = Some(Cause::Duration);
                self.begin_stop(now, self.policy.stop_signal, &mut out);
            }
            (Phase::Terminating, Event::Timer(Timer::Grace)) => {
                // The kill decision and `forced` are one step: the reason follows the action.
                self.forced = true;
                let sig = self.cause_signal();
                self.warnings.push(format!(
                    "did not exit after {}; sent SIGKILL after {:?}",
                    sig.as_str(),
                    self.policy.grace
                ));
                self.send(now, Target::Child, Signal::SIGKILL, &mut out);
                if self.policy.tree == Tree::Group {
                    self.send(now, Target::Group, Signal::SIGKILL, &mut out);
                }
                self.phase = Phase::Killing;
                out.push(Action::Arm { timer: Timer::KillWait, after: self.policy.kill_wait });
            }
            (Phase::Killing, Event::Timer(Timer::KillWait)) if self.policy.tree == Tree::Cgroup => {
                self.kill_tree(now, &mut out);
            }
            (Phase::Killing | Phase::TreeKilling, Event::Timer(Timer::KillWait)) => {
                self.warnings.push(format!(
                    "still alive {:?} after SIGKILL{}; giving up (unkillable)",
                    self.policy.kill_wait,
                    if self.phase == Phase::TreeKilling { " and cgroup.kill" } else { "" }
                ));
                out.push(Action::Cancel(Timer::Duration));
                self.finish(now, StopReason::Unkillable, None, None, &mut out);
            }
            (_, Event::Timer(_)) | (_, Event::Spawned { .. }) | (_, Event::SpawnFailed(_)) => {}
        }
        out
    }

    fn cause_signal(&self) -> Signal {
        self.signals
            .iter()
            .find_map(|s| Signal::try_from(s.signo).ok())
            .unwrap_or(self.policy.stop_signal)
    }

    /// Whom forwarded and stop signals reach. With cgroup (and pidns) containment only the
    /// leader, by pidfd: signalling every pid read from cgroup.procs would race PID reuse (a
    /// listed process may exit and its pid be recycled before the signal). The rest of a
    /// cgroup tree is reached by cgroup.kill: at once for a SIGKILL stop, when the leader exits
    /// (`Sweep`), or at the end of the escalation.
    fn target(&self) -> Target {
        if self.policy.tree == Tree::Group { Target::Group } else { Target::Child }
    }

    fn on_signal(&mut self, now: Duration, sig: Signal, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Starting => self.pending.push(Pending::Signal(sig)),
            Phase::Running if is_stop_signal(sig) => {
                self.cause = Some(Cause::Interrupted);
                self.begin_stop(now, sig, out);
            }
            // Forward while the child can still act on it; after SIGKILL there is no point.
            Phase::Running | Phase::Terminating => self.send(now, self.target(), sig, out),
            _ => {}
        }
    }

    /// A stop asked for by the embedding program: like a stop signal received while running;
    /// nothing once a stop is under way (it is already bounded) or the child is gone.
    fn on_stop(&mut self, now: Duration, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Starting => self.pending.push(Pending::Stop),
            Phase::Running => {
                self.cause = Some(Cause::Interrupted);
                self.begin_stop(now, self.policy.stop_signal, out);
            }
            _ => {}
        }
    }

    fn begin_stop(&mut self, now: Duration, sig: Signal, out: &mut Vec<Action>) {
        // `--signal KILL`: the stop itself is a forced kill, and the reason must say so.
        self.forced |= sig == Signal::SIGKILL;
        if sig == Signal::SIGKILL && self.policy.tree == Tree::Cgroup {
            // Nothing to wait for before the tree's own kill: one cgroup.kill reaches every
            // process of the tree at once (setsid escapes included), with no PID to go stale.
            out.push(Action::Cancel(Timer::Duration));
            self.kill_tree(now, out);
            return;
        }
        self.send(now, self.target(), sig, out);
        // A stopped (SIGSTOP/SIGTSTP) child cannot act on SIGTERM until continued.
        if sig != Signal::SIGKILL && sig != Signal::SIGCONT {
            self.send(now, self.target(), Signal::SIGCONT, out);
        }
        self.phase = Phase::Terminating;
        out.push(Action::Cancel(Timer::Duration));
        out.push(Action::Arm { timer: Timer::Grace, after: self.policy.grace });
    }

    /// cgroup.kill, recorded as a SIGKILL to the cgroup, then the last bounded wait.
    fn kill_tree(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.signals.push(SentSignal {
            at_ns: ns(now),
            signo: Signal::SIGKILL as i32,
            name: "SIGKILL".into(),
            target: Target::Cgroup,
        });
        out.push(Action::KillTree);
        self.phase = Phase::TreeKilling;
        out.push(Action::Arm { timer: Timer::KillWait, after: self.policy.kill_wait });
    }

    fn send(&mut self, now: Duration, target: Target, sig: Signal, out: &mut Vec<Action>) {
        self.signals.push(SentSignal {
            at_ns: ns(now),
            signo: sig as i32,
            name: sig.as_str().into(),
            target,
        });
        out.push(Action::Signal { target, sig });
    }

    fn finish(
        &mut self,
        now: Duration,
        reason: StopReason,
        status: Option<ExitStatus>,
        exec_error: Option<String>,
        out: &mut Vec<Action>,
    ) {
        self.phase = Phase::Done;
        out.push(Action::Finish(Box::new(Report {
            reason,
            status,
            pid: self.pid,
            signals: std::mem::take(&mut self.signals),
            swept: out.contains(&Action::Sweep),
            survivors: Vec::new(),
            warnings: std::mem::take(&mut self.warnings),
            orphans_reaped: 0,
            elapsed_ns: ns(now),
            exec_error,
            captured: None,
        })));
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
