//! The I/O side of one black-box replay: receives the target's notifications from the seccomp
//! listener and, when the schedule holds exits or instructions, the stops of its [`Tracer`],
//! names the program image of each thread from /proc, feeds the [`Engine`] and answers the
//! kernel. Lab actions come out as [`ActionRequest`]s: the caller (the lab's init, which owns
//! the workload, the victims and the clock) carries them out and reports back.
//!
//! The caller's loop polls the listener ([`AsFd`]) and, for a traced session, the tracer's
//! SIGCHLD signalfd ([`Session::trace_fd`]), then calls [`Session::receive`]; it calls
//! [`Session::tick`] at least every few milliseconds while something is held (deadlines).
//!
//! A replay whose schedule holds exits or instructions ([`Engine::needs_ptrace`]), as the
//! lab's init runs it (tests/ptrace.rs does the same with a small loop):
//!
//! ```text
//! init                                          launcher (forked by init)
//! engine = Engine::new(&schedule, hold)
//! (waiter, opener) = racelab_sys::ptrace::gate()
//! fork the launcher ------------------------->  waiter.wait()       # before the filter
//! [PID 1 case: read the inner pid first]
//! tracer = Tracer::seize(pid, &engine)          (seized, resumed: it waits on)
//! opener.open() ----------------------------->  install_program(filter), send_fd(listener)
//! listener = recv_fd(..)                  <----
//! session = Session::traced(listener, engine, tracer)
//!                                               execve(program)   # PTRACE_EVENT_EXEC stop:
//! loop: poll(listener, session.trace_fd(),      #   code points armed, syscall stops on
//!            pipes, pidfds); session.receive(now);
//!       next_action / action_done; session.tick(now)
//! session.finish(now)                           # breakpoints lifted, threads detached
//! ```
//!
//! The tracer must be used from the thread that seized (ptrace's rule), and blocks SIGCHLD in
//! that thread while it lives: processes that thread forks meanwhile (victims) inherit the
//! blocked SIGCHLD unless they reset their mask.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};

use racelab_hooks::{Action, At, Event, EventKind, RunReport};
use racelab_sys::seccomp::{self, Listener, ListenerEvent, NotifyError};

use crate::engine::{Arrival, Decision, Engine, NotifId, Site};
use crate::image::program_label;
use crate::trace::{TraceEvent, Tracer};

/// How the trace says that a thread was verified parked in the kernel while an action ran.
pub const PARKED: &str = "parked in the kernel";

/// A lab action the engine wants run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    /// The notification whose point carries it (pass it back to [`Session::action_done`]).
    pub id: NotifId,
    /// The action.
    pub action: Action,
    /// Where.
    pub at: At,
}

/// A signal a target sent that the oracle wants to know about (SIGKILL and the stop signals,
/// [`crate::filter::OBSERVED`]): ground truth seen at the syscall, whatever the target says
/// afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSignal {
    /// When it was let go (CLOCK_MONOTONIC ns).
    pub time_ns: u64,
    /// The sending process and its image.
    pub by_pid: i32,
    /// Its program image.
    pub by_program: String,
    /// The syscall (`kill`, `tgkill`, `pidfd_send_signal`).
    pub syscall: String,
    /// Its first argument: the pid (negative: a process group), or the pidfd.
    pub target: i64,
    /// The signal.
    pub signal: i32,
}

