//! One replay, as the lab's init (PID 1 of a fresh namespace) runs it.
//!
//! Topology: init (this process: oracle, action executor, reaper of last resort) forks the
//! design process D (optionally under an "outer" process O, for races where the outer tool is
//! killed); D runs the design, whose child is the workload W (its stdin and stdout are pipes to
//! init). D's hook actions come to init over a socket ([`crate::link`]); init forces PIDs with
//! the sandbox's recycling driver, makes W exit, interrupts D, freezes W. Everything init learns
//! it records with a timestamp; the oracle ([`crate::oracle`]) judges from that ground truth.

use crate::catalog::{self, DesignId, Race, Setup, Stop};
use crate::link::{Final, LabActions};
use crate::oracle::{self, Truth};
use crate::verdict::Verdict;
use nix::sys::signal::Signal;
use racelab_hooks::{ArmOptions, Event, EventKind, RunReport, Schedule, Trace};
use racelab_sandbox::{Init, Mechanism, Victim};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The scenario's name in the runner.
pub const SCENARIO: &str = "replay";

/// How long one replay may take inside the namespace before the lab gives up on the design.
pub const REPLAY_DEADLINE: Duration = Duration::from_millis(1500);

/// What the caller asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayInput {
    /// Race id.
    pub race: String,
    /// Design name.
    pub design: String,
    /// A schedule replacing the race's own (text form); `Some("")` replays with none.
    pub schedule: Option<String>,
    /// How long the lab waits for the design (`None`: [`Patience::DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<Patience>,
}

/// How long the lab waits in one replay: for a parked thread's edge (the hooks' deadline) and
/// for the whole design. Exploration shortens both to what the design needed in its baseline,
/// so a generated schedule that deadlocks costs little; a replay of a found schedule uses the
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patience {
    /// The deadline of every wait at a point.
    pub park: Duration,
    /// How long the design may take before the lab gives up on it.
    pub replay: Duration,
}

impl Patience {
    /// What every replay gets unless told otherwise.
    pub const DEFAULT: Patience =
        Patience { park: Duration::from_secs(1), replay: REPLAY_DEADLINE };
}

/// What comes back across the process boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayOutput {
    /// The oracle's verdict.
    pub verdict: Verdict,
    /// The design's and the lab's events, merged by time.
    pub trace: Trace,
    /// The design's own report, when it returned one.
    pub design_report: Option<crate::design::DesignReport>,
    /// The schedule that ran, in canonical text form.
    pub schedule: String,
    /// Time from fork of the design to verdict, in ns.
    pub wall_ns: u64,
}

/// A nonblocking fd read line by line.
pub(crate) struct Lines {
    pub(crate) fd: OwnedFd,
    buf: Vec<u8>,
    pub(crate) eof: bool,
}

impl Lines {
    pub(crate) fn new(fd: OwnedFd) -> Lines {
        let _ = rustix::io::ioctl_fionbio(&fd, true);
        Lines { fd, buf: Vec::new(), eof: false }
    }

    pub(crate) fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match rustix::io::read(&self.fd, &mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return, // EAGAIN: nothing more now
            }
        }
    }

    pub(crate) fn next_line(&mut self) -> Option<String> {
        let nl = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=nl).collect();
        Some(String::from_utf8_lossy(&line[..nl]).into_owned())
    }
}

/// Everything init knows about the workload W.
#[derive(Debug, Default)]
pub struct Workload {
    /// Its pid in the lab's namespace (from its `ready` line).
    pub pid: Option<i32>,
    /// A pidfd for it, opened when it said ready.
    pub pidfd: Option<OwnedFd>,
    /// Its `ready` line (with the signal mask it inherited).
    pub ready_line: Option<String>,
    /// Signals it reported: (time, signal number).
    pub signals: Vec<(u64, i32)>,
    /// The exit code it announced.
    pub exiting: Option<i32>,
    /// Orphans it made.
    pub orphans: Vec<i32>,
    /// It finished making orphans.
    pub orphans_done: bool,
    /// It started its tree (`tree <pids>`).
    pub tree: Option<Vec<i32>>,
}

