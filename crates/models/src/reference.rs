//! The reference protocol: one loop, on one thread, owns everything about the child.
//!
//! - SIGINT is blocked before spawn and read from a queue (signalfd-like) after it: an
//!   interrupt that arrives during the spawn waits for the loop instead of running a handler
//!   that cannot know the child yet (Q4).
//! - The child is named by a handle made in the same step as the child (pidfd-like, `clone3`
//!   with `CLONE_PIDFD`). A handle names one process forever; signalling through it after the
//!   reap is an error, never a stray signal. And only this loop reaps, so while it signals the
//!   child is at worst a zombie (Q1).
//! - Timers and the interrupt are events the loop reads; the decision to SIGKILL and the stop
//!   reason are made in the same step, by the thread that reports them (Q3).
//!
//! It is piano's fix (ecca3b9, "single-threaded process lifecycle") with the 10 ms polling
//! replaced by blocking on the handle, the signal queue and the timers at once.
//!
//! Modelling: the user's Ctrl-C, each timer and (for a late child) the child's own exit are
//! loom threads, so they happen at any point; `poll` returns the first ready source in a fixed
//! order (child exit, interrupt, duration, grace).

use crate::kernel::{Handle, Kernel};
use crate::record::{Actor, Delivery, Event, Outcome, Ready, Signal, Timer};
use crate::sync::{Arc, JoinHandle, thread};
use crate::{Scenario, StopReason};

/// Runs the reference protocol once on `scenario` and returns what it left behind.
pub fn run(scenario: &Scenario) -> Outcome {
    let k = Arc::new(Kernel::new(scenario.child, u32::from(scenario.interrupt)));
    let mut threads = Vec::new();
    if scenario.innocent {
        let k = Arc::clone(&k);
        threads.push(thread::spawn(move || k.fork_innocent()));
    }
    let reason = supervise(scenario, &k, &mut threads);
    for t in threads {
        t.join().expect("a model thread panicked");
    }
    k.outcome(reason)
}

/// The loop. `None`: it would wait forever (never, in the scenarios of this crate).
fn supervise(
    sc: &Scenario,
    k: &Arc<Kernel>,
    threads: &mut Vec<JoinHandle<()>>,
) -> Option<StopReason> {
    let me = Actor::Loop;
    // Before spawn: from here on a SIGINT waits in the queue, whenever it comes.
    k.note(me, Event::BlockSigint);
    if sc.interrupt {
        let k = Arc::clone(k);
        threads.push(thread::spawn(move || k.interrupt_queued(Actor::User)));
    }
    let (child, life) = Kernel::spawn_child_with_handle(k, me);
    threads.extend(life);
    if sc.duration {
        threads.push(Kernel::arm(k, me, Timer::Duration));
    }

    let (mut term_sent, mut interrupted, mut duration) = (false, false, false);
    loop {
        match k.poll(me, &child)? {
            Ready::ChildExited => {
                // The loop reaps, so nothing can signal the PID after this.
                k.reap(me, &child)?;
                let reason = if duration {
                    StopReason::Duration
                } else if interrupted {
                    StopReason::Interrupted
                } else {
                    StopReason::Normal
                };
                k.note(me, Event::Classified(reason));
                return Some(reason);
            }
            Ready::Interrupt => interrupted = true,
            Ready::Duration => duration = true,
            Ready::Grace => {
                // The kill and the reason, in one step of the one thread that reports it.
                k.note(me, Event::Classified(StopReason::ForceKilled));
                send(k, &child, Signal::Kill);
                k.reap(me, &child)?;
                return Some(StopReason::ForceKilled);
            }
        }
        if (interrupted || duration) && !term_sent {
            term_sent = true;
            send(k, &child, Signal::Term);
            if sc.kill_timeout {
                threads.push(Kernel::arm(k, me, Timer::Grace));
            }
        }
    }
}

/// Signals through the handle. The child is not reaped (only this loop reaps, and it stops
/// after reaping), so it is running or a zombie; a refusal would be a bug of the model.
fn send(k: &Kernel, child: &Handle, signal: Signal) {
    let delivery = k.signal(Actor::Loop, child, signal);
    assert_ne!(delivery, Delivery::Refused, "model error: the loop signalled after reaping");
}