fn tgid(tid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

/// One replay's session over the target's listener.
#[derive(Debug)]
pub struct Session {
    listener: Listener,
    engine: Engine,
    requests: VecDeque<ActionRequest>,
    /// Notifications the kernel holds for us: id -> (tid, pid, program, observed signal).
    held: HashMap<NotifId, (i32, i32, String, Option<SentSignal>)>,
    /// Threads that may owe a `.returned`: tid -> (pid, program).
    threads: HashMap<i32, (i32, String)>,
    sent: Vec<SentSignal>,
    notes: Vec<Event>,
    targets_gone: bool,
    tracer: Option<Tracer>,
    /// Holds at ptrace stops: id -> tid (their ids count down from `u64::MAX`).
    ptrace_ids: HashMap<NotifId, i32>,
    next_ptrace_id: NotifId,
}

impl Session {
    /// A session answering `listener` with `engine`'s decisions.
    pub fn new(listener: Listener, engine: Engine) -> Session {
        Session {
            listener,
            engine,
            requests: VecDeque::new(),
            held: HashMap::new(),
            threads: HashMap::new(),
            sent: Vec::new(),
            notes: Vec::new(),
            targets_gone: false,
            tracer: None,
            ptrace_ids: HashMap::new(),
            next_ptrace_id: NotifId::MAX,
        }
    }

    /// A session that also holds the threads `tracer` traces at their syscall exits and
    /// breakpoints ([`Engine::needs_ptrace`]). Seize before the program runs
    /// ([`Tracer::seize`]), then build the session.
    pub fn traced(listener: Listener, engine: Engine, tracer: Tracer) -> Session {
        let mut s = Session::new(listener, engine);
        s.tracer = Some(tracer);
        s
    }

    /// The tracer's SIGCHLD signalfd, to poll with the listener: readable when a traced
    /// thread stopped or ended (then call [`Session::receive`]).
    pub fn trace_fd(&self) -> Option<BorrowedFd<'_>> {
        self.tracer.as_ref().map(AsFd::as_fd)
    }

    /// Every task running the filter has exited (the listener reported POLLHUP).
    pub fn targets_gone(&self) -> bool {
        self.targets_gone
    }

    /// Receives every notification and every ptrace stop pending now (without blocking) and
    /// answers what can go.
    pub fn receive(&mut self, now_ns: u64) {
        self.receive_notifications(now_ns);
        self.pump_trace(now_ns);
    }

    fn receive_notifications(&mut self, now_ns: u64) {
        loop {
            match self.listener.wait(std::time::Duration::ZERO) {
                Ok(ListenerEvent::Pending) => {}
                Ok(ListenerEvent::AllTargetsGone) => {
                    self.targets_gone = true;
                    return;
                }
                Ok(ListenerEvent::TimedOut) | Err(_) => return,
            }
            let n = match self.listener.recv() {
                Ok(n) => n,
                // Withdrawn between poll and recv (the thread died): nothing to answer.
                Err(NotifyError::Gone) => continue,
                Err(NotifyError::Io(_)) => return,
            };
            let Some(syscall) = n.sysno() else {
                let _ = self.listener.continue_syscall(n.id);
                continue;
            };
            let program = program_label(n.tid).unwrap_or_else(|| "?".into());
            let pid = tgid(n.tid).unwrap_or(n.tid);
            let signal = observed_signal(syscall, &n.args).map(|(target, signal)| SentSignal {
                time_ns: 0,
                by_pid: pid,
                by_program: program.clone(),
                syscall: syscall.name().to_string(),
                target,
                signal,
            });
            self.held.insert(n.id.0, (n.tid, pid, program.clone(), signal));
            self.threads.insert(n.tid, (pid, program.clone()));
            let decisions = self.engine.arrive(Arrival {
                id: n.id.0,
                tid: n.tid,
                pid,
                program,
                site: Site::Entry { syscall, args: n.args },
                time_ns: now_ns,
            });
            self.apply(decisions, now_ns);
        }
    }

    /// Feeds every ptrace event to the engine until the tracer has nothing more.
    fn pump_trace(&mut self, now_ns: u64) {
        loop {
            let Some(tracer) = self.tracer.as_mut() else { return };
            let events = tracer.poll();
            if events.is_empty() {
                return;
            }
            for ev in events {
                self.trace_event(ev, now_ns);
            }
        }
    }

    fn trace_event(&mut self, ev: TraceEvent, now_ns: u64) {
        let (tid, pid, site) = match ev {
            TraceEvent::Exit { tid, pid, syscall, args, .. } => {
                (tid, pid, Site::Exit { syscall, args })
            }
            TraceEvent::Code { tid, pid, points, .. } => (tid, pid, Site::Code { points }),
            TraceEvent::Ended { tid, pid } => {
                let ids: Vec<NotifId> =
                    self.ptrace_ids.iter().filter(|(_, t)| **t == tid).map(|(i, _)| *i).collect();
                for id in ids {
                    self.ptrace_ids.remove(&id);
                    self.held.remove(&id);
                    let decisions = self.engine.gone(id, now_ns);
                    self.apply(decisions, now_ns);
                }
                if let Some((_, program)) = self.threads.get(&tid).cloned() {
                    let decisions = self.engine.thread_ended(tid, pid, &program, now_ns);
                    self.apply(decisions, now_ns);
                }
                return;
            }
            TraceEvent::Note { tid, pid, subject, detail } => {
                let actor = program_label(tid).unwrap_or_else(|| "lab".into());
                self.note(now_ns, (pid, tid, actor), subject, detail);
                return;
            }
        };
        let id = self.next_ptrace_id;
        self.next_ptrace_id -= 1;
        let program = program_label(tid).unwrap_or_else(|| "?".into());
        self.held.insert(id, (tid, pid, program.clone(), None));
        self.ptrace_ids.insert(id, tid);
        self.threads.insert(tid, (pid, program.clone()));
        let decisions =
            self.engine.arrive(Arrival { id, tid, pid, program, site, time_ns: now_ns });
        self.apply(decisions, now_ns);
    }

    fn note(&mut self, time_ns: u64, who: (i32, i32, String), subject: String, detail: String) {
        self.notes.push(Event {
            time_ns,
            pid: who.0 as u32,
            tid: who.1 as u32,
            actor: who.2,
            kind: EventKind::Note,
            subject,
            detail,
            peer: None,
        });
    }

    fn apply(&mut self, decisions: Vec<Decision>, now_ns: u64) {
        let mut queue: VecDeque<Decision> = decisions.into();
        while let Some(d) = queue.pop_front() {
            match d {
                Decision::Run { id, action, at } => {
                    // Ground truth that the point holds its thread while the action runs: the
                    // kernel says the thread waits in seccomp's notification.
                    if let Some((tid, pid, program, _)) = self.held.get(&id) {
                        let (parked, wchan) = if self.ptrace_ids.contains_key(&id) {
                            held_in_ptrace_stop(*tid)
                        } else {
                            parked_in_kernel(*pid, *tid)
                        };
                        self.notes.push(Event {
                            time_ns: now_ns,
                            pid: *pid as u32,
                            tid: *tid as u32,
                            actor: program.clone(),
                            kind: EventKind::Note,
                            subject: at.to_string(),
                            detail: if parked {
                                format!("{PARKED} ({wchan}) while {action} runs")
                            } else {
                                format!("NOT parked in the kernel (wait channel {wchan:?}) while {action} runs")
                            },
                            peer: None,
                        });
                    }
                    self.requests.push_back(ActionRequest { id, action, at })
                }
                Decision::Continue(id) if self.ptrace_ids.contains_key(&id) => {
                    let tid = self.ptrace_ids.remove(&id).unwrap_or_default();
                    let info = self.held.remove(&id);
                    let released = self.tracer.as_mut().map(|t| t.release(tid));
                    if let Some(Err(e)) = released {
                        if let Some((tid, pid, program, _)) = info {
                            self.note(now_ns, (pid, tid, program), "gone".into(), e.to_string());
                        }
                        queue.extend(self.engine.gone(id, now_ns));
                    }
                }
                Decision::Continue(id) => {
                    let info = self.held.remove(&id);
                    match self.listener.continue_syscall(seccomp::NotifId(id)) {
                        Ok(()) => {
                            if let Some((_, _, _, Some(mut s))) = info {
                                s.time_ns = now_ns;
                                self.sent.push(s);
                            }
                        }
                        Err(_) => {
                            if let Some((tid, pid, program, _)) = info {
                                self.notes.push(Event {
                                    time_ns: now_ns,
                                    pid: pid as u32,
                                    tid: tid as u32,
                                    actor: program,
                                    kind: EventKind::Note,
                                    subject: "gone".into(),
                                    detail: "the thread died while parked".into(),
                                    peer: None,
                                });
                            }
                            queue.extend(self.engine.gone(id, now_ns));
                        }
                    }
                }
            }
        }
    }

    /// The next lab action to carry out, if any.
    pub fn next_action(&mut self) -> Option<ActionRequest> {
        self.requests.pop_front()
    }

    /// The action of notification `id` ended.
    pub fn action_done(&mut self, id: NotifId, result: Result<(), String>, now_ns: u64) {
        let decisions = self.engine.action_done(id, result, now_ns);
        self.apply(decisions, now_ns);
        self.pump_trace(now_ns);
    }

    /// Deadlines, parked threads that died, threads that ended while owing a return.
    pub fn tick(&mut self, now_ns: u64) {
        self.pump_trace(now_ns);
        let dead: Vec<NotifId> = self
            .held
            .keys()
            .copied()
            .filter(|id| !self.ptrace_ids.contains_key(id))
            .filter(|id| !self.listener.id_valid(seccomp::NotifId(*id)))
            .collect();
        for id in dead {
            self.held.remove(&id);
            let decisions = self.engine.gone(id, now_ns);
            self.apply(decisions, now_ns);
        }
        for tid in self.engine.returning_threads() {
            let Some((pid, program)) = self.threads.get(&tid).cloned() else { continue };
            if !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() {
                let decisions = self.engine.thread_ended(tid, pid, &program, now_ns);
                self.apply(decisions, now_ns);
            }
        }
        for (id, program) in self.engine.blocked_awaits() {
            if self.stalled(program) {
                let decisions = self.engine.skip_await(id, now_ns);
                self.apply(decisions, now_ns);
            }
        }
        let decisions = self.engine.tick(now_ns);
        self.apply(decisions, now_ns);
        self.pump_trace(now_ns);
    }

    /// Whether no thread running `program` can make progress: each is parked here, or waits in
    /// `vfork` for a child that is (its wait channel says `wait_for_vfork_done`). A thread
    /// running in user space, or blocked anywhere else, is never called stalled.
    fn stalled(&self, program: &str) -> bool {
        let held: Vec<i32> = self.held.values().map(|(tid, ..)| *tid).collect();
        let mut any = false;
        let Ok(procs) = std::fs::read_dir("/proc") else { return false };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if program_label(pid).as_deref() != Some(program) {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
            for t in tasks.flatten() {
                let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                any = true;
                if held.contains(&tid) {
                    continue;
                }
                if !in_vfork_wait(pid, tid) {
                    return false;
                }
            }
        }
        any
    }

    /// Whether some thread owes a `.returned` (the caller should tick again soon: a thread's
    /// end shows only in /proc).
    pub fn awaits_returns(&self) -> bool {
        !self.engine.returning_threads().is_empty()
    }

    /// Whether some thread of process `pid` waits for the lab or was just let go by it, so
    /// that /proc cannot tell whether it is idle. Three windows, each seen on this machine as a
    /// Z1 replay counting supervise's orphans as zombies mid-reap (its reaping `waitid` held):
    /// - parked here now (received, not answered; the thread sleeps killable, state `D`);
    /// - queued, not received yet: the listener is readable from the moment the notification
    ///   is queued, while the thread may still be preempted on its way to sleep (state `S`,
    ///   no wait channel yet);
    /// - answered, its wake-up not yet run (a remote CPU's wake list): the thread still reads
    ///   `S` with seccomp's wait channel until it is back on a runqueue.
    ///
    /// A pending notification of another process of the target counts too: it is not idle.
    pub fn holds_any_of(&self, pid: i32) -> bool {
        self.held.values().any(|(_, p, ..)| *p == pid)
            || matches!(self.listener.wait(std::time::Duration::ZERO), Ok(ListenerEvent::Pending))
            || in_notification_wait(pid)
    }

    /// Whether every thread of process `pid` is parked here now: then nothing in that process
    /// can make progress (it cannot reap, signal or exit) until the lab lets one go.
    pub fn all_threads_held(&self, pid: i32) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
        let held: Vec<i32> = self.held.values().map(|(tid, ..)| *tid).collect();
        let mut any = false;
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            any = true;
            if !held.contains(&tid) {
                return false;
            }
        }
        any
    }

    /// Ends the session: lets every held thread go and returns the run's report (trace, stuck
    /// report, unmet edges, failed actions) and the signals the targets sent.
    pub fn finish(mut self, now_ns: u64) -> (RunReport, Vec<SentSignal>) {
        let (decisions, mut report) = self.engine.finish(now_ns);
        self.apply(decisions, now_ns);
        // Anything still held (an action never reported back) goes too; the tracer lifts its
        // breakpoints and detaches (a held thread goes on from its point).
        for id in self.held.keys().copied().collect::<Vec<_>>() {
            if !self.ptrace_ids.contains_key(&id) {
                let _ = self.listener.continue_syscall(seccomp::NotifId(id));
            }
        }
        if let Some(t) = self.tracer.as_mut() {
            t.detach_all();
        }
        report.trace.events.append(&mut self.notes);
        report.trace.sort();
        (report, self.sent)
    }
}

