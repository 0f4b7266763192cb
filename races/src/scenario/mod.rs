//! One replay against an instrumented design, as the lab's init (PID 1 of a fresh namespace)
//! runs it.
//!
//! Topology: init (this process: oracle, action executor, reaper of last resort) forks the
//! design process D (optionally under an "outer" process O, for races where the outer tool is
//! killed); D runs the design, whose child is the workload W (its stdin and stdout are pipes to
//! init). D's hook actions come to init over a socket ([`crate::link`]); init forces PIDs with
//! the sandbox's recycling driver, makes W exit, interrupts D, freezes W. Everything init learns
//! it records with a timestamp; the oracle ([`crate::oracle`]) judges from that ground truth.
//!
//! The files, bottom to top: `input.rs` (what the replay is asked for), `design_process.rs`
//! (what runs in D), `lab.rs` (init's state and its primitive moves), `steps.rs` (the
//! scenario's own time- and state-driven steps), `actions.rs` (the lab actions a design
//! requests), `drive.rs` (the loop, the ground truth, the verdict), and this file: the fork
//! topology and the entry point.

mod actions;
mod design_process;
mod drive;
mod input;
mod lab;
mod steps;

pub use input::{Patience, REPLAY_DEADLINE, ReplayInput, SCENARIO};

use crate::catalog::{self, DesignId, Race, Stop};
use crate::child_log::ChildLog;
use crate::evidence;
use crate::lab::{ChildPipes, Lines, Notes, now, pipe};
use crate::output::ReplayOutput;
use crate::truth::Truth;
use crate::verdict::Verdict;
use design_process::DesignProcess;
use lab::Lab;
use racelab_hooks::Schedule;
use racelab_sandbox::Init;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Runs one replay as init and returns its output as JSON.
pub fn run(input: serde_json::Value, init: &mut Init) -> Result<serde_json::Value, String> {
    let input: ReplayInput =
        serde_json::from_value(input).map_err(|e| format!("bad input: {e}"))?;
    let race = catalog::find(&input.race).ok_or_else(|| format!("unknown race {}", input.race))?;
    let design = DesignId::by_name(&input.design)
        .ok_or_else(|| format!("unknown design {}", input.design))?;
    let text = input.schedule.unwrap_or_else(|| race.schedule.to_string());
    let schedule = Schedule::parse(&text).map_err(|e| format!("malformed schedule: {e}"))?;
    let out = replay(race, design, schedule, input.patience.unwrap_or(Patience::DEFAULT), init);
    serde_json::to_value(out).map_err(|e| e.to_string())
}

fn replay(
    race: &'static Race,
    design: DesignId,
    schedule: Schedule,
    patience: Patience,
    init: &mut Init,
) -> ReplayOutput {
    let t0 = now();
    let text = schedule.to_string();
    if let Some(reason) = evidence::missing_capability(race) {
        return ReplayOutput::early(Verdict::Skipped { reason }, text, 0);
    }
    match start(race, design, schedule, patience, init, t0) {
        Ok(mut lab) => {
            lab.drive();
            let (verdict, trace, design_report) = lab.judge();
            ReplayOutput { verdict, trace, design_report, schedule: text, wall_ns: now() - t0 }
        }
        Err(message) => ReplayOutput::early(Verdict::LabError { message }, text, now() - t0),
    }
}

/// Forks the design process (under its outer process where the race kills that one) with the
/// workload's pipes, the link and the hang pipe, and builds init's side of the replay.
fn start<'a>(
    race: &'static Race,
    design: DesignId,
    schedule: Schedule,
    patience: Patience,
    init: &'a mut Init,
    t0: u64,
) -> Result<Lab<'a>, String> {
    let runner = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let (w_stdin_r, w_stdin_w) = pipe()?;
    let (w_stdout_r, w_stdout_w) = pipe()?;
    let (link_i, link_d) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let setup = race.setup;
    // A design that may hang past its bound is asked, over this pipe, for its trace before the
    // lab ends it (S1, H1).
    let (hang_r, hang_w) = if setup.child_end_starts_bound {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let stop_waits_for_design = schedule.actions().any(|(_, a)| {
        a.name == "ready"
            && matches!(a.args.first(), Some(racelab_hooks::Arg::Ident(who)) if who == "design")
    });
    let process = DesignProcess {
        design,
        setup,
        schedule,
        park: patience.park,
        link: link_d,
        runner,
        lockfile: lab::lockfile(init),
        hang: hang_r,
        child_stdin: w_stdin_r,
        child_stdout: w_stdout_w,
    };
    // With KillOuter, `d` is the outer process O; the design process is its child.
    let d = if setup.stop == Stop::KillOuter {
        // O forks D and waits for it; the lab kills O. The reference dies with its parent (its
        // deployment: PR_SET_PDEATHSIG); so does buildah's helper (O3); the lock wrapper (O1)
        // has nothing of the kind.
        let die_with_parent = design == DesignId::Reference || setup.outer_pdeathsig;
        init.fork(move || {
            let child = racelab_sys::ns::fork_run(move || {
                if die_with_parent {
                    let _ = rustix::process::set_parent_process_death_signal(Some(
                        rustix::process::Signal::KILL,
                    ));
                }
                process.run()
            });
            match child {
                Ok(c) => {
                    let _ = rustix::process::waitid(
                        rustix::process::WaitId::PidFd(c.pidfd.as_fd()),
                        rustix::process::WaitIdOptions::EXITED,
                    );
                    0
                }
                Err(_) => 121,
            }
        })
        // D is O's child: init sees it only through /proc. Its pid is not needed; W's is.
        .map_err(|e| format!("fork outer: {e}"))?
    } else {
        init.fork(move || process.run()).map_err(|e| format!("fork design: {e}"))?
    };
    Ok(Lab {
        init,
        race,
        design,
        t0,
        replay_deadline: patience.replay,
        park: patience.park,
        held_ns: 0,
        outer_spared: false,
        serving_since: None,
        notes: Notes::default(),
        w: ChildLog::default(),
        pipes: ChildPipes::new(w_stdin_w, w_stdout_r),
        link: Lines::new(OwnedFd::from(link_i.try_clone().map_err(|e| e.to_string())?)),
        link_w: link_i,
        d,
        victims: Vec::new(),
        truth: Truth::default(),
        final_report: None,
        hung_hooks: None,
        hang_w,
        freezer: None,
        started: false,
        stop_waits_for_design,
        design_ready: false,
        bound_checked: false,
        zombies_counted: false,
    })
}
