//! The lab's state during one instrumented replay, and its primitive steps: the moves init
//! makes on the world without waiting for anything (signal the design, kill it or its outer
//! process, freeze the child, write to the child, read what it said), the deadlines, and the
//! one wait for events all the loops above share. The bottom of the replay's own code: the
//! scenario's steps, the lab actions and the drive build on it.

use super::input::REPLAY_DEADLINE;
use crate::catalog::{DesignId, Race};
use crate::child_log::ChildLog;
use crate::lab::{ChildPipes, Lines, Notes, now, readable};
use crate::link::Final;
use crate::truth::Truth;
use nix::sys::signal::Signal;
use racelab_hooks::RunReport;
use racelab_sandbox::{Init, Victim};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub(super) struct Lab<'a> {
    pub(super) init: &'a mut Init,
    pub(super) race: &'static Race,
    pub(super) design: DesignId,
    pub(super) t0: u64,
    pub(super) replay_deadline: Duration,
    /// The hooks' park deadline: also how long an action waits for the child to say ready.
    pub(super) park: Duration,
    /// Time the design spent waiting for the lab's answers to its actions (ns).
    pub(super) held_ns: u64,
    /// `spare(outer)` ran: the lab does not kill the outer process this replay.
    pub(super) outer_spared: bool,
    /// When the lab began serving the action it is serving now.
    pub(super) serving_since: Option<u64>,
    pub(super) notes: Notes,
    /// What the child said.
    pub(super) w: ChildLog,
    pub(super) pipes: ChildPipes,
    /// The design's requests and final report come in here; answers go out on `link_w`.
    pub(super) link: Lines,
    pub(super) link_w: UnixStream,
    /// The design process, or with [`Stop::KillOuter`] the outer process that started it.
    pub(super) d: racelab_sandbox::Child,
    pub(super) victims: Vec<Victim>,
    pub(super) truth: Truth,
    pub(super) final_report: Option<Final>,
    /// The hooks report of a design that never returned (asked for once it overran its bound).
    pub(super) hung_hooks: Option<RunReport>,
    /// Write end of the pipe that asks a hung design for its trace
    /// ([`crate::catalog::Setup::child_end_starts_bound`]).
    pub(super) hang_w: Option<OwnedFd>,
    pub(super) freezer: Option<racelab_cgroup::Freezer>,
    pub(super) started: bool,
    /// The schedule says when the design is ready for the setup's stop (`ready(design)` at a
    /// point): the stop waits for it as well as for the child.
    pub(super) stop_waits_for_design: bool,
    /// `ready(design)` ran.
    pub(super) design_ready: bool,
    pub(super) bound_checked: bool,
    pub(super) zombies_counted: bool,
}

/// The lock file of the lock-wrapper designs (O1): one per namespace, named by init's pid on
/// the host (`/tmp` is shared with other replays).
pub(super) fn lockfile(init: &Init) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/tmp/racelab-{}.lock", init.host_pid()))
}

