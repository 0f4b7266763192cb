//! The scenario's own steps: what the lab does as time passes and the child's state changes,
//! asked by no design (start the child's command, freeze it, interrupt or kill the design once
//! the child is ready, kill the outer process, count the zombies at quiescence, check the I4
//! bound), and the wait that runs them while an action waits for the child ([`Lab::pump`]).
//! Apart from the lab actions above it, which a design requests at its points.

use super::lab::Lab;
use crate::catalog::Stop;
use crate::evidence;
use crate::lab::now;
use std::time::Duration;

impl Lab<'_> {
    /// Time-driven and state-driven steps of the scenario. `serve` says whether the design's
    /// requests are being served (not while the lab is inside one).
    pub(super) fn tick(&mut self, serve: bool) {
        // The scenario starts once the child is up and, where the schedule says so, the
        // design too: a stop sent before the design can take it would test its start-up.
        if !self.started
            && self.w.pid.is_some()
            && (self.design_ready || !self.stop_waits_for_design)
        {
            self.started = true;
            if let Some(cmd) = self.race.setup.child_start {
                let _ = self.write_child(cmd);
            }
            match self.race.setup.stop {
                Stop::FreezeThenInterrupt => {
                    if let Err(e) = self.freeze_child() {
                        self.truth.lab_errors.push(e);
                    }
                    self.interrupt();
                }
                Stop::KillDesign => self.kill_design("the child is ready"),
                Stop::KillOuter | Stop::None => {}
            }
        }
        if self.race.setup.child_end_starts_bound
            && self.truth.stop_requested_at.is_none()
            && self.w.pid.is_some()
            && !self.w.alive()
        {
            self.truth.stop_requested_at = Some(now());
            self.truth.bound_from_child_end = true;
            self.note("lab", "child-ended", "the child ended: the design's bound starts".into());
        }
        // The outer process dies once the child is up (and has started its tree, if asked).
        if self.race.setup.stop == Stop::KillOuter
            && self.started
            && !self.outer_spared
            && (self.race.setup.child_start.is_none() || self.w.tree.is_some())
        {
            self.kill_outer();
        }
        if serve && self.w.orphans_done && !self.zombies_counted {
            let count = evidence::count_zombies_at_quiescence(self.d.pid(), &self.w.orphans);
            // A design that sent the lab a request while we looked is waiting for us, not
            // quiescent: serve it first and count again (exploration found the reference
            // "leaving" 49 zombies while it sat in `ready(child)` at `reaper.reaped`,
            // mid-drain, waiting for this very loop).
            if self.link.is_idle() {
                self.zombies_counted = true;
                match count.transpose() {
                    Some(count) => {
                        self.note("lab", "zombies", format!("{count:?}"));
                        self.truth.zombies = Some(count);
                    }
                    None => self.note("lab", "zombies", evidence::NO_COUNT.into()),
                }
                let _ = self.write_child("exit 0");
            }
        }
        if let Some(at) = self.bound_deadline()
            && !self.bound_checked
            && now() >= at
        {
            self.bound_checked = true;
            if !self.design_done() && self.final_report.is_none() {
                let stop = self.truth.stop_requested_at.unwrap_or(at);
                self.truth.overran_bound =
                    Some(now().saturating_sub(stop + self.truth.lab_held_ns));
                self.note("lab", "bound", "the design did not return within its bound".into());
                if let Some(f) = &self.freezer {
                    let _ = f.thaw();
                    self.note("lab", "thaw", "child thawed".into());
                }
                if self.race.setup.second_interrupt {
                    self.interrupt();
                }
                if self.race.setup.child_end_starts_bound {
                    self.end_hung_design();
                }
            }
        }
    }

    /// Waits for events until `until` holds or `deadline` passes, reading the child and taking
    /// the scenario's steps, without serving the design (the lab is inside one of its
    /// requests).
    pub(super) fn pump(&mut self, until: &dyn Fn(&Lab<'_>) -> bool, deadline: u64) -> bool {
        loop {
            if until(self) {
                return true;
            }
            if now() >= deadline {
                return false;
            }
            self.wait_for_events(deadline, false);
            self.read_workload();
            self.tick(false);
        }
    }

    /// Waits until the child said ready; its pid.
    pub(super) fn wait_ready(&mut self) -> Result<i32, String> {
        // As long as a parked thread may wait: an action attached before the design spawned
        // its child waits for nothing (the design is blocked in it), so the wait is the lab's
        // patience, not a fixed second.
        let wait = self.park.min(Duration::from_secs(1)).as_nanos() as u64;
        let deadline = (now() + wait).min(self.deadline());
        if !self.pump(&|lab| lab.w.pid.is_some(), deadline) {
            return Err("the child never said ready".into());
        }
        self.w.pid.ok_or_else(|| "no child pid".into())
    }
}
