//! The design process D: what runs on the other side of the fork, with the workload's pipes as
//! its stdin and stdout. It arms the schedule, runs the design over the workload, and sends the
//! design's report and the hooks' trace to init over the link. Its own file because none of it
//! runs in init: it shares nothing with the lab's state but what the fork handed over.

use crate::catalog::{DesignId, Setup};
use crate::design::Supervised;
use crate::link::{Final, LabActions};
use racelab_hooks::{ArmOptions, Schedule};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The design process's whole world, handed over once at fork.
pub(super) struct DesignProcess {
    pub(super) design: DesignId,
    pub(super) setup: Setup,
    pub(super) schedule: Schedule,
    /// The hooks' park deadline.
    pub(super) park: Duration,
    /// The design's end of the link to init.
    pub(super) link: UnixStream,
    /// The runner executable: it runs the workload (and the legacy wrappers).
    pub(super) runner: PathBuf,
    /// The lock file of the lock-wrapper designs (O1).
    pub(super) lockfile: PathBuf,
    /// Read end of the pipe on which the lab asks a hung design for its trace.
    pub(super) hang: Option<OwnedFd>,
    /// The workload's command pipe (read end) and report pipe (write end): they become this
    /// process's stdin and stdout, which the workload inherits.
    pub(super) child_stdin: OwnedFd,
    pub(super) child_stdout: OwnedFd,
}

impl DesignProcess {
    /// Arms the schedule, runs the design, reports; returns the process's exit code.
    pub(super) fn run(self) -> i32 {
        if nix::unistd::dup2_stdin(&self.child_stdin).is_err()
            || nix::unistd::dup2_stdout(&self.child_stdout).is_err()
        {
            return 120;
        }
        let Ok(actions) = LabActions::new(self.link) else { return 122 };
        let actions = Arc::new(actions);
        let options = ArmOptions { deadline: self.park, ..ArmOptions::default() };
        let armed = match racelab_hooks::arm(self.schedule, actions.clone(), options) {
            Ok(a) => a,
            Err(_) => return 123,
        };
        let armed = Arc::new(Mutex::new(Some(armed)));
        if let Some(hang) = self.hang {
            hang_watchdog(hang, armed.clone(), actions.clone());
        }
        let args = racelab_sandbox::Workload::new(&self.runner)
            .ignore_term(self.setup.child_ignores_term)
            .pdeathsig(self.setup.child_pdeathsig)
            .args();
        let job = Supervised {
            setup: &self.setup,
            runner: &self.runner,
            program: &self.runner,
            args: &args,
            lockfile: &self.lockfile,
        };
        let report = crate::design::run(self.design, &job);
        racelab_hooks::point!(lab.design_returned);
        let taken = armed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(armed) = taken else {
            // The watchdog took the run (the lab gave up on this design): it ends the process.
            loop {
                std::thread::park();
            }
        };
        let hooks = armed.finish();
        match actions.send_final(&Final { report, hooks }) {
            Ok(()) => 0,
            Err(_) => 124,
        }
    }
}

/// A thread of the design process that waits for the lab's word that the design overran its
/// bound; then it ends the armed run, sends its trace (`hooks <json>`) and exits the process.
/// It blocks every signal: signals sent to the design process must reach the design's own
/// threads exactly as they would without it.
fn hang_watchdog(
    hang: OwnedFd,
    armed: Arc<Mutex<Option<racelab_hooks::Armed>>>,
    actions: Arc<LabActions>,
) {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut old));
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        loop {
            match rustix::io::read(&hang, &mut byte) {
                Ok(1) => break,
                Err(rustix::io::Errno::INTR) => continue,
                // EOF or an error: the lab went away without asking; nothing to do.
                _ => return,
            }
        }
        let taken = armed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(armed) = taken else { return };
        let _ = actions.send_hooks(&armed.finish());
        racelab_sys::ns::exit_now(0)
    });
    if blocked.is_ok() {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}
