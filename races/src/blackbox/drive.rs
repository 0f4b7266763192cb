//! The black-box replay from start to verdict: serve the program's notifications and take the
//! case's steps until it ends (or overran its bound, or the deadline), collect the ground truth,
//! clean up, and hand everything to the oracle. The top of the replay's own code.

use super::lab::Bb;
use crate::design_report::DesignReport;
use crate::lab::{close_timeline, now, readable, record_victim_fates};
use crate::verdict::{Invariant, Verdict};
use crate::{evidence, oracle};
use racelab_blackbox::{ActionRequest, Session};
use racelab_hooks::Trace;
use std::os::fd::AsFd;
use std::time::Duration;

impl Bb<'_> {
    /// Runs until the program ends (or overran its bound with nothing more to do), then
    /// collects ground truth.
    pub(super) fn drive(&mut self) {
        let deadline = self.deadline();
        loop {
            self.absorb();
            while let Some(ActionRequest { id, action, .. }) =
                self.session.as_mut().and_then(Session::next_action)
            {
                let result = self.act(&action);
                if let Some(s) = self.session.as_mut() {
                    s.action_done(id, result, now());
                }
                self.absorb();
            }
            self.tick();
            let overran_and_done =
                self.truth.overran_bound.is_some() && !self.race.setup.second_interrupt;
            if self.program_done() || overran_and_done {
                break;
            }
            if now() >= deadline {
                self.truth.hung = true;
                self.note(
                    "lab",
                    "deadline",
                    format!("the program did not finish within {:?}", self.replay_deadline),
                );
                break;
            }
            self.wait(deadline);
        }
        // What the program wrote on its way out.
        if self.program_done() {
            let until = now() + 200_000_000;
            while !self.err.eof && now() < until {
                readable(self.err.fd.as_fd(), Duration::from_millis(20));
                self.absorb();
            }
        }
        self.absorb();
        self.truth.design_exit = self.child.fate(Duration::ZERO).ok();
        if self.race.invariants.contains(&Invariant::I5NoSurvivors) && self.program_done() {
            self.truth.survivors =
                evidence::survivors(self.init, &self.victims, Duration::from_millis(200));
        }
        record_victim_fates(&self.victims, &mut self.truth, &mut self.notes);
        self.cleanup();
    }

    pub(super) fn cleanup(&mut self) {
        // The tree first (with SIGKILL nothing held can do anything), then the session: its
        // held syscalls are let go into dead threads.
        let _ = self.child.kill(Duration::from_millis(500));
        evidence::kill_the_rest(self.init, &self.victims);
        if let Some(s) = self.session.take() {
            let (report, sent) = s.finish(now());
            self.truth.sigkill_seen = Some(sent.iter().any(|s| s.signal == 9));
            // A stop signal to another process: a forward (the program signalling itself, or
            // its whole group with 0, is not the evidence asked for).
            self.truth.stop_signals_sent = sent
                .iter()
                .filter(|s| s.signal != 9 && s.target != 0 && s.target != i64::from(s.by_pid))
                .map(|s| s.time_ns)
                .collect();
            for s in &sent {
                let name = racelab_hooks::syscall_point::signal_name(s.signal).unwrap_or("?");
                // When the session let the syscall go: the list only comes now.
                let what = format!("{}({}, {name})", s.syscall, s.target);
                self.notes.note_at(s.time_ns, &s.by_program, "sent", what);
            }
            self.report = Some(report);
        }
        for v in &self.victims {
            let _ = v.exit(0);
        }
        let _ = self.init.reap_all_nonblocking();
        if let Some(dir) = self.project.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    pub(super) fn judge(self) -> (Verdict, Trace, DesignReport) {
        let report = self.program.report(
            self.truth.design_exit,
            &self.stderr,
            self.race.setup.duration.is_some(),
        );
        let hooks = self.report.clone().unwrap_or_default();
        let program_done = self.program_done();
        let mut trace = self.notes.merged_with(Some(&hooks.trace));
        // The program's own status, not the launcher's, is what a black-box report is about;
        // a program that never ended reports nothing.
        let own = program_done.then_some(&report);
        let verdict = oracle::judge(
            self.race,
            self.program.promises.warns_on_forced_kill,
            &self.truth,
            &self.w,
            own,
            Some(&hooks),
            &trace,
        );
        // A program that never reached a point the schedule acts at: say which.
        let never: Vec<&str> = hooks
            .unmet_edges
            .iter()
            .filter(|e| matches!(e.reason, racelab_hooks::UnmetReason::AfterNeverReached { .. }))
            .map(|e| e.edge.as_str())
            .collect();
        // A program that never started the workload and signalled nobody tested nothing: not a
        // pass (a piano that found no binary to run once "prevented" Q1, exit code 1). One
        // that was interrupted first may rightly end before it starts anything.
        let started_nothing = self.w.pid.is_none()
            && self.truth.interrupts.is_empty()
            && self.truth.stop_signals_sent.is_empty()
            && self.truth.sigkill_seen != Some(true);
        // The actions among them (`on p: ...`), as opposed to edges whose later point never came.
        let unran: Vec<&str> = never.iter().copied().filter(|e| e.starts_with("on ")).collect();
        let verdict = match verdict {
            Verdict::NotForced { why } if !never.is_empty() => {
                Verdict::NotForced { why: format!("{why}; never reached: {}", never.join("; ")) }
            }
            // A schedule whose action point never came did not run: the program may have
            // prevented the race, or simply never met the schedule (supervise reaps with
            // waitid, so a point at wait4 once "prevented" Z1 with the burst unheld). Only a
            // replay in which every action ran can be said to prevent.
            Verdict::Prevented if !unran.is_empty() => Verdict::NotForced {
                why: format!(
                    "no invariant broke, but the schedule never ran; never reached: {}",
                    unran.join("; ")
                ),
            },
            Verdict::Prevented if started_nothing => {
                let said = self.stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                Verdict::NotForced {
                    why: format!(
                        "the program never started its child and sent no signal: nothing was tested (it ended {:?}; its first stderr line: {said:?})",
                        self.truth.design_exit
                    ),
                }
            }
            v => v,
        };
        close_timeline(&mut trace, &verdict);
        (verdict, trace, report)
    }
}
