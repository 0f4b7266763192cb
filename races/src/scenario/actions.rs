//! The lab actions a design requests at its points (`exit(child)`, `recycle(child)`,
//! `interrupt(design)`, `kill(outer)`, ...), and the serving of the link they come over: each
//! request is carried out while the design waits, then answered. Above the scenario's own steps
//! ([`Lab::pump`] runs them while an action waits for the child).

use super::lab::Lab;
use crate::catalog::Stop;
use crate::lab::{now, orphans_exited, readable};
use crate::link::Final;
use racelab_hooks::RunReport;
use racelab_sandbox::Mechanism;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

impl Lab<'_> {
    /// Reads the design's messages: its requests (carried out and answered at once), its final
    /// report, or the trace of a design that never returned.
    pub(super) fn serve_link(&mut self) {
        self.link.fill();
        while let Some(line) = self.link.next_line() {
            if let Some(json) = line.strip_prefix("hooks ") {
                match serde_json::from_str::<RunReport>(json) {
                    Ok(h) => self.hung_hooks = Some(h),
                    Err(e) => self.truth.lab_errors.push(format!("bad trace from the design: {e}")),
                }
                continue;
            }
            if let Some(json) = line.strip_prefix("report ") {
                match serde_json::from_str::<Final>(json) {
                    Ok(f) => self.final_report = Some(f),
                    Err(e) => {
                        self.truth.lab_errors.push(format!("bad report from the design: {e}"))
                    }
                }
                continue;
            }
            let Some(action) = line.strip_prefix("req ") else { continue };
            // The design waits for the answer: time it spends here is the lab's, not the
            // design's. It extends the replay's deadline and, after a stop request, I4's bound
            // (exploration found a design held in `exit(child)`, waiting for a child that never
            // said ready, judged as slow and its process as a survivor).
            let began = now();
            self.serving_since = Some(began);
            let result = self.act(action);
            self.serving_since = None;
            let end = now();
            self.held_ns += end - began;
            if let Some(stop) = self.truth.stop_requested_at {
                self.truth.lab_held_ns += end.saturating_sub(began.max(stop));
            }
            let answer = match result {
                Ok(()) => "ok\n".to_string(),
                Err(why) => {
                    self.note("lab", action, format!("failed: {why}"));
                    format!("err {why}\n")
                }
            };
            let _ = (&self.link_w).write_all(answer.as_bytes());
        }
    }

    /// Carries out one lab action requested at a point.
    fn act(&mut self, action: &str) -> Result<(), String> {
        let name = action.split('(').next().unwrap_or("").trim();
        let args: Vec<&str> = action
            .split_once('(')
            .map(|(_, rest)| rest.trim_end_matches(')').split(',').map(str::trim).collect())
            .unwrap_or_default();
        self.note("lab", name, format!("requested: {action}"));
        match name {
            "exit" => {
                let code =
                    args.get(1).map_or(Ok(0), |c| c.parse::<i32>().map_err(|e| e.to_string()))?;
                self.wait_ready()?;
                self.write_child(&format!("exit {code}"))?;
                // The child is gone (a zombie or reaped) before the design goes on.
                let fd = self.w.pidfd.as_ref().ok_or("no pidfd for the child")?;
                if !readable(fd.as_fd(), Duration::from_secs(1)) {
                    return Err("the child did not exit within 1 s".into());
                }
                // Readable comes before the design's SIGCHLD is sent: wait for the send (S1).
                crate::evidence::exit_notified();
                self.note("lab", "exit", format!("child exited with {code}"));
                Ok(())
            }
            "recycle" => {
                let pid = self.wait_ready()?;
                if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(format!("PID {pid} is not free yet (the child was not reaped)"));
                }
                // `recycle(child, group)`: the victim also leads a group of that id (G1).
                let (victim, what) = if args.get(1) == Some(&"group") {
                    let v = self.init.recycle_group_leader(pid, Mechanism::NsLastPid);
                    (v, format!("victim took PID {pid} and leads process group {pid}"))
                } else {
                    (self.init.recycle(pid, Mechanism::NsLastPid), format!("victim took PID {pid}"))
                };
                let victim = victim.map_err(|e| e.to_string())?;
                self.note("lab", "recycle", what);
                self.victims.push(victim);
                Ok(())
            }
            // The outer kill of O1/O3 at a chosen point, before the lab's own (which then
            // does not happen again): exploration uses it to kill the outer tool early.
            "kill" if args.first() == Some(&"outer") => {
                if self.race.setup.stop != Stop::KillOuter {
                    return Err("this race has no outer process".into());
                }
                self.kill_outer();
                Ok(())
            }
            "kill" => {
                // `kill(design)`: the design process dies here, where the schedule put it (P1).
                self.kill_design("scheduled");
                Ok(())
            }
            "tree" => {
                // Hold the caller until the child has started its tree (H1).
                self.wait_ready()?;
                // The `ready` line may have come in the round that brought this request, before
                // that round's tick: start the child now (its `spawn-tree` command).
                self.tick(false);
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|lab| lab.w.tree.is_some(), deadline) {
                    return Err("the child never started its tree".into());
                }
                Ok(())
            }
            "interrupt" => {
                self.interrupt();
                Ok(())
            }
            // Exploration's probes: no outer kill this replay, so a design that would die
            // with its outer process runs to the end and reports the points it passed.
            "spare" if args.first() == Some(&"outer") => {
                self.outer_spared = true;
                Ok(())
            }
            // `ready(design)`: the design is past its start-up and can take the setup's stop
            // (O2: its signals are forwarded from here on). Answered at once; the next tick
            // stops it if the child is up.
            "ready" if args.first() == Some(&"design") => {
                self.design_ready = true;
                Ok(())
            }
            "ready" => self.wait_ready().map(|_| ()),
            "orphans" => {
                // Hold the caller until the child's burst of orphans is over: every orphan has
                // exited, so their SIGCHLDs are pending (and coalesced) when it goes on.
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|lab| lab.w.orphans_done, deadline) {
                    return Err("the child never finished its orphans".into());
                }
                orphans_exited(&self.w, &mut self.notes)
            }
            other => Err(format!(
                "unknown lab action {other:?} (known: exit, recycle, interrupt, ready, ready(design), orphans, \
                 kill(design), kill(outer), spare(outer), tree)"
            )),
        }
    }
}
