//! Unit and property tests of the pure state machine: a tiny simulated kernel drives it with
//! random event orders (signals from outside, timers, a child that exits, dies from TERM later,
//! or resists SIGKILL), and the invariants are checked on the actions it emitted.

use super::*;
use proptest::prelude::*;

fn policy(tree: Tree) -> Policy {
    Policy {
        timeout: Some(Duration::from_millis(100)),
        grace: Duration::from_millis(50),
        kill_wait: Duration::from_millis(20),
        stop_signal: Signal::SIGTERM,
        tree,
    }
}

fn finish(actions: &[Action]) -> Option<&Report> {
    actions.iter().find_map(|a| match a {
        Action::Finish(r) => Some(&**r),
        _ => None,
    })
}

#[test]
fn interrupt_before_spawn_is_forwarded_right_after_spawn() {
    let mut m = Machine::new(policy(Tree::ChildOnly));
    assert!(m.on(Duration::ZERO, Event::Signal(Signal::SIGINT)).is_empty());
    let acts = m.on(Duration::from_micros(5), Event::Spawned { pid: 42 });
    assert!(
        acts.contains(&Action::Signal { target: Target::Child, sig: Signal::SIGINT }),
        "{acts:?}"
    );
}

#[test]
fn grace_expiry_kills_and_the_report_says_forced() {
    let mut m = Machine::new(policy(Tree::Group));
    m.on(Duration::ZERO, Event::Spawned { pid: 42 });
    m.on(Duration::from_millis(100), Event::Timer(Timer::Duration));
    let acts = m.on(Duration::from_millis(150), Event::Timer(Timer::Grace));
    assert!(acts.contains(&Action::Signal { target: Target::Child, sig: Signal::SIGKILL }));
    let acts = m.on(Duration::from_millis(151), Event::Exited(ExitStatus::Signal(9)));
    let r = finish(&acts).expect("finished");
    assert_eq!(r.reason, StopReason::ForcedKill);
    assert!(r.warnings[0].contains("did not exit after SIGTERM"), "{:?}", r.warnings);
    assert_eq!(acts.iter().position(|a| *a == Action::Sweep), Some(3));
    assert!(matches!(acts.last(), Some(Action::Finish(_))));
}

#[test]
fn exit_before_grace_expiry_is_classified_as_duration_not_forced() {
    let mut m = Machine::new(policy(Tree::ChildOnly));
    m.on(Duration::ZERO, Event::Spawned { pid: 42 });
    m.on(Duration::from_millis(100), Event::Timer(Timer::Duration));
    let acts = m.on(Duration::from_millis(149), Event::Exited(ExitStatus::Code(0)));
    assert_eq!(finish(&acts).map(|r| r.reason), Some(StopReason::Duration));
    // Q3: a grace timer that fires after the exit was seen decides nothing.
    assert!(m.on(Duration::from_millis(150), Event::Timer(Timer::Grace)).is_empty());
}

#[test]
fn unkillable_child_in_a_cgroup_gets_cgroup_kill_then_the_unkillable_report() {
    let mut m = Machine::new(policy(Tree::Cgroup));
    m.on(Duration::ZERO, Event::Spawned { pid: 42 });
    m.on(Duration::from_millis(1), Event::Signal(Signal::SIGTERM));
    m.on(Duration::from_millis(51), Event::Timer(Timer::Grace));
    let acts = m.on(Duration::from_millis(71), Event::Timer(Timer::KillWait));
    assert!(acts.contains(&Action::KillTree));
    let acts = m.on(Duration::from_millis(91), Event::Timer(Timer::KillWait));
    let r = finish(&acts).expect("finished");
    assert_eq!(r.reason, StopReason::Unkillable);
    assert_eq!(r.status, None);
}

