//! The replay from start to verdict, as init drives it: serve the design and take the
//! scenario's steps until the design is done (or the deadline), collect the ground truth
//! (what is left alive, the victims' fates, the lock), clean up, and hand everything to the
//! oracle. The top of the replay's own code.

use super::lab::{Lab, lockfile};
use crate::catalog::{DesignId, Stop};
use crate::design_report::DesignReport;
use crate::lab::{close_timeline, now, readable, record_victim_fates};
use crate::verdict::{Invariant, Verdict};
use crate::{evidence, oracle};
use racelab_hooks::Trace;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

impl Lab<'_> {
    /// Runs the replay until the design is done (or the deadline), then collects ground truth.
    pub(super) fn drive(&mut self) {
        let done = |lab: &Lab<'_>| {
            lab.design_done()
                && (lab.final_report.is_some()
                    || lab.link.eof
                    || lab.truth.outer_killed
                    || lab.truth.design_killed)
        };
        // The deadline grows when a stop is requested late: I4's bound check always happens.
        let mut finished = false;
        loop {
            if done(self) {
                finished = true;
                break;
            }
            let deadline = self.deadline();
            if now() >= deadline {
                break;
            }
            self.wait_for_events(deadline, true);
            self.read_workload();
            self.serve_link();
            self.tick(true);
        }
        // Whatever is still queued (the final report may race the exit).
        self.serve_link();
        self.read_workload();
        if self.truth.design_killed {
            self.watch_orphaned_tree();
        }
        if finished {
            // The design is done, but a process it forked may still be parked at one of its
            // points, waiting for an answer the lab will never send: the spawned child at
            // `preexec.entered`, whose request came after the design died. Without the lab it
            // would have run on (and here, with its parent dead, ended itself). Closing the
            // lab's sending side answers every parked point ("init closed the link") before
            // I5 looks for survivors, so the oracle judges the design and not the lab's hold.
            // Exploration found it: O1 against the reference with `on preexec.entered:
            // exit(child); on main.handler_installed: kill(outer)`, the child reported as a
            // survivor in 1 replay in 25.
            let _ = self.link_w.shutdown(std::net::Shutdown::Write);
        }
        if !finished {
            self.truth.hung = true;
            self.note(
                "lab",
                "deadline",
                format!("the design did not finish within {:?}", self.replay_deadline),
            );
        }
        self.truth.design_exit = self.d.fate(Duration::ZERO).ok();
        // I5 is about what is left once the supervisor returned or died: a design still
        // supervising a live child at the deadline (no stop was ever asked of it) has not
        // returned, and its child is not a survivor. (Exploration found this false positive:
        // Q4b with no schedule reported the running child as a survivor.) A stop that was
        // asked for and not honoured is I4's to judge.
        if self.race.invariants.contains(&Invariant::I5NoSurvivors)
            && !(self.truth.hung && self.truth.stop_requested_at.is_none())
        {
            self.truth.survivors =
                evidence::survivors(self.init, &self.victims, Duration::from_millis(200));
            self.truth.lock_held = evidence::lock_held(&lockfile(self.init));
        }
        record_victim_fates(&self.victims, &mut self.truth, &mut self.notes);
        self.cleanup();
    }

    /// After the lab killed the design process (P1): what becomes of what it started? Waits,
    /// bounded, until the child says ready (it runs on) or every other process of the
    /// namespace is gone, watching pidfds and the child's pipe (no polling of /proc).
    fn watch_orphaned_tree(&mut self) {
        let victims: Vec<i32> = self.victims.iter().map(|v| v.pid()).collect();
        let me = self.init.pid();
        let fds: Vec<OwnedFd> = self
            .init
            .ns_pids()
            .into_iter()
            .filter(|p| *p != me && !victims.contains(p))
            .filter_map(|p| {
                rustix::process::pidfd_open(
                    rustix::process::Pid::from_raw(p)?,
                    rustix::process::PidfdFlags::empty(),
                )
                .ok()
            })
            .collect();
        let until = now() + 500_000_000;
        loop {
            self.read_workload();
            if self.w.pid.is_some() {
                return; // it said ready: the child runs on (the oracle judges what is left)
            }
            if fds.iter().all(|fd| readable(fd.as_fd(), Duration::ZERO)) {
                self.note("lab", "orphans", "nothing the design started is left".into());
                return;
            }
            let now = now();
            if now >= until {
                return;
            }
            let mut polled: Vec<rustix::event::PollFd<'_>> = fds
                .iter()
                .map(|fd| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
                .collect();
            polled.extend(self.pipes.output.poll_entry());
            let ts = rustix::time::Timespec::try_from(Duration::from_nanos(until - now)).ok();
            let _ = rustix::event::poll(&mut polled, ts.as_ref());
        }
    }

    fn cleanup(&mut self) {
        if let Some(f) = self.freezer.take() {
            let _ = f.thaw();
            drop(f);
        }
        for v in &self.victims {
            let _ = v.exit(0);
        }
        let _ = self.d.kill(Duration::from_millis(500));
        evidence::kill_the_rest(self.init, &self.victims);
        let _ = self.init.reap_all_nonblocking();
        // A design that contains its child in a cgroup leaf and gives up on an unkillable child
        // leaves the leaf behind on purpose (the reference names it in its report). Its owner,
        // the design process, is gone now: remove every leaf owned from this namespace.
        let cgroup_used = self.race.setup.stop == Stop::FreezeThenInterrupt;
        if let Some(base) =
            racelab_cgroup::Mounts::probe().ok().and_then(|m| m.v2_base()).filter(|_| cgroup_used)
        {
            let _ = racelab_cgroup::gc_stale(&base);
        }
        let _ = std::fs::remove_file(lockfile(self.init));
    }

    /// The oracle's verdict on what the lab collected, with the merged timeline and the
    /// design's own report.
    pub(super) fn judge(self) -> (Verdict, Trace, Option<DesignReport>) {
        let (report, hooks) = match self.final_report {
            Some(f) => (Some(f.report), Some(f.hooks)),
            None => (None, self.hung_hooks),
        };
        let mut trace = self.notes.merged_with(hooks.as_ref().map(|h| &h.trace));
        // piano's replicas print a warning when they force a kill: I2 demands it.
        let needs_warning = matches!(self.design, DesignId::GlobalAtomics | DesignId::PollingFix);
        let verdict = oracle::judge(
            self.race,
            needs_warning,
            &self.truth,
            &self.w,
            report.as_ref(),
            hooks.as_ref(),
            &trace,
        );
        close_timeline(&mut trace, &verdict);
        (verdict, trace, report)
    }
}
