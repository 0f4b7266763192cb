//! The runner as a server: exec'd once, it forks a fresh runner for every run.
//!
//! Why: [`crate::run`] execs the runner executable for every run, and an exec is the most
//! expensive step of a short run on the VMs this lab runs on (about 1.2-1.8 ms for a
//! dynamically linked Rust binary, a third of a whole replay: page faults of the loader). A
//! fork of a small, single-threaded process that has never run a scenario is a few hundred
//! microseconds and gives the same clean start: one thread, no state from an earlier run, a
//! fresh address space for every namespace. So [`Server::start`] execs `runner __serve` once,
//! and each [`Server::run`] sends one request line. When the run needs no user namespace
//! (root), the server is the runner: it `clone3`s PID 1 straight into a new PID and mount
//! namespace (its own namespaces stay as they are, so it can do so again for the next run),
//! supervises it with the same code and deadline as an exec'd runner, and answers with the
//! same report. Otherwise (a user namespace must be unshared, which would be for good) it
//! forks a child that does exactly what an exec'd `runner __run <json>` does and collects its
//! stdout, stderr and status under the same deadline.
//!
//! Invariants kept:
//! - the server never runs a scenario itself and never starts a thread: every fork is from a
//!   single-threaded process ([`racelab_sys::ns::fork_run`] checks it each time);
//! - every wait has a deadline: the server kills a run that overran (PID 1 follows by
//!   pdeathsig, the namespace with it), and the caller kills a server that does not answer;
//! - nothing outlives the caller for long: a forked runner dies with the server
//!   (`PR_SET_PDEATHSIG`), and the server exits at EOF on its stdin, so when the caller dies
//!   the server ends after at most the current run's deadline.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{WaitId, WaitIdOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::caller::{interpret, read_to_eof};
use crate::error::SandboxError;
use crate::interrupt::RUNNER_ABORT_GRACE;
use crate::proc::poll_readable;
use crate::runner::{Capture, Scenarios, needs_user_ns, run_mode, setup_and_run};
use crate::spec::{Fault, Report, RunArgs, RunOutcome, Spec};
use crate::stop::Stop;

use crate::modes::SERVE_MODE;

/// How much longer than a run's own bound (`deadline + teardown`) the caller waits for the
/// server's answer: the server's fork and its kill-and-reap of an overrunning runner.
const ANSWER_MARGIN: Duration = Duration::from_secs(3);

/// How much longer than its own cleanup bound a server waits for an interrupted forked runner.
const STOP_MARGIN: Duration = Duration::from_millis(300);

/// How long the caller waits for a server to exit after closing its stdin.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// One answer of the server: what an exec'd runner would have left its caller.
#[derive(Debug, Serialize, Deserialize)]
struct Served {
    stdout: String,
    stderr: String,
    /// The runner's raw wait status; `None` when it overran and was killed.
    status: Option<i32>,
}

/// A running runner server (see the module doc). Not `Sync`: one request at a time.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Known to the interrupt thread while it lives (see [`crate::interrupt`]).
    tracked: crate::interrupt::Tracked,
    stdin: Option<ChildStdin>,
    out: OwnedFd,
    pending: Vec<u8>,
}

impl Server {
    /// The command that starts a server: `runner __serve`, stdin and stdout piped (the
    /// protocol), stderr inherited (the server's own complaints; each run's stderr comes back
    /// in its outcome). Adjust it (wrap it in `setpriv`, ...) and pass it to [`Server::start`].
    pub fn command(runner: &Path) -> Command {
        let mut cmd = Command::new(runner);
        cmd.arg(SERVE_MODE).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        cmd
    }