#[test]
fn a_stop_request_sends_the_stop_signal_to_the_group_and_reports_interrupted() {
    let mut m = Machine::new(policy(Tree::Group));
    m.on(Duration::ZERO, Event::Spawned { pid: 42 });
    let acts = m.on(Duration::from_millis(1), Event::Stop);
    assert_eq!(
        acts[..2],
        [
            Action::Signal { target: Target::Group, sig: Signal::SIGTERM },
            Action::Signal { target: Target::Group, sig: Signal::SIGCONT },
        ],
        "{acts:?}"
    );
    assert!(acts.contains(&Action::Arm { timer: Timer::Grace, after: Duration::from_millis(50) }));
    // A second request while the stop is under way changes nothing.
    assert!(m.on(Duration::from_millis(2), Event::Stop).is_empty());
    let acts = m.on(Duration::from_millis(3), Event::Exited(ExitStatus::Signal(15)));
    let r = finish(&acts).expect("finished");
    assert_eq!(r.reason, StopReason::Interrupted);
    assert_eq!(r.signals.len(), 2, "{:?}", r.signals);
}

#[test]
fn a_stop_requested_before_spawn_is_made_right_after_spawn() {
    let mut m = Machine::new(policy(Tree::ChildOnly));
    assert!(m.on(Duration::ZERO, Event::Stop).is_empty());
    let acts = m.on(Duration::from_micros(5), Event::Spawned { pid: 42 });
    assert!(
        acts.contains(&Action::Signal { target: Target::Child, sig: Signal::SIGTERM }),
        "{acts:?}"
    );
}

#[test]
fn a_stop_request_after_the_exit_was_seen_does_nothing() {
    let mut m = Machine::new(policy(Tree::Group));
    m.on(Duration::ZERO, Event::Spawned { pid: 42 });
    m.on(Duration::from_millis(1), Event::Exited(ExitStatus::Code(0)));
    assert!(m.on(Duration::from_millis(2), Event::Stop).is_empty());
}

#[test]
fn a_sigkill_stop_in_a_cgroup_is_one_cgroup_kill_at_once() {
    let mut p = policy(Tree::Cgroup);
    p.stop_signal = Signal::SIGKILL;
    let mut m = Machine::new(p);
    m.on(Duration::ZERO, Event::Spawned { pid: 42 });
    let acts = m.on(Duration::from_millis(1), Event::Stop);
    assert!(acts.contains(&Action::KillTree), "{acts:?}");
    assert!(!acts.iter().any(|a| matches!(a, Action::Signal { .. })), "{acts:?}");
    assert!(acts.contains(&Action::Arm { timer: Timer::KillWait, after: p_kill_wait() }));
    let acts = m.on(Duration::from_millis(2), Event::Exited(ExitStatus::Signal(9)));
    let r = finish(&acts).expect("finished");
    assert_eq!(r.reason, StopReason::ForcedKill);
    assert_eq!(r.signals[0].target, Target::Cgroup);
    assert_eq!(r.signals[0].signo, 9);
}

#[test]
fn a_sigkill_stop_in_a_cgroup_that_does_not_die_is_unkillable_after_one_kill_wait() {
    let mut p = policy(Tree::Cgroup);
    p.stop_signal = Signal::SIGKILL;
    let mut m = Machine::new(p);
    m.on(Duration::ZERO, Event::Spawned { pid: 42 });
    m.on(Duration::from_millis(100), Event::Timer(Timer::Duration));
    let acts = m.on(Duration::from_millis(120), Event::Timer(Timer::KillWait));
    assert_eq!(finish(&acts).map(|r| r.reason), Some(StopReason::Unkillable));
}

fn p_kill_wait() -> Duration {
    policy(Tree::Cgroup).kill_wait
}

/// The simulated child.
#[derive(Debug, Clone)]
struct Child {
    /// Exits on its own at this time (ms) with this code.
    natural_exit: Option<(u64, i32)>,
    /// Dies this long after a catchable stop signal; None = ignores it.
    term_delay: Option<u64>,
    /// Dies this long after SIGKILL; None = unkillable (D state).
    kill_delay: Option<u64>,
}

fn tree() -> impl Strategy<Value = Tree> {
    prop_oneof![
        Just(Tree::ChildOnly),
        Just(Tree::Group),
        Just(Tree::Cgroup),
        Just(Tree::PidNamespace)
    ]
}

/// Something from outside: a signal reaching the supervisor, or the embedding program's stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    Signal(Signal),
    Stop,
}

impl Ext {
    fn starts_a_stop(self) -> bool {
        match self {
            Ext::Signal(sig) => is_stop_signal(sig),
            Ext::Stop => true,
        }
    }
}