impl Lab<'_> {
    pub(super) fn note(&mut self, actor: &str, subject: &str, detail: String) {
        self.notes.note(actor, subject, detail);
    }

    /// When the lab gives up on the design: the replay's deadline, or a little after the I4
    /// bound of a stop requested late.
    pub(super) fn deadline(&self) -> u64 {
        let held = self.held_ns + self.serving_since.map_or(0, |s| now().saturating_sub(s));
        let base = self.t0 + self.replay_deadline.as_nanos() as u64 + held;
        let wanted = self.bound_deadline().map_or(base, |bound| base.max(bound + 50_000_000));
        // Never past what the sandbox allows the runner (it SIGKILLs an overrunning runner, and
        // a runner killed before its cleanup leaves a frozen child frozen): keep room for the
        // cleanup.
        wanted.min(self.t0 + (REPLAY_DEADLINE + Duration::from_millis(1500)).as_nanos() as u64)
    }

    /// When the design's I4 bound passes, once a stop was requested.
    pub(super) fn bound_deadline(&self) -> Option<u64> {
        self.truth.stop_requested_at.map(|t| {
            let serving = self.serving_since.map_or(0, |s| now().saturating_sub(s.max(t)));
            t + self.race.setup.bound.as_nanos() as u64 + self.truth.lab_held_ns + serving
        })
    }

    pub(super) fn design_done(&self) -> bool {
        readable(self.d.pidfd(), Duration::ZERO)
    }

    /// Sleeps until something may have changed (the child wrote, the design ended, with
    /// `serve` the design sent a request, the child ended where that starts the bound), at
    /// most until `deadline` or the I4 bound, whichever is first.
    pub(super) fn wait_for_events(&self, deadline: u64, serve: bool) {
        let now = now();
        let mut wake = deadline;
        if let Some(at) = self.bound_deadline()
            && !self.bound_checked
            && at > now
        {
            wake = wake.min(at);
        }
        let timeout = Duration::from_nanos(wake.saturating_sub(now));
        let d_fd = self.d.pidfd();
        let mut fds: Vec<_> = self.pipes.output.poll_entry().into_iter().collect();
        fds.push(rustix::event::PollFd::new(&d_fd, rustix::event::PollFlags::IN));
        if serve {
            fds.push(rustix::event::PollFd::new(&self.link.fd, rustix::event::PollFlags::IN));
        }
        // The child's end starts the bound of some races: wake up for it.
        if self.race.setup.child_end_starts_bound
            && self.truth.stop_requested_at.is_none()
            && let Some(w) = &self.w.pidfd
        {
            fds.push(rustix::event::PollFd::new(w, rustix::event::PollFlags::IN));
        }
        let ts = rustix::time::Timespec::try_from(timeout).ok();
        let _ = rustix::event::poll(&mut fds, ts.as_ref());
    }

    pub(super) fn read_workload(&mut self) {
        self.pipes.read(&mut self.w, &mut self.notes);
    }

    pub(super) fn write_child(&mut self, line: &str) -> Result<(), String> {
        self.pipes.write(line)
    }

    /// SIGINT to the design process (an interrupt of the supervisor), recorded with whether
    /// the child was alive: I3 asks that a live child hear of it.
    pub(super) fn interrupt(&mut self) {
        let alive = self.w.alive() || self.w.pid.is_none();
        let _ = self.d.signal(Signal::SIGINT);
        let now = now();
        self.truth.interrupts.push((now, alive));
        if self.truth.stop_requested_at.is_none() {
            self.truth.stop_requested_at = Some(now);
        }
        self.note("lab", "interrupt", format!("SIGINT to the design (child alive: {alive})"));
    }

    /// SIGKILLs the design process (the child's parent) and waits, bounded, until it is dead:
    /// whatever the caller does next happens after its parent's death.
    pub(super) fn kill_design(&mut self, why: &str) {
        if self.truth.design_killed {
            return;
        }
        let _ = self.d.signal(Signal::SIGKILL);
        let dead = readable(self.d.pidfd(), Duration::from_secs(1));
        self.truth.design_killed = true;
        self.note("lab", "kill-design", format!("SIGKILL to the design ({why}); dead: {dead}"));
    }

    /// SIGKILLs the outer process that started the design (O1, O3), once.
    pub(super) fn kill_outer(&mut self) {
        if self.truth.outer_killed {
            return;
        }
        let _ = self.d.signal(Signal::SIGKILL);
        self.note("lab", "kill-outer", "SIGKILL to the outer process".into());
        self.truth.outer_killed = true;
    }

    /// A design that overran the bound its child's end started: ask it for its trace (its
    /// watchdog thread sends it and exits the process), or SIGKILL it when that cannot be asked.
    pub(super) fn end_hung_design(&mut self) {
        let asked = self.hang_w.as_ref().is_some_and(|w| rustix::io::write(w, b"f").is_ok());
        if asked {
            self.note("lab", "hung", "the design is asked for its trace and ends".into());
        } else {
            let _ = self.d.signal(Signal::SIGKILL);
            self.note("lab", "hung", "SIGKILL to the design".into());
        }
    }

    /// Puts the child in a v1 freezer cgroup and freezes it: unkillable until thawed (O2).
    pub(super) fn freeze_child(&mut self) -> Result<(), String> {
        let pid = self.w.pid.ok_or("no child")?;
        let f = racelab_cgroup::Freezer::create("replay").map_err(|e| e.to_string())?;
        f.add(pid).map_err(|e| e.to_string())?;
        f.freeze(std::time::Instant::now() + Duration::from_secs(1)).map_err(|e| e.to_string())?;
        self.note("lab", "freeze", format!("child {pid} frozen (v1 freezer)"));
        self.freezer = Some(f);
        Ok(())
    }
}