impl Workload {
    /// It is still running (its pidfd is not readable).
    pub fn alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => !readable(fd.as_fd(), Duration::ZERO),
            None => false,
        }
    }

    /// Takes in one line the workload wrote (`ready`, `sig N`, `exiting C`, `orphan P`,
    /// `orphans-done`, `tree P...`), seen at `now`.
    pub(crate) fn absorb(&mut self, line: &str, now: u64) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ready") => {
                let pid = words.next().and_then(|p| p.parse::<i32>().ok());
                if let Some(pid) = pid {
                    self.pid = Some(pid);
                    self.pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
                        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                    });
                }
                self.ready_line = Some(line.to_string());
            }
            Some("sig") => {
                if let Some(s) = words.next().and_then(|s| s.parse().ok()) {
                    self.signals.push((now, s));
                }
            }
            Some("exiting") => self.exiting = words.next().and_then(|c| c.parse().ok()),
            Some("orphan") => self.orphans.extend(words.next().and_then(|p| p.parse::<i32>().ok())),
            Some("orphans-done") => self.orphans_done = true,
            Some("tree") => self.tree = Some(words.filter_map(|p| p.parse().ok()).collect()),
            _ => {}
        }
    }
}

pub(crate) fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec::try_from(timeout).ok();
    matches!(rustix::event::poll(&mut fds, ts.as_ref()), Ok(n) if n > 0)
}

struct Lab<'a> {
    init: &'a mut Init,
    race: &'static Race,
    design: DesignId,
    t0: u64,
    replay_deadline: Duration,
    /// The hooks' park deadline: also how long an action waits for the child to say ready.
    park: Duration,
    /// Time the design spent waiting for the lab's answers to its actions (ns).
    held_ns: u64,
    /// `spare(outer)` ran: the lab does not kill the outer process this replay.
    outer_spared: bool,
    /// When the lab began serving the action it is serving now.
    serving_since: Option<u64>,
    events: Vec<Event>,
    w: Workload,
    w_in: OwnedFd,
    w_out: Lines,
    link: Lines,
    link_w: UnixStream,
    /// The design process, or with [`Stop::KillOuter`] the outer process that started it.
    d: racelab_sandbox::Child,
    victims: Vec<Victim>,
    truth: Truth,
    final_report: Option<Final>,
    /// The hooks report of a design that never returned (asked for once it overran its bound).
    hung_hooks: Option<RunReport>,
    /// Write end of the pipe that asks a hung design for its trace ([`Setup::child_end_starts_bound`]).
    hang_w: Option<OwnedFd>,
    freezer: Option<racelab_cgroup::Freezer>,
    started: bool,
    bound_checked: bool,
    zombies_counted: bool,
}

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

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn replay(
    race: &'static Race,
    design: DesignId,
    schedule: Schedule,
    patience: Patience,
    init: &mut Init,
) -> ReplayOutput {
    let t0 = init.now_ns();
    let text = schedule.to_string();
    if let Some(reason) = oracle::missing_capability(race) {
        return ReplayOutput {
            verdict: Verdict::Skipped { reason },
            trace: Trace::default(),
            design_report: None,
            schedule: text,
            wall_ns: 0,
        };
    }
    match start(race, design, schedule, patience, init, t0) {
        Ok(mut lab) => {
            lab.drive();
            let (verdict, trace, design_report) = lab.judge();
            ReplayOutput { verdict, trace, design_report, schedule: text, wall_ns: init_now() - t0 }
        }
        Err(message) => ReplayOutput {
            verdict: Verdict::LabError { message },
            trace: Trace::default(),
            design_report: None,
            schedule: text,
            wall_ns: init_now() - t0,
        },
    }
}