fn external() -> impl Strategy<Value = Ext> {
    prop_oneof![
        Just(Ext::Signal(Signal::SIGINT)),
        Just(Ext::Signal(Signal::SIGTERM)),
        Just(Ext::Signal(Signal::SIGHUP)),
        Just(Ext::Signal(Signal::SIGUSR1)),
        Just(Ext::Signal(Signal::SIGWINCH)),
        Just(Ext::Stop),
    ]
}

prop_compose! {
    fn scenario()(
        timeout in proptest::option::of(0u64..300),
        grace in 0u64..100,
        kill_wait in 1u64..50,
        tree in tree(),
        natural_exit in proptest::option::of((0u64..400, 0i32..3)),
        term_delay in proptest::option::of(0u64..150),
        kill_delay in proptest::option::of(0u64..60),
        external in proptest::collection::vec((0u64..400, external()), 0..4),
        signals_before_spawn in 0usize..2,
        stop_signal in prop_oneof![3 => Just(Signal::SIGTERM), 1 => Just(Signal::SIGKILL)],
    ) -> (Policy, Child, Vec<(u64, Ext)>, usize) {
        let policy = Policy {
            timeout: timeout.map(Duration::from_millis),
            grace: Duration::from_millis(grace),
            kill_wait: Duration::from_millis(kill_wait),
            stop_signal,
            tree,
        };
        (policy, Child { natural_exit, term_delay, kill_delay }, external, signals_before_spawn)
    }
}

