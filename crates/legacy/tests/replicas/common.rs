//! Test helpers: spawn the wrapper, read its output lines with deadlines, wait with a pidfd
//! deadline, and never leave a process behind (the guard kills and reaps on drop).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn wrapper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_racelab-legacy-wrapper"))
}

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_racelab-legacy-wrapper")
}

/// `OPTIONS -- <this wrapper> workload --pdeathsig WORKLOAD...`: a replica's command line over
/// the lab's workload program, which dies with the replica (a test that kills the replica
/// leaves nothing behind).
pub fn over_workload<'a>(options: &[&'a str], workload: &[&'a str]) -> Vec<&'a str> {
    let mut v = options.to_vec();
    v.extend(["--", exe(), "workload", "--pdeathsig"]);
    v.extend(workload);
    v
}

/// Like [`over_workload`], but the workload does not tie its life to the replica's: for a test
/// of the design's own parent-death handling, or of an orphan (the test ends it itself).
pub fn over_orphanable_workload<'a>(options: &[&'a str], workload: &[&'a str]) -> Vec<&'a str> {
    let mut v = options.to_vec();
    v.extend(["--", exe(), "workload"]);
    v.extend(workload);
    v
}

/// A running wrapper process with line readers on stdout and stderr.
pub struct Running {
    child: Child,
    pub stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    pub seen_stdout: Vec<String>,
    pub seen_stderr: Vec<String>,
    reaped: Option<ExitStatus>,
}

fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    /// Starts `wrapper MODE args...` with piped stdio.
    pub fn start(mode: &str, args: &[&str]) -> Running {
        Running::start_with(mode, args, &[])
    }

    /// Like [`Running::start`], with extra environment variables. `RACELAB_SANDBOX` is always
    /// removed: these tests run on the host, where the kill guard must be on.
    pub fn start_with(mode: &str, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = wrapper();
        cmd.env_remove("RACELAB_SANDBOX");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .arg(mode)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wrapper");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        Running {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            seen_stdout: Vec::new(),
            seen_stderr: Vec::new(),
            reaped: None,
        }
    }

    /// Sends one command line to the wrapper's stdin (which the workload inherits).
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the wrapper's stdin");
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (with the deadline) for a stdout line starting with `prefix`; returns it.
    pub fn expect_stdout(&mut self, prefix: &str) -> String {
        expect_line(&self.stdout, &mut self.seen_stdout, prefix, "stdout")
    }

    /// Waits (with the deadline) for a stderr line starting with `prefix`; returns it.
    pub fn expect_stderr(&mut self, prefix: &str) -> String {
        expect_line(&self.stderr, &mut self.seen_stderr, prefix, "stderr")
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("signal our own child");
    }

    /// Waits for exit (see [`Running::wait_status`]), then collects the rest of the output
    /// until both pipes close (every writer, workloads included, is gone).
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.wait_status();
        let end = Instant::now() + DEADLINE;
        for (rx, seen) in
            [(&self.stdout, &mut self.seen_stdout), (&self.stderr, &mut self.seen_stderr)]
        {
            while let Ok(line) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                seen.push(line);
            }
        }
        status
    }

    /// Waits for exit with a pidfd and the deadline; panics with the output seen when late.
    /// Does not wait for the pipes: a surviving orphan may hold them.
    pub fn wait_status(&mut self) -> ExitStatus {
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::PidfdFlags::empty(),
        )
        .expect("pidfd_open");
        let timeout = rustix::time::Timespec { tv_sec: DEADLINE.as_secs() as i64, tv_nsec: 0 };
        let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
        let ready = rustix::event::poll(&mut fds, Some(&timeout)).expect("poll pidfd");
        assert!(
            ready == 1,
            "wrapper {} did not exit within {DEADLINE:?}; stdout {:?}, stderr {:?}",
            self.pid(),
            self.seen_stdout,
            self.seen_stderr
        );
        let status = self.child.wait().expect("reap wrapper");
        self.reaped = Some(status);
        status
    }

    pub fn stderr_text(&self) -> String {
        self.seen_stderr.join("\n")
    }
}

fn expect_line(rx: &Receiver<String>, seen: &mut Vec<String>, prefix: &str, name: &str) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
            Err(e) => panic!("no {name} line {prefix:?} within {DEADLINE:?} ({e}); saw {seen:?}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `/proc/<pid>/task/<tid>/wchan` of some thread of `pid` starts with `prefix`
/// (the thread is blocked in that kernel function), or panics at the deadline. This reads
/// ground truth; it is a condition poll, not a sleep standing in for one.
pub fn wait_for_wchan(pid: i32, prefix: &str) {
    let end = Instant::now() + DEADLINE;
    loop {
        if thread_wchans(pid).iter().any(|w| w.starts_with(prefix)) {
            return;
        }
        assert!(
            Instant::now() < end,
            "pid {pid} never blocked in {prefix}: {:?}",
            thread_wchans(pid)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `pid` has at least `n` threads (or panics at the deadline).
pub fn wait_for_threads(pid: i32, n: usize) {
    let end = Instant::now() + DEADLINE;
    while task_count(pid) < n {
        assert!(Instant::now() < end, "pid {pid} never had {n} threads");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn task_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

fn thread_wchans(pid: i32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("wchan")).ok())
        .collect()
}