fn init_now() -> u64 {
    racelab_sandbox::now_ns()
}

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
    let lockfile = PathBuf::from(format!("/tmp/racelab-{}.lock", init.host_pid()));
    let setup = race.setup;
    // A design that may hang past its bound is asked, over this pipe, for its trace before the
    // lab ends it (S1, H1).
    let (hang_r, hang_w) = if setup.child_end_starts_bound {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };

    let design_body = move || -> i32 {
        // In the design process. Its stdin/stdout become the workload's pipes (inherited by W).
        if nix::unistd::dup2_stdin(&w_stdin_r).is_err()
            || nix::unistd::dup2_stdout(&w_stdout_w).is_err()
        {
            return 120;
        }
        design_process(design, &setup, schedule, patience.park, link_d, &runner, &lockfile, hang_r)
    };
    // With KillOuter, `d` is the outer process O; the design process is its child.
    let d = if setup.stop == Stop::KillOuter {
        // O forks D and waits for it; the lab kills O. The reference dies with its parent (its
        // deployment: PR_SET_PDEATHSIG); so does buildah's helper (O3); the lock wrapper (O1)
        // has nothing of the kind.
        let die_with_parent = design == DesignId::Reference || setup.outer_pdeathsig;
        let outer = init
            .fork(move || {
                let child = racelab_sys::ns::fork_run(move || {
                    if die_with_parent {
                        let _ = rustix::process::set_parent_process_death_signal(Some(
                            rustix::process::Signal::KILL,
                        ));
                    }
                    design_body()
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
            .map_err(|e| format!("fork outer: {e}"))?;
        // D is O's child: init sees it only through /proc. Its pid is not needed; W's is.
        outer
    } else {
        init.fork(design_body).map_err(|e| format!("fork design: {e}"))?
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
        events: Vec::new(),
        w: Workload::default(),
        w_in: w_stdin_w,
        w_out: Lines::new(w_stdout_r),
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
        bound_checked: false,
        zombies_counted: false,
    })
}

/// The design process: arm the schedule, run the design, report.
#[allow(clippy::too_many_arguments)] // the design process's whole world, handed over once at fork
fn design_process(
    design: DesignId,
    setup: &Setup,
    schedule: Schedule,
    park: Duration,
    link: UnixStream,
    runner: &std::path::Path,
    lockfile: &std::path::Path,
    hang: Option<OwnedFd>,
) -> i32 {
    let Ok(actions) = LabActions::new(link) else { return 122 };
    let actions = Arc::new(actions);
    let options = ArmOptions { deadline: park, ..ArmOptions::default() };
    let armed = match racelab_hooks::arm(schedule, actions.clone(), options) {
        Ok(a) => a,
        Err(_) => return 123,
    };
    let armed = Arc::new(std::sync::Mutex::new(Some(armed)));
    if let Some(hang) = hang {
        hang_watchdog(hang, armed.clone(), actions.clone());
    }
    let mut args = vec![crate::workload::MODE.into()];
    if setup.child_ignores_term {
        args.push("--ignore-term".into());
    }
    if setup.child_pdeathsig {
        args.push("--pdeathsig".into());
    }
    let report = crate::design::run(design, setup, runner, runner, &args, lockfile);
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

/// A thread of the design process that waits for the lab's word that the design overran its
/// bound; then it ends the armed run, sends its trace (`hooks <json>`) and exits the process.
/// It blocks every signal: signals sent to the design process must reach the design's own
/// threads exactly as they would without it.
fn hang_watchdog(
    hang: OwnedFd,
    armed: Arc<std::sync::Mutex<Option<racelab_hooks::Armed>>>,
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

impl Lab<'_> {
    fn note(&mut self, actor: &str, subject: &str, detail: String) {
        self.events.push(Event {
            time_ns: init_now(),
            pid: 1,
            tid: 1,
            actor: actor.to_string(),
            kind: EventKind::Note,
            subject: subject.to_string(),
            detail,
            peer: None,
        });
    }

    /// When the lab gives up on the design: the replay's deadline, or a little after the I4
    /// bound of a stop requested late.
    fn deadline(&self) -> u64 {
        let held = self.held_ns + self.serving_since.map_or(0, |s| init_now().saturating_sub(s));
        let base = self.t0 + self.replay_deadline.as_nanos() as u64 + held;
        let wanted = self.bound_deadline().map_or(base, |bound| base.max(bound + 50_000_000));
        // Never past what the sandbox allows the runner (it SIGKILLs an overrunning runner, and
        // a runner killed before its cleanup leaves a frozen child frozen): keep room for the
        // cleanup.
        wanted.min(self.t0 + (REPLAY_DEADLINE + Duration::from_millis(1500)).as_nanos() as u64)
    }

    fn design_done(&self) -> bool {
        readable(self.d.pidfd(), Duration::ZERO)
    }

    /// Waits for events until `until` holds or `deadline` passes, handling what arrives.
    /// `serve` says whether design requests are served (not while serving one).
    fn pump(&mut self, until: &dyn Fn(&Lab<'_>) -> bool, deadline: u64, serve: bool) -> bool {
        loop {
            if until(self) {
                return true;
            }
            let now = init_now();
            if now >= deadline {
                return false;
            }
            let mut wake = deadline;
            if let Some(at) = self.bound_deadline()
                && !self.bound_checked
                && at > now
            {
                wake = wake.min(at);
            }
            let timeout = Duration::from_nanos(wake.saturating_sub(now));
            let d_fd = self.d.pidfd();
            let mut fds = vec![
                rustix::event::PollFd::new(&self.w_out.fd, rustix::event::PollFlags::IN),
                rustix::event::PollFd::new(&d_fd, rustix::event::PollFlags::IN),
            ];
            if serve {
                fds.push(rustix::event::PollFd::new(&self.link.fd, rustix::event::PollFlags::IN));
            }
            if self.w_out.eof {
                fds.remove(0);
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
            drop(fds);
            self.read_workload();
            if serve {
                self.serve_link();
            }
            self.tick(serve);
        }
    }

    fn read_workload(&mut self) {
        self.w_out.fill();
        while let Some(line) = self.w_out.next_line() {
            self.w.absorb(&line, init_now());
            self.note("child", "says", line);
        }
    }

    fn serve_link(&mut self) {
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
            let began = init_now();
            self.serving_since = Some(began);
            let result = self.act(action);
            self.serving_since = None;
            let end = init_now();
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
            use std::io::Write;
            let _ = (&self.link_w).write_all(answer.as_bytes());
        }
    }

    fn write_child(&mut self, line: &str) -> Result<(), String> {
        rustix::io::write(&self.w_in, format!("{line}\n").as_bytes())
            .map(|_| ())
            .map_err(|e| format!("writing to the child: {e}"))
    }

    fn wait_ready(&mut self) -> Result<i32, String> {
        // As long as a parked thread may wait: an action attached before the design spawned
        // its child waits for nothing (the design is blocked in it), so the wait is the lab's
        // patience, not a fixed second.
        let wait = self.park.min(Duration::from_secs(1)).as_nanos() as u64;
        let deadline = (init_now() + wait).min(self.deadline());
        if !self.pump(&|lab| lab.w.pid.is_some(), deadline, false) {
            return Err("the child never said ready".into());
        }
        self.w.pid.ok_or_else(|| "no child pid".into())
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
                if !self.truth.outer_killed {
                    let _ = self.d.signal(Signal::SIGKILL);
                    self.note("lab", "kill-outer", "SIGKILL to the outer process".into());
                    self.truth.outer_killed = true;
                }
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
                let deadline = (init_now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|lab| lab.w.tree.is_some(), deadline, false) {
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
            "ready" => self.wait_ready().map(|_| ()),
            "orphans" => {
                // Hold the caller until the child's burst of orphans is over: every orphan has
                // exited, so their SIGCHLDs are pending (and coalesced) when it goes on.
                let deadline = (init_now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|lab| lab.w.orphans_done, deadline, false) {
                    return Err("the child never finished its orphans".into());
                }
                oracle::wait_exited(&self.w.orphans, Duration::from_secs(1))?;
                self.note("lab", "orphans", format!("{} orphans exited", self.w.orphans.len()));
                Ok(())
            }
            other => Err(format!(
                "unknown lab action {other:?} (known: exit, recycle, interrupt, ready, orphans, \
                 kill(design), kill(outer), spare(outer), tree)"
            )),
        }
    }

    /// SIGKILLs the design process (the child's parent) and waits, bounded, until it is dead:
    /// whatever the caller does next happens after its parent's death.
    fn kill_design(&mut self, why: &str) {
        if self.truth.design_killed {
            return;
        }
        let _ = self.d.signal(Signal::SIGKILL);
        let dead = readable(self.d.pidfd(), Duration::from_secs(1));
        self.truth.design_killed = true;
        self.note("lab", "kill-design", format!("SIGKILL to the design ({why}); dead: {dead}"));
    }

    /// A design that overran the bound its child's end started: ask it for its trace (its
    /// watchdog thread sends it and exits the process), or SIGKILL it when that cannot be asked.
    fn end_hung_design(&mut self) {
        let asked = self.hang_w.as_ref().is_some_and(|w| rustix::io::write(w, b"f").is_ok());
        if asked {
            self.note("lab", "hung", "the design is asked for its trace and ends".into());
        } else {
            let _ = self.d.signal(Signal::SIGKILL);
            self.note("lab", "hung", "SIGKILL to the design".into());
        }
    }

    fn interrupt(&mut self) {
        let alive = self.w.alive() || self.w.pid.is_none();
        let _ = self.d.signal(Signal::SIGINT);
        let now = init_now();
        self.truth.interrupts.push((now, alive));
        if self.truth.stop_requested_at.is_none() {
            self.truth.stop_requested_at = Some(now);
        }
        self.note("lab", "interrupt", format!("SIGINT to the design (child alive: {alive})"));
    }

    fn bound_deadline(&self) -> Option<u64> {
        self.truth.stop_requested_at.map(|t| {
            let serving = self.serving_since.map_or(0, |s| init_now().saturating_sub(s.max(t)));
            t + self.race.setup.bound.as_nanos() as u64 + self.truth.lab_held_ns + serving
        })
    }

    /// Time-driven and state-driven steps of the scenario.
    fn tick(&mut self, serve: bool) {
        if !self.started && self.w.pid.is_some() {
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
            self.truth.stop_requested_at = Some(init_now());
            self.truth.bound_from_child_end = true;
            self.note("lab", "child-ended", "the child ended: the design's bound starts".into());
        }
        // The outer process dies once the child is up (and has started its tree, if asked).
        if self.race.setup.stop == Stop::KillOuter
            && self.started
            && !self.truth.outer_killed
            && !self.outer_spared
            && (self.race.setup.child_start.is_none() || self.w.tree.is_some())
        {
            let _ = self.d.signal(Signal::SIGKILL);
            self.note("lab", "kill-outer", "SIGKILL to the outer process".into());
            self.truth.outer_killed = true;
        }
        if serve && self.w.orphans_done && !self.zombies_counted {
            let count = oracle::count_zombies_at_quiescence(self.d.pid(), &self.w.orphans);
            // A design that sent the lab a request while we looked is waiting for us, not
            // quiescent: serve it first and count again (exploration found the reference
            // "leaving" 49 zombies while it sat in `ready(child)` at `reaper.reaped`,
            // mid-drain, waiting for this very loop).
            if self.link.buf.is_empty() && !readable(self.link.fd.as_fd(), Duration::ZERO) {
                self.zombies_counted = true;
                self.note("lab", "zombies", format!("{count:?}"));
                self.truth.zombies = Some(count);
                let _ = self.write_child("exit 0");
            }
        }
        if let Some(at) = self.bound_deadline()
            && !self.bound_checked
            && init_now() >= at
        {
            self.bound_checked = true;
            if !self.design_done() && self.final_report.is_none() {
                let stop = self.truth.stop_requested_at.unwrap_or(at);
                self.truth.overran_bound =
                    Some(init_now().saturating_sub(stop + self.truth.lab_held_ns));
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
        let until = init_now() + 500_000_000;
        loop {
            self.read_workload();
            if self.w.pid.is_some() {
                return; // it said ready: the child runs on (the oracle judges what is left)
            }
            if fds.iter().all(|fd| readable(fd.as_fd(), Duration::ZERO)) {
                self.note("lab", "orphans", "nothing the design started is left".into());
                return;
            }
            let now = init_now();
            if now >= until {
                return;
            }
            let mut polled: Vec<rustix::event::PollFd<'_>> = fds
                .iter()
                .map(|fd| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
                .collect();
            if !self.w_out.eof {
                polled
                    .push(rustix::event::PollFd::new(&self.w_out.fd, rustix::event::PollFlags::IN));
            }
            let ts = rustix::time::Timespec::try_from(Duration::from_nanos(until - now)).ok();
            let _ = rustix::event::poll(&mut polled, ts.as_ref());
        }
    }

    fn freeze_child(&mut self) -> Result<(), String> {
        let pid = self.w.pid.ok_or("no child")?;
        let f = racelab_cgroup::Freezer::create("replay").map_err(|e| e.to_string())?;
        f.add(pid).map_err(|e| e.to_string())?;
        f.freeze(std::time::Instant::now() + Duration::from_secs(1)).map_err(|e| e.to_string())?;
        self.note("lab", "freeze", format!("child {pid} frozen (v1 freezer)"));
        self.freezer = Some(f);
        Ok(())
    }

    /// Runs the replay until the design is done (or the deadline), then collects ground truth.
    fn drive(&mut self) {
        let done = |lab: &Lab<'_>| {
            lab.design_done()
                && (lab.final_report.is_some()
                    || lab.link.eof
                    || lab.truth.outer_killed
                    || lab.truth.design_killed)
        };
        // The deadline grows when a stop is requested late: I4's bound check always happens.
        let mut finished = false;
        while !finished && init_now() < self.deadline() {
            finished = self.pump(&done, self.deadline(), true);
        }
        // Whatever is still queued (the final report may race the exit).
        self.serve_link();
        self.read_workload();
        if self.truth.design_killed {
            self.watch_orphaned_tree();
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
        if self.race.invariants.contains(&crate::verdict::Invariant::I5NoSurvivors)
            && !(self.truth.hung && self.truth.stop_requested_at.is_none())
        {
            self.truth.survivors =
                oracle::survivors(self.init, &self.victims, Duration::from_millis(200));
            self.truth.lock_held =
                oracle::lock_held(&format!("/tmp/racelab-{}.lock", self.init.host_pid()));
        }
        let fates = oracle::victim_fates(&self.victims);
        for (pid, fate) in fates {
            self.note(
                "lab",
                "victim",
                format!("the process that took PID {pid} ended as {fate:?}"),
            );
            self.truth.victims.push((pid, fate));
        }
        self.cleanup();
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
        oracle::kill_the_rest(self.init, &self.victims);
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
        let _ = std::fs::remove_file(format!("/tmp/racelab-{}.lock", self.init.host_pid()));
    }

    fn judge(self) -> (Verdict, Trace, Option<crate::design::DesignReport>) {
        let mut trace_parts = vec![Trace { events: self.events, dropped: 0 }];
        let (report, hooks) = match self.final_report {
            Some(f) => (Some(f.report), Some(f.hooks)),
            None => (None, self.hung_hooks),
        };
        if let Some(h) = &hooks {
            trace_parts.push(h.trace.clone());
        }
        let mut trace = Trace::merge(trace_parts);
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
        // The oracle's conclusion closes the timeline, so a reader sees what broke where.
        trace.events.push(verdict.closing_event(init_now()));
        (verdict, trace, report)
    }
}