    /// Starts a server with `cmd` (from [`Server::command`]).
    pub fn start(mut cmd: Command) -> Result<Server, SandboxError> {
        // What an earlier lab SIGKILLed mid-run left (a frozen task keeps its namespace's init
        // from exiting): cleaned before this one starts.
        crate::leaf::gc_stale_leaves();
        crate::interrupt::refuse_if_interrupted()?;
        let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
            runner: Path::new(cmd.get_program()).to_path_buf(),
            source,
        })?;
        let tracked = crate::interrupt::track(child.id());
        let stdin = child.stdin.take();
        let out = child.stdout.take().map(OwnedFd::from);
        match (stdin, out) {
            (Some(stdin), Some(out)) => {
                Ok(Server { child, tracked, stdin: Some(stdin), out, pending: Vec::new() })
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(SandboxError::Invalid("the server command must pipe stdin and stdout".into()))
            }
        }
    }

    /// Runs `scenario` with `input` in a fresh sandbox, like [`crate::run`] with an exec'd
    /// runner, and with the same outcome. The caller waits at most `spec.deadline +
    /// spec.teardown` plus a small margin; a server that does not answer by then is killed and
    /// the error says so (the `Server` is then unusable: start another).
    pub fn run(
        &mut self,
        scenario: &str,
        input: &Value,
        spec: &Spec,
    ) -> Result<RunOutcome, SandboxError> {
        let outcome = self.run_once(scenario, input, spec);
        // A run the interrupt ended is no outcome: the process is on its way out (see
        // crate::interrupt), and its caller must not report a dead server meanwhile.
        crate::interrupt::refuse_if_interrupted()?;
        outcome
    }

    fn run_once(
        &mut self,
        scenario: &str,
        input: &Value,
        spec: &Spec,
    ) -> Result<RunOutcome, SandboxError> {
        let start = Instant::now();
        let args =
            RunArgs { scenario: scenario.to_owned(), input: input.clone(), spec: spec.clone() };
        let mut line = serde_json::to_string(&args).unwrap_or_default();
        line.push('\n');
        let stdin = self.stdin.as_mut().ok_or_else(|| dead("it was killed earlier"))?;
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|()| stdin.flush()) {
            self.kill();
            return Err(SandboxError::io("sending a run to the runner server", e));
        }
        let deadline = start + spec.deadline + spec.teardown + ANSWER_MARGIN;
        let answer = match self.read_line(deadline) {
            Ok(Some(a)) => a,
            Ok(None) => {
                self.kill();
                return Err(SandboxError::Deadline {
                    what: "the runner server's answer".into(),
                    after: deadline - start,
                });
            }
            Err(e) => {
                self.kill();
                return Err(e);
            }
        };
        let served: Served = serde_json::from_str(&answer).map_err(|e| {
            self.kill();
            SandboxError::Protocol {
                message: format!("runner server answer is not JSON ({e}): {answer:?}"),
                stderr: String::new(),
            }
        })?;
        let status = served.status.map(std::process::ExitStatus::from_raw);
        interpret(served.stdout, served.stderr, status, start)
    }

    /// The server's pid, for display and /proc. It names the server only until the server is
    /// reaped: a `Server` whose `run` failed has been killed and reaped, and the number may
    /// have been reused since. Never signal it after a failed `run`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads one line before `deadline`; `None` when the deadline passed first.
    fn read_line(&mut self, deadline: Instant) -> Result<Option<String>, SandboxError> {
        let mut buf = [0u8; 16384];
        loop {
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..nl]).into_owned()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !poll_readable(self.out.as_fd(), left)
                .map_err(|e| SandboxError::io("poll on the runner server", e))?
            {
                return Ok(None);
            }
            match rustix::io::read(&self.out, &mut buf) {
                Ok(0) => return Err(dead("it closed its output (it died?)")),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(SandboxError::io("reading the runner server", e)),
            }
        }
    }

    fn kill(&mut self) {
        self.stdin = None;
        self.tracked.kill(&mut self.child);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// Closes the server's stdin (it exits at EOF) and reaps it; kills it if it does not exit
    /// within a bound.
    fn drop(&mut self) {
        if self.stdin.take().is_none() {
            return; // already killed and reaped
        }
        let exited = self
            .tracked
            .pidfd()
            .is_some_and(|fd| poll_readable(fd.as_fd(), EXIT_GRACE).unwrap_or(false));
        if !exited {
            self.tracked.kill(&mut self.child);
        }
        let _ = self.child.wait();
    }
}

fn dead(why: &str) -> SandboxError {
    SandboxError::Protocol {
        message: format!("the runner server is gone: {why}"),
        stderr: String::new(),
    }
}

/// The server's loop: one request line in, one answer line out, until EOF on stdin or a stop
/// signal (which also ends a run in flight: see [`crate::interrupt`]).
pub(crate) fn serve(scenarios: Scenarios<'_>) -> ! {
    let stop = match Stop::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("racelab-sandbox: server setup: {e}");
            racelab_sys::ns::exit_now(crate::modes::EXIT_SETUP)
        }
    };
    let mut pending = Vec::new();
    loop {
        let line = next_request(&mut pending, &stop);
        let served = serve_one(line.trim_end(), scenarios, &stop);
        let mut text = serde_json::to_string(&served).unwrap_or_default();
        text.push('\n');
        // A caller that went away: nothing left to serve.
        if rustix::io::write(std::io::stdout(), text.as_bytes()).is_err() {
            racelab_sys::ns::exit_now(0);
        }
    }
}

/// The next request line from stdin (waiting as long as it takes: the caller closes stdin to
/// end the server); exits the server at EOF or on a stop signal.
fn next_request(pending: &mut Vec<u8>, stop: &Stop) -> String {
    let stdin = std::io::stdin();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            return String::from_utf8_lossy(&line).into_owned();
        }
        if let Some(signo) = stop.pending() {
            racelab_sys::ns::exit_now(crate::stop::exit_code(signo));
        }
        let stop_fd = stop.fd();
        let mut fds = [PollFd::new(&stdin, PollFlags::IN), PollFd::new(&stop_fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => racelab_sys::ns::exit_now(0),
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        match rustix::io::read(&stdin, &mut buf) {
            Ok(0) => racelab_sys::ns::exit_now(0),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => racelab_sys::ns::exit_now(0),
        }
    }
}

