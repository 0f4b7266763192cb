//! Helpers shared by racelab-sys's integration tests: the probe program, a launcher that hands
//! back the seccomp listener over a Unix socket, and line/fd waits that all have a deadline.
#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use racelab_sys::fdpass::recv_fd;
use racelab_sys::seccomp::{Filter, Listener, ListenerEvent, Notification, ParkedSignals};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};

/// The test-only target program (src/bin/racelab-seccomp-probe.rs).
pub const PROBE: &str = env!("CARGO_BIN_EXE_racelab-seccomp-probe");
/// Upper bound of every wait that must succeed (never reached on a healthy machine).
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test watches for something that must NOT happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// Waits until `fd` reports one of `events` (or `POLLHUP`/`POLLERR`), at most `timeout`.
/// Returns the reported flags, empty on timeout.
pub fn wait_fd(fd: impl AsFd, events: PollFlags, timeout: Duration) -> PollFlags {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec::try_from(left).unwrap();
        let mut fds = [PollFd::new(&fd, events)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return PollFlags::empty(),
            Ok(_) => return fds[0].revents(),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Whether the process behind `pidfd` has exited (pidfd readable) within `timeout`.
pub fn exited_within(pidfd: &OwnedFd, timeout: Duration) -> bool {
    wait_fd(pidfd, PollFlags::IN, timeout).contains(PollFlags::IN)
}

/// Lines of a child's stdout, each read with a deadline (poll, then read).
pub struct Lines {
    fd: ChildStdout,
    buf: Vec<u8>,
}

impl Lines {
    pub fn new(fd: ChildStdout) -> Self {
        Lines { fd, buf: Vec::new() }
    }

    /// The stdout pipe, to poll it together with other fds (check [`Lines::next_within`] with
    /// a zero timeout first: a line may already be buffered).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next line, or `None` at end of stream or when `timeout` passes first.
    pub fn next_within(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return Some(String::from_utf8_lossy(&line[..nl]).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if wait_fd(&self.fd, PollFlags::IN, left).is_empty() {
                return None;
            }
            let mut chunk = [0u8; 512];
            match rustix::io::read(&self.fd, &mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next line, which must come within [`DEADLINE`] and start with `prefix`.
    pub fn expect(&mut self, prefix: &str) -> String {
        match self.next_within(DEADLINE) {
            Some(l) if l.starts_with(prefix) => l,
            other => panic!("expected a line starting with {prefix:?}, got {other:?}"),
        }
    }

    /// Asserts that no line arrives for [`QUIET`].
    pub fn expect_silence(&mut self, why: &str) {
        if let Some(l) = self.next_within(QUIET) {
            panic!("{why}: unexpected line {l:?}");
        }
    }
}

/// A probe started under a seccomp filter, with the listener its launcher sent back.
pub struct Target {
    pub child: Child,
    pub pid: i32,
    pub pidfd: OwnedFd,
    listener: Option<Listener>,
    pub out: Lines,
    pub stdin: Option<ChildStdin>,
}

/// Starts the probe with `args` under `filter`: the forked child installs the filter
/// (`notify_in_child`, between fork and exec of this multi-threaded test process) and sends
/// the listener over a socketpair, which is where this process receives it.
pub fn launch(filter: &Filter, signals: ParkedSignals, args: &[&str]) -> Target {
    launch_with(filter, signals, args, |_| {})
}

/// [`launch`] with the probe's `Command` adjusted by `configure` first (e.g. `uid`/`gid`:
/// std switches credentials before it runs the pre-exec hook that installs the filter).
pub fn launch_with(
    filter: &Filter,
    signals: ParkedSignals,
    args: &[&str],
    configure: impl FnOnce(&mut Command),
) -> Target {
    let program = filter.compile().expect("filter compiles");
    let (lab_end, launcher_end) =
        socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap();
    let mut cmd = Command::new(PROBE);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
    configure(&mut cmd);
    racelab_sys::seccomp::notify_in_child(&mut cmd, program, signals, launcher_end);
    let mut child = cmd.spawn().expect("spawn the probe under a seccomp filter");
    drop(cmd); // our copy of the launcher's socket end: EOF if the launcher dies unsent
    let ready = wait_fd(&lab_end, PollFlags::IN, DEADLINE);
    assert!(!ready.is_empty(), "the launcher sent no listener within {DEADLINE:?}");
    let listener = Listener::from_fd(recv_fd(&lab_end).expect("the listener fd"));
    let pid = child.id() as i32;
    // Our child, not yet reaped: the pid still names it.
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let stdin = child.stdin.take();
    Target { child, pid, pidfd, listener: Some(listener), out, stdin }
}

impl Target {
    /// The listener the launcher sent.
    pub fn listener(&self) -> &Listener {
        self.listener.as_ref().expect("the listener was closed")
    }

    /// Closes the listener, as a lab that exits would.
    pub fn close_listener(&mut self) {
        self.listener = None;
    }

    /// The next notification, which must come within [`DEADLINE`].
    pub fn next_notification(&self) -> Notification {
        match self.listener().wait(DEADLINE).unwrap() {
            ListenerEvent::Pending => self.listener().recv().expect("recv"),
            other => panic!("expected a notification, got {other:?}"),
        }
    }

    /// Asserts that no notification becomes pending for `timeout`.
    pub fn expect_no_notification(&self, timeout: Duration, why: &str) {
        let ev = self.listener().wait(timeout).unwrap();
        assert_ne!(ev, ListenerEvent::Pending, "{why}");
    }

    /// Waits for the probe's exit and returns its exit code.
    pub fn exit_code(&mut self) -> i32 {
        assert!(exited_within(&self.pidfd, DEADLINE), "the probe did not exit");
        self.child.wait().unwrap().code().expect("exited normally")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // A failed test must not leave a parked probe behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process state letter from `/proc/<tid>/stat` (`R`, `S`, `D`, `Z`...).
pub fn proc_state(tid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.trim_start().chars().next().unwrap()
}

/// A mask line of `/proc/<pid>/status` (`SigPnd:`, `ShdPnd:`, `SigBlk:`...) as a number.
pub fn status_mask(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
}

/// Whether this machine lets us install a seccomp filter with a listener; false prints why
/// and the test skips (a failure under `RACELAB_STRICT=1`).
pub fn seccomp_or_skip() -> bool {
    let (_lab, launcher) =
        socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap();
    let mut cmd = Command::new("/bin/true");
    let program = Filter::new().compile().unwrap();
    racelab_sys::seccomp::notify_in_child(
        &mut cmd,
        program,
        ParkedSignals::DeferUntilAnswered,
        launcher,
    );
    let why = match cmd.spawn().and_then(|mut c| c.wait()) {
        Ok(_) => return true,
        Err(e) => e.to_string(),
    };
    let msg = format!("SKIP: needs seccomp user notification (Linux 5.19+): {why}");
    if std::env::var_os("RACELAB_STRICT").is_some_and(|v| v == "1") {
        panic!("{msg} (RACELAB_STRICT=1 turns skips into failures)");
    }
    eprintln!("{msg}");
    false
}