impl AsFd for Session {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// Whether thread `tid` of `pid` sleeps in seccomp's notification wait, and its wait channel.
/// Right after the lab received a notification the thread may still be on its way to sleep:
/// the kernel has no event for "went to sleep", so this looks again for up to 100 ms.
fn parked_in_kernel(pid: i32, tid: i32) -> (bool, String) {
    let path = format!("/proc/{pid}/task/{tid}/wchan");
    let until = std::time::Instant::now() + std::time::Duration::from_millis(100);
    let mut wchan = String::new();
    while std::time::Instant::now() < until {
        wchan = std::fs::read_to_string(&path).unwrap_or_default();
        if wchan.contains("seccomp") {
            return (true, wchan);
        }
        std::thread::yield_now();
    }
    (false, wchan)
}

/// Whether some thread of `pid` shows seccomp's notification wait as its wait channel.
fn in_notification_wait(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("seccomp"))
    })
}

/// Whether thread `tid` is in a ptrace stop (state `t`), and its state line.
fn held_in_ptrace_stop(tid: i32) -> (bool, String) {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next());
    (state == Some("t"), format!("ptrace stop, state {}", state.unwrap_or("?")))
}

/// Whether thread `tid` of `pid` waits for a vfork child: blocked (state D) in `clone`,
/// `clone3` or `vfork`, in the kernel's vfork wait (the wait channel reads
/// `wait_for_vfork_done`, or `kernel_clone` where that function is inlined).
fn in_vfork_wait(pid: i32, tid: i32) -> bool {
    let task = format!("/proc/{pid}/task/{tid}");
    let wchan = std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default();
    let nr = std::fs::read_to_string(format!("{task}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<i32>().ok()));
    let state = std::fs::read_to_string(format!("{task}/stat")).ok().and_then(|s| {
        s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
    });
    let clone_family = ["clone", "clone3", "vfork"]
        .iter()
        .filter_map(|n| n.parse::<racelab_hooks::Sysno>().ok())
        .any(|s| Some(s.id()) == nr);
    clone_family
        && state.as_deref() == Some("D")
        && (wchan.contains("vfork") || wchan.contains("kernel_clone"))
}

/// (target, signal) of a signal-sending syscall, for the signals the oracle watches.
fn observed_signal(syscall: racelab_hooks::Sysno, args: &[u64; 6]) -> Option<(i64, i32)> {
    let index = racelab_hooks::syscall_point::signal_arg(syscall)?;
    let signal = args[index] as u32 as i32;
    let target = args[0] as u32 as i32;
    let watched = crate::filter::OBSERVED.contains(&signal) && syscall.name() != "rt_sigaction";
    watched.then_some((i64::from(target), signal))
}