/// One run. Without a user namespace (root) and without an injected fault, the server itself
/// is the runner: it clones PID 1 straight into fresh namespaces (one process fewer per run).
/// Otherwise it forks a runner that runs `request` as `__run <request>` would (the fork, not
/// the server, unshares a user namespace), and collects it. A stop signal ends the run and
/// the server.
fn serve_one(request: &str, scenarios: Scenarios<'_>, stop: &Stop) -> Served {
    // A PID 1 that could not be reaped in time by an earlier run (a task frozen in D state
    // delays its namespace's end) is a zombie child of the server by now: collect it. The
    // server has no other children between runs, so nothing else can be taken here.
    while let Ok(Some(_)) =
        rustix::process::waitid(WaitId::All, WaitIdOptions::EXITED | WaitIdOptions::NOHANG)
    {}
    let refused = |error: String| Served {
        stdout: serde_json::to_string(&Report::SetupFailed { error }).unwrap_or_default(),
        stderr: String::new(),
        status: Some(0),
    };
    let args = match serde_json::from_str::<RunArgs>(request) {
        Ok(args) => args,
        Err(e) => return refused(format!("bad runner arguments: {e}")),
    };
    if args.spec.fault == Fault::None && !needs_user_ns(args.spec.user_ns) {
        return serve_direct(&args, scenarios, stop);
    }
    let spec = args.spec;
    let deadline = Instant::now() + spec.deadline + spec.teardown;
    let pipes = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .and_then(|o| Ok((o, rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)));
    let ((out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return refused(format!("pipe: {e}")),
    };
    let server = rustix::process::getpid();
    let forked = racelab_sys::ns::fork_run(|| {
        // The fresh runner: stdin is not the request stream, stdout and stderr go to the
        // server, and it dies with the server (its PID 1 follows it by pdeathsig).
        let redirected = std::fs::File::open("/dev/null").is_ok_and(|null| {
            nix::unistd::dup2_stdin(null).is_ok()
                && nix::unistd::dup2_stdout(&out_w).is_ok()
                && nix::unistd::dup2_stderr(&err_w).is_ok()
        });
        let armed =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        // The server may have died before the prctl: then no signal will ever come.
        if !redirected || armed.is_err() || rustix::process::getppid() != Some(server) {
            return crate::modes::EXIT_SETUP;
        }
        run_mode(request, scenarios)
    });
    drop((out_w, err_w));
    let child = match forked {
        Ok(c) => c,
        Err(e) => return refused(format!("fork of a runner: {e}")),
    };
    let (stdout, stderr, complete) =
        read_to_eof(Some(out_r), Some(err_r), deadline, Some(stop.fd()))
            .unwrap_or_else(|e| (String::new(), e.to_string(), false));
    if let Some(signo) = stop.pending() {
        // Passed on, unless the runner got it too (a signal to the whole group): it ends its
        // replay and cleans up; the server waits for it, bounded, and then ends as well.
        let _ = rustix::process::pidfd_send_signal(&child.pidfd, rustix::process::Signal::TERM);
        // Within the front end's grace for the server (crate::interrupt): the runner's own
        // cleanup, a margin, and the wait for a runner that had to be SIGKILLed.
        if !poll_readable(child.pidfd.as_fd(), RUNNER_ABORT_GRACE + STOP_MARGIN).unwrap_or(false) {
            let _ = rustix::process::pidfd_send_signal(&child.pidfd, rustix::process::Signal::KILL);
            let _ = poll_readable(child.pidfd.as_fd(), STOP_MARGIN);
        }
        let _ = rustix::process::waitid(
            WaitId::PidFd(child.pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        );
        racelab_sys::ns::exit_now(crate::stop::exit_code(signo));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let done = complete && poll_readable(child.pidfd.as_fd(), left).unwrap_or(false);
    if !done {
        let _ = rustix::process::pidfd_send_signal(&child.pidfd, rustix::process::Signal::KILL);
    }
    // Bounded: it exited, or it was just SIGKILLed (a runner is never frozen).
    let status = rustix::process::waitid(WaitId::PidFd(child.pidfd.as_fd()), WaitIdOptions::EXITED)
        .ok()
        .flatten()
        .map(|st| match (st.exit_status(), st.terminating_signal()) {
            (Some(code), _) => (code & 0xff) << 8,
            (None, Some(sig)) => sig & 0x7f,
            (None, None) => 0,
        });
    Served { stdout, stderr, status: status.filter(|_| done) }
}

/// One run with the server as the runner (see [`serve_one`]).
fn serve_direct(args: &RunArgs, scenarios: Scenarios<'_>, stop: &Stop) -> Served {
    let mut text = Vec::new();
    let report = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok((read, write)) => {
            let capture = Capture { write, read, text: &mut text };
            setup_and_run(args, scenarios, Some(capture), stop)
                .unwrap_or_else(|error| Report::SetupFailed { error })
        }
        Err(e) => Report::SetupFailed { error: format!("pipe: {e}") },
    };
    if let Report::SetupFailed { error } = &report {
        text.extend_from_slice(format!("racelab-sandbox: setup failed: {error}\n").as_bytes());
    }
    Served {
        stdout: serde_json::to_string(&report).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&text).into_owned(),
        status: Some(0),
    }
}
