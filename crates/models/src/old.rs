//! piano's `run_child` as it was before commit ecca3b9 (`src/main.rs` of its parent): four
//! SeqCst globals, a SIGINT handler installed before spawn, a duration thread, a
//! SIGINT-escalation thread, and a main thread that reaps before it clears `CHILD_PID`.
//!
//! Line numbers are piano's. The four statics become fields of one `Globals` that the
//! threads share: loom needs fresh atomics for every execution, and nothing else changes (each
//! field is read and written exactly where the static was, with the same ordering).
//!
//! Modelling choices, each an abstraction that keeps the behaviour the races need:
//! - "Install the handler" spawns the handler's loom thread: from that step on the one SIGINT
//!   of the scenario may be handled at any point, on any thread (it runs once: SA_RESETHAND).
//! - Sleeps are long: `sleep(duration)` and `sleep(kill_timeout)` end only once every other
//!   piano thread is blocked (main in `wait`, the escalation thread between polls) or done
//!   (see [`Kernel::sleep`]). Without this, loom reports "races" that need a thread stalled for as long
//!   as a sleep lasts, e.g. the handler stuck between two instructions for the whole kill
//!   timeout. The child's own exit and the innocent fork stay free to happen at any moment:
//!   they are the outside world, not piano. So what loom finds here happens with timing as
//!   kind as it gets; the reference protocol is checked with no timing assumption at all.
//! - The 50 ms poll of the SIGINT-escalation thread is not modelled: it polls again whenever
//!   one of the globals it reads has changed (see `sigint_escalation_thread`).
//! - The SIGINT-escalation thread is started only in scenarios with an interrupt; without one
//!   it polls until `CHILD_PID == 0` and returns, touching nothing.
//! - Threads are detached in piano; the model joins them at the end, which changes nothing
//!   they do, so the checks see every signal they would ever send.

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use crate::kernel::Kernel;
use crate::record::{Actor, Event, Global, Outcome, Signal};
use crate::sync::{Arc, JoinHandle, SeqCstCell, Thread, thread};
use crate::{Scenario, StopReason};

/// piano's four globals (l.848-851): `CHILD_PID: AtomicU32` and three `AtomicBool`s, every
/// access SeqCst. Each is a `SeqCstCell` (see `sync.rs` for why not a loom atomic); flags
/// are 0 or 1. Each access is traced.
struct Globals {
    child_pid: SeqCstCell,
    duration_expired: SeqCstCell,
    sigint_received: SeqCstCell,
    force_killed: SeqCstCell,
    /// Not piano's: the SIGINT-escalation thread, unparked when SIGINT_RECEIVED or CHILD_PID
    /// changed so that it polls again (see `sigint_escalation_thread`).
    poller: OnceLock<Thread>,
    /// The SIGINT-escalation thread is blocked between polls (see `Kernel::unblock`).
    poller_blocked: AtomicBool,
}

impl Globals {
    fn new() -> Self {
        Globals {
            child_pid: SeqCstCell::new(0),
            duration_expired: SeqCstCell::new(0),
            sigint_received: SeqCstCell::new(0),
            force_killed: SeqCstCell::new(0),
            poller: OnceLock::new(),
            poller_blocked: AtomicBool::new(false),
        }
    }

    /// Lets the SIGINT-escalation thread poll again (a model device, not a piano step).
    fn wake_poller(&self, k: &Kernel) {
        if let Some(poller) = self.poller.get() {
            k.unblock(&self.poller_blocked);
            poller.unpark();
        }
    }

    fn flag(&self, g: Global) -> &SeqCstCell {
        match g {
            Global::DurationExpired => &self.duration_expired,
            Global::SigintReceived => &self.sigint_received,
            Global::ForceKilled => &self.force_killed,
            Global::ChildPid => unreachable!("CHILD_PID is not a flag"),
        }
    }

    fn set(&self, k: &Kernel, who: Actor, g: Global, value: bool) {
        self.flag(g).store(value.into());
        k.note(who, Event::Store(g, value.into()));
    }

    fn get(&self, k: &Kernel, who: Actor, g: Global) -> bool {
        let value = self.flag(g).load();
        k.note(who, Event::Load(g, value));
        value != 0
    }

    fn store_pid(&self, k: &Kernel, who: Actor, pid: u32) {
        self.child_pid.store(pid);
        k.note(who, Event::Store(Global::ChildPid, pid));
    }

    fn load_pid(&self, k: &Kernel, who: Actor) -> u32 {
        let pid = self.child_pid.load();
        k.note(who, Event::Load(Global::ChildPid, pid));
        pid
    }
}

/// Runs the old protocol once on `scenario` and returns what it left behind.
pub fn run(scenario: &Scenario) -> Outcome {
    let escalation_thread = scenario.interrupt && scenario.kill_timeout;
    let actors =
        u32::from(scenario.interrupt) + u32::from(scenario.duration) + u32::from(escalation_thread);
    let k = Arc::new(Kernel::new(scenario.child, actors));
    let g = Arc::new(Globals::new());
    let mut threads = Vec::new();
    if scenario.innocent {
        // Somewhere else on the system, a process forks: before, during or after the run.
        let k = Arc::clone(&k);
        threads.push(thread::spawn(move || k.fork_innocent()));
    }
    let reason = run_child(scenario, &k, &g, &mut threads);
    for t in threads {
        t.join().expect("a model thread panicked");
    }
    k.outcome(reason)
}

