//! The lab's actions (requested at the program's syscall points, or run once the child is
//! ready in the unforced control) and the case's own steps (the early interrupt, F1's signals
//! one by one, Z1's zombie count, the I4 bound). One file because they call each other: an
//! action waits with the pump, which takes the steps, which run the unforced control's
//! actions.

use super::lab::Bb;
use crate::evidence;
use crate::lab::{now, orphans_exited};
use nix::sys::signal::Signal;
use racelab_hooks::{Action, Arg};
use racelab_sandbox::Mechanism;

impl Bb<'_> {
    /// Serves events and the case's own steps (not actions) until `until` holds or
    /// `deadline` passes.
    pub(super) fn pump(&mut self, until: &dyn Fn(&Bb<'_>) -> bool, deadline: u64) -> bool {
        loop {
            self.absorb();
            self.tick();
            if until(self) {
                return true;
            }
            if now() >= deadline {
                return false;
            }
            self.wait(deadline);
        }
    }

    pub(super) fn wait_ready(&mut self) -> Result<i32, String> {
        let deadline = (now() + 1_000_000_000).min(self.deadline());
        if !self.pump(&|b| b.w.pid.is_some(), deadline) {
            return Err("the child never said ready".into());
        }
        self.w.pid.ok_or_else(|| "no child pid".into())
    }

    /// Carries out one lab action requested at a point.
    pub(super) fn act(&mut self, action: &Action) -> Result<(), String> {
        let word = |i: usize| match action.args.get(i) {
            Some(Arg::Ident(s)) => Some(s.as_str()),
            _ => None,
        };
        self.note("lab", &action.name, format!("requested: {action}"));
        match action.name.as_str() {
            "ready" => self.wait_ready().map(|_| ()),
            "exit" => {
                let code = match action.args.get(1) {
                    Some(Arg::Int(c)) => *c,
                    _ => 0,
                };
                self.wait_ready()?;
                self.write_child(&format!("exit {code}"))?;
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|b| !b.w.alive(), deadline) {
                    return Err("the child did not exit within 1 s".into());
                }
                // The pidfd is readable before the target's SIGCHLD is sent: wait for the send.
                evidence::exit_notified();
                self.note("lab", "exit", format!("child exited with {code}"));
                Ok(())
            }
            "recycle" => {
                let pid = self.wait_ready()?;
                let parent = Self::ppid(pid);
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                // Wait for the reap, unless no thread of the parent can reap it now: then the
                // PID stays pinned by design (a zombie is never recycled) and there is no
                // window to open.
                let reaped = self.pump(
                    &|b| {
                        b.child_reaped()
                            || parent.is_some_and(|p| {
                                b.session.as_ref().is_some_and(|s| s.all_threads_held(p))
                            })
                    },
                    deadline,
                );
                if !reaped {
                    return Err(format!("PID {pid} was not reaped within 1 s"));
                }
                if !self.child_reaped() {
                    self.note("lab", "recycle", format!("PID {pid} is pinned: the child is an unreaped zombie and every thread of its parent is parked"));
                    return Ok(());
                }
                let victim =
                    self.init.recycle(pid, Mechanism::NsLastPid).map_err(|e| e.to_string())?;
                self.note("lab", "recycle", format!("victim took PID {pid}"));
                self.victims.push(victim);
                Ok(())
            }
            "interrupt" | "terminate" | "signal" => {
                let who = word(0).unwrap_or("target");
                if !["target", "design", self.label.as_str()].contains(&who) {
                    return Err(format!(
                        "{}: only the program (target) can be signalled here",
                        action.name
                    ));
                }
                let sig = match action.name.as_str() {
                    "interrupt" => Signal::SIGINT,
                    "terminate" => Signal::SIGTERM,
                    _ => word(1).and_then(|n| n.parse::<Signal>().ok()).ok_or_else(|| {
                        format!("{action}: name a signal, signal(target, SIGHUP)")
                    })?,
                };
                self.signal_program(sig);
                Ok(())
            }
            "orphans" => {
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|b| b.w.orphans_done, deadline) {
                    return Err("the child never finished its orphans".into());
                }
                orphans_exited(&self.w, &mut self.notes)
            }
            other => Err(format!(
                "unknown lab action {other:?} (known: ready, exit, recycle, interrupt, terminate, signal, orphans, await)"
            )),
        }
    }

    /// State- and time-driven steps of the case.
    pub(super) fn tick(&mut self) {
        if !self.started && self.w.pid.is_some() {
            self.started = true;
            if let Some(cmd) = self.race.setup.child_start {
                let _ = self.write_child(cmd);
            }
            if self.case.interrupt_when_ready {
                self.signal_program(Signal::SIGINT);
            }
            for action in std::mem::take(&mut self.late) {
                if let Err(e) = self.act(&action) {
                    self.note("lab", &action.name, format!("failed: {e}"));
                }
            }
        }
        // F1: the case's signals one by one, each once the child saw the previous one.
        if self.started && self.sent < self.case.signals.len() {
            let prev_seen = self.sent == 0 || {
                let (at, sig) = self.truth.forwarded[self.sent - 1];
                self.w.saw_since(at, sig) || now() >= at + self.race.setup.bound.as_nanos() as u64
            };
            if prev_seen {
                let sig = self.case.signals[self.sent];
                let at = now();
                self.truth.forwarded.push((at, sig));
                if let Ok(s) = Signal::try_from(sig) {
                    self.signal_program(s);
                }
                self.sent += 1;
            }
        } else if self.started
            && !self.case.signals.is_empty()
            && self.sent == self.case.signals.len()
        {
            let (at, sig) = self.truth.forwarded[self.sent - 1];
            let seen = self.w.saw_since(at, sig);
            if seen || now() >= at + self.race.setup.bound.as_nanos() as u64 {
                self.sent += 1;
                let _ = self.write_child("exit 0");
            }
        }
        if self.w.orphans_done && !self.zombies_counted {
            self.count_zombies_when_quiet();
        }
        if let Some(at) = self.bound_deadline()
            && !self.bound_checked
            && now() >= at
        {
            self.bound_checked = true;
            if !self.program_done() {
                self.truth.overran_bound = Some(now() - self.truth.stop_requested_at.unwrap_or(at));
                self.note("lab", "bound", "the program did not return within its bound".into());
                if self.race.setup.second_interrupt {
                    self.signal_program(Signal::SIGINT);
                }
            }
        }
    }

    /// Z1: counts the zombies of the program once the burst is over and the program is quiet
    /// (every orphan exited, no SIGCHLD pending for it, all its threads asleep and none of them
    /// parked here: it has done what it will do about the notifications it got), two looks in
    /// a row. Looks are taken as the loop comes by (it wakes every millisecond meanwhile),
    /// never by sleeping: the program's wait calls are parked syscalls the loop must answer.
    pub(super) fn count_zombies_when_quiet(&mut self) {
        let started = *self.quiet.1.get_or_insert_with(now);
        let reaper = self.target_pid;
        if evidence::ended(reaper) {
            self.zombies_counted = true;
            self.note("lab", "zombies", evidence::NO_COUNT.into());
            let _ = self.write_child("exit 0");
            return;
        }
        let exited = self.w.orphans.iter().all(|&p| evidence::exited(p));
        // /proc first, then what the session knows: no notification is answered during a look
        // (this thread answers them), so a thread /proc saw asleep in seccomp is still parked
        // when the session is asked.
        let quiet = exited && evidence::quiet(reaper);
        let held = self.session.as_ref().is_some_and(|s| s.holds_any_of(reaper));
        let switches = evidence::context_switches(reaper);
        if quiet && !held {
            // Two quiet looks count only if the reaper neither slept nor woke between them: a
            // reaping loop whose every wait is a notified syscall sleeps once per call, and was
            // caught "asleep" twice mid-reap (Z1 with supervise's `waitid` held).
            if self.quiet.0 > 0 && self.quiet.2 != switches {
                self.quiet.0 = 0;
            }
            self.quiet.0 += 1;
            self.quiet.2 = switches;
        } else {
            self.quiet.0 = 0;
        }
        let result = if self.quiet.0 >= 2 {
            match evidence::zombies_of_quiet(reaper, switches) {
                Some(zombies) => Ok(zombies),
                // Something ended between the looks and the count: look again.
                None => {
                    self.quiet.0 = 0;
                    return;
                }
            }
        } else if now() > started + 1_000_000_000 {
            Err(format!("the reaper {reaper} never went quiet within 1 s"))
        } else {
            return;
        };
        self.zombies_counted = true;
        self.note("lab", "zombies", format!("{result:?}"));
        self.truth.zombies = Some(result);
        let _ = self.write_child("exit 0");
    }
}