/// Runs the machine against the simulated kernel until Finish (or the horizon) and returns the
/// full action log with times, the child's true status if it died, and the finish time.
fn simulate(
    policy: &Policy,
    child: &Child,
    mut external: Vec<(u64, Ext)>,
    before_spawn: usize,
) -> (Vec<(u64, Action)>, Option<ExitStatus>, Option<u64>) {
    let mut m = Machine::new(policy.clone());
    let mut log = Vec::new();
    let mut timers: Vec<(Timer, u64)> = Vec::new();
    let mut death: Option<(u64, ExitStatus)> =
        child.natural_exit.map(|(t, c)| (t, ExitStatus::Code(c)));
    let ms = Duration::from_millis;
    for _ in 0..before_spawn {
        assert!(m.on(ms(0), Event::Signal(Signal::SIGINT)).is_empty());
    }
    let mut queue = vec![(0u64, Event::Spawned { pid: 100 })];
    external.sort_by_key(|e| e.0);
    let mut ext = external.into_iter().peekable();
    let mut now = 0;
    let mut dead_seen = None;
    for _ in 0..10_000 {
        let ev = if let Some(e) = queue.pop() {
            e
        } else {
            // Next event: the earliest of death, external signal, timer.
            let mut best: Option<(u64, u8)> = None;
            let mut consider = |t: u64, k: u8| {
                if best.is_none_or(|b| t < b.0) {
                    best = Some((t, k))
                }
            };
            if let Some((t, _)) = death.filter(|_| dead_seen.is_none()) {
                consider(t.max(now), 0);
            }
            if let Some((t, _)) = ext.peek() {
                consider((*t).max(now), 1);
            }
            for (i, (_, t)) in timers.iter().enumerate() {
                consider((*t).max(now), 2 + i as u8);
            }
            let Some((t, k)) = best else { break };
            match k {
                0 => {
                    let st = death.map(|d| d.1).expect("death");
                    dead_seen = Some(st);
                    (t, Event::Exited(st))
                }
                1 => match ext.next().expect("ext").1 {
                    Ext::Signal(sig) => (t, Event::Signal(sig)),
                    Ext::Stop => (t, Event::Stop),
                },
                i => (t, Event::Timer(timers.remove(usize::from(i - 2)).0)),
            }
        };
        now = ev.0;
        for a in m.on(ms(now), ev.1) {
            match &a {
                Action::Arm { timer, after } => {
                    timers.retain(|(k, _)| k != timer);
                    timers.push((*timer, now + u64::try_from(after.as_millis()).expect("ms")));
                }
                Action::Cancel(timer) => timers.retain(|(k, _)| k != timer),
                Action::Signal { sig, .. } if dead_seen.is_none() => {
                    let delay = match *sig {
                        Signal::SIGKILL => child.kill_delay,
                        Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP => child.term_delay,
                        _ => None,
                    };
                    if let Some(d) = delay {
                        let t = now + d;
                        if death.is_none_or(|(dt, _)| t < dt) {
                            death = Some((t, ExitStatus::Signal(*sig as i32)));
                        }
                    }
                }
                Action::KillTree => {
                    if let Some(d) = child.kill_delay {
                        let t = now + d;
                        if death.is_none_or(|(dt, _)| t < dt) {
                            death = Some((t, ExitStatus::Signal(9)));
                        }
                    }
                }
                _ => {}
            }
            let fin = matches!(a, Action::Finish(_));
            log.push((now, a));
            if fin {
                return (log, dead_seen, Some(now));
            }
        }
    }
    (log, dead_seen, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_event_orders_keep_every_invariant((policy, child, external, before) in scenario()) {
        let first_stop = external.iter().filter(|e| e.1.starts_a_stop()).map(|e| e.0).min();
        let (log, true_status, finished_at) = simulate(&policy, &child, external, before);
        let stop_start = match (policy.timeout.map(|t| t.as_millis() as u64), first_stop, before) {
            (_, _, b) if b > 0 => Some(0),
            (a, b, _) => a.into_iter().chain(b).min(),
        };
        let bound = policy.grace.as_millis() as u64 + 2 * policy.kill_wait.as_millis() as u64;

        // The machine always finishes: the child dies naturally, or a stop is bounded.
        if child.natural_exit.is_some() || stop_start.is_some() {
            prop_assert!(finished_at.is_some(), "never finished: {log:?}");
        }
        let Some(end) = finished_at else { return Ok(()) };
        let report = match &log.last().expect("log").1 {
            Action::Finish(r) => r.clone(),
            other => panic!("last action is not Finish: {other:?}"),
        };
        // Bounded stop: within grace + 2 * kill_wait of the first stop request.
        if let Some(s) = stop_start {
            prop_assert!(end <= s + bound, "stop at {s} ended at {end} > bound {bound}: {log:?}");
        }
        // Never a signal to the child (or its group) after its exit was observed; Sweep and
        // Reap come after the exit, Sweep before Reap, nothing after Reap but Finish.
        let exit_idx = log.iter().position(|(_, a)| *a == Action::Reap);
        if let Some(r) = exit_idx {
            let late = log[r..].iter().any(|(_, a)| matches!(a, Action::Signal { .. } | Action::KillTree));
            prop_assert!(!late, "signal after reap: {:?}", log);
            if let Some(s) = log.iter().position(|(_, a)| *a == Action::Sweep) {
                prop_assert!(s < r);
            }
        }
        // The reason matches the actions taken (cgroup.kill is a SIGKILL too).
        let sigkill = log.iter().any(|(_, a)| {
            matches!(a, Action::Signal { sig: Signal::SIGKILL, .. } | Action::KillTree)
        });
        prop_assert_eq!(sigkill, matches!(report.reason, StopReason::ForcedKill | StopReason::Unkillable), "{:?}", log);
        let kills_in_report = report.signals.iter().any(|s| s.signo == 9);
        prop_assert_eq!(sigkill, kills_in_report);
        // The reported status is the real one.
        prop_assert_eq!(report.status, true_status);
        if report.reason == StopReason::Unkillable {
            prop_assert!(child.kill_delay.is_none_or(|d| d > policy.kill_wait.as_millis() as u64));
        }
        if report.reason == StopReason::Exited {
            prop_assert!(report.signals.is_empty() || report.signals.iter().all(|s| !is_stop_signal(Signal::try_from(s.signo).expect("sig"))));
        }
        // In a cgroup, a SIGKILL by pid only follows a catchable stop signal whose grace ran
        // out; a stop that starts with SIGKILL is one cgroup.kill.
        let by_pid = |a: &Action| matches!(a, Action::Signal { sig: Signal::SIGKILL, .. });
        let catchable =
            |a: &Action| matches!(a, Action::Signal { sig, .. } if is_stop_signal(*sig));
        if policy.tree == Tree::Cgroup
            && let Some(k) = log.iter().position(|(_, a)| by_pid(a))
        {
            let asked = log[..k].iter().any(|(_, a)| catchable(a));
            prop_assert!(asked, "SIGKILL by pid without a stop signal first: {:?}", log);
        }
    }
}