/// The main thread (`run_child`, l.899-1040). `None`: it would block in `wait` forever.
fn run_child(
    sc: &Scenario,
    k: &Arc<Kernel>,
    g: &Arc<Globals>,
    threads: &mut Vec<JoinHandle<()>>,
) -> Option<StopReason> {
    let me = Actor::Main;
    // l.907-910: reset the flags "from any previous invocation" (CHILD_PID is not reset).
    g.set(k, me, Global::DurationExpired, false);
    g.set(k, me, Global::SigintReceived, false);
    g.set(k, me, Global::ForceKilled, false);

    if sc.interrupt {
        // l.940: the handler is installed before spawn, in the belief that "the handler
        // guards pid == 0 so it is safe before the child exists". From here to l.948 a SIGINT
        // is handled with CHILD_PID == 0: it sets SIGINT_RECEIVED, forwards nothing, and
        // SA_RESETHAND uninstalls the handler. The interrupt is lost (Q4).
        k.note(me, Event::InstallHandler);
        threads.push(start(k, g, sigint_handler));
    }

    // l.944: spawn. The Q4 window spans all of it.
    let (pid, life) = Kernel::spawn_child(k, me);
    threads.extend(life);
    // l.948: only now can the handler and the threads find the child.
    g.store_pid(k, me, pid);

    match (sc.duration, sc.kill_timeout) {
        (true, true) => threads.push(start(k, g, duration_thread_with_escalation)),
        (true, false) => threads.push(start(k, g, duration_thread)),
        (false, _) => {}
    }
    if sc.kill_timeout && sc.interrupt {
        threads.push(start(k, g, sigint_escalation_thread));
    }

    // l.1012: child.wait() REAPS the child: its PID is free from here on and the kernel may
    // give it to the next fork, but CHILD_PID still holds it until l.1026. Any thread that
    // loaded the PID before this point and signals after it signals a stranger (Q1).
    k.waitpid(me, pid)?;

    // l.1016-1024: classify. Nothing orders an escalation thread's FORCE_KILLED store before
    // these loads: one that passed its pid check before the reap stores true and sends
    // SIGKILL after main has reported Duration (Q3).
    let reason = if g.get(k, me, Global::ForceKilled) {
        StopReason::ForceKilled
    } else if g.get(k, me, Global::DurationExpired) {
        StopReason::Duration
    } else if g.get(k, me, Global::SigintReceived) {
        StopReason::Interrupted
    } else {
        StopReason::Normal
    };
    k.note(me, Event::Classified(reason));

    // l.1026: too late to stop a thread that already loaded the PID.
    g.store_pid(k, me, 0);
    g.wake_poller(k);
    k.idle();
    Some(reason)
}

/// Starts one of piano's threads (an actor the kernel was told about). It is busy from its
/// first step (for the handler: the signal's arrival) to its last.
fn start(k: &Arc<Kernel>, g: &Arc<Globals>, body: fn(&Kernel, &Globals)) -> JoinHandle<()> {
    let (k, g) = (Arc::clone(k), Arc::clone(g));
    thread::spawn(move || {
        k.busy();
        body(&k, &g);
        k.idle();
        k.leave();
    })
}

/// `sigint_handler`: runs once, whenever the SIGINT arrives after it was installed.
fn sigint_handler(k: &Kernel, g: &Globals) {
    let me = Actor::Handler;
    k.interrupt_handled(me);
    g.set(k, me, Global::SigintReceived, true);
    g.wake_poller(k);
    let pid = g.load_pid(k, me);
    // With pid == 0 (the Q4 window) the interrupt goes nowhere. After the reap and before
    // l.1026 the SIGTERM goes to whoever has the PID now (the Q1 hazard class).
    if pid != 0 {
        k.kill(me, pid, Signal::Term);
    }
}

/// The duration thread (l.961) with `--kill-timeout 0`: SIGTERM when the duration expires.
fn duration_thread(k: &Kernel, g: &Globals) {
    let me = Actor::Duration;
    k.sleep(); // sleep(duration)
    g.set(k, me, Global::DurationExpired, true);
    let pid = g.load_pid(k, me);
    if pid != 0 {
        k.kill(me, pid, Signal::Term);
    }
}

/// The duration thread with a kill timeout: SIGKILL a kill timeout after the SIGTERM.
fn duration_thread_with_escalation(k: &Kernel, g: &Globals) {
    duration_thread(k, g);
    k.sleep(); // sleep(kill_timeout)
    escalate(k, g, Actor::Duration);
}

/// The SIGINT-escalation thread (l.989): waits for SIGINT_RECEIVED, then SIGKILL a kill
/// timeout later.
fn sigint_escalation_thread(k: &Kernel, g: &Globals) {
    let me = Actor::Escalation;
    g.poller.set(thread::current()).expect("one SIGINT-escalation thread");
    loop {
        if g.get(k, me, Global::SigintReceived) {
            break;
        }
        if g.load_pid(k, me) == 0 {
            return;
        }
        // sleep(50 ms). A poll that finds nothing changes nothing, so the model skips the
        // polls in between: it polls again after one of the two globals changed, at whatever
        // moment loom picks. (Spinning with yield_now instead made loom explore ~50x more executions
        // for the same behaviours.)
        k.blocking(&g.poller_blocked);
        thread::park();
        k.unblock(&g.poller_blocked);
    }
    // sleep(kill_timeout). If the SIGINT came in the Q4 window the child never got SIGTERM,
    // and this SIGKILL is the first signal it sees: no graceful flush.
    k.sleep();
    escalate(k, g, me);
}

/// The escalation both threads share: load, check, flag, kill; three separate steps.
fn escalate(k: &Kernel, g: &Globals, me: Actor) {
    let pid = g.load_pid(k, me);
    if pid != 0 {
        // The check passed, but nothing pins the PID: main may reap the child right here
        // and the kernel may hand the PID to another process (Q1); main may also classify
        // right here, before the flag below is set (Q3).
        g.set(k, me, Global::ForceKilled, true);
        k.kill(me, pid, Signal::Kill);
    }
}
