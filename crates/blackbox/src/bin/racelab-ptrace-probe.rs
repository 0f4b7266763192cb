//! A tiny target program for racelab-blackbox's ptrace tests (tests/ptrace.rs): each mode has
//! a window with no syscall inside, or takes signals and reports them.
//!
//! ```text
//! racelab-ptrace-probe store        a thread stores FLAG between two syscalls; main reads it
//!                                   after its geteuid and prints "main saw true|false"
//! racelab-ptrace-probe fork-early   GNU timeout's pattern: a SIGTERM handler that exits 143
//!                                   when MONITORED is still 0, then MONITORED = fork()
//! racelab-ptrace-probe signals      prints "ready", then "got N" for SIGUSR1, SIGUSR2, SIGCONT
//! racelab-ptrace-probe syscalls N   N getppid calls, prints "ns <per call>"
//! ```
//! Not part of the lab: tests only.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, Signal};

/// Stored by the `store` thread between its getppid and its getpid.
pub static FLAG: AtomicBool = AtomicBool::new(false);
/// The forked child's pid, stored after `fork` returns (0 until then).
pub static MONITORED: AtomicI32 = AtomicI32::new(0);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The stores under test: between two syscalls, nothing else.
#[inline(never)]
fn store_thread() {
    let _ = rustix::process::getppid();
    FLAG.store(true, Ordering::SeqCst);
    let _ = rustix::process::getpid();
}

fn store() -> i32 {
    let t = std::thread::spawn(store_thread);
    let _ = rustix::process::geteuid();
    let seen = FLAG.load(Ordering::SeqCst);
    say(&format!("main saw {seen}"));
    let _ = t.join();
    say("done");
    0
}

/// Raw write to stdout: async-signal-safe (std's stdout handle was set up by `main`).
fn raw_say(bytes: &[u8]) {
    let _ = rustix::io::write(std::io::stdout().as_fd(), bytes);
}

extern "C" fn on_term(_: std::os::raw::c_int) {
    // timeout.c cleanup(): with no child yet, exit at once; the child is never told.
    if MONITORED.load(Ordering::SeqCst) == 0 {
        raw_say(b"handler: monitored 0\n");
    } else {
        raw_say(b"handler: monitored set\n");
    }
    racelab_sys::ns::exit_now(143);
}

fn fork_early() -> i32 {
    racelab_sys::sigaction::install_handler(Signal::SIGTERM, on_term, SaFlags::SA_RESTART)
        .expect("install the SIGTERM handler");
    let child = racelab_sys::ns::fork_run(|| {
        loop {
            nix::unistd::pause();
        }
    })
    .expect("fork");
    MONITORED.store(child.pid, Ordering::SeqCst);
    say(&format!("forked {}", child.pid));
    let mut fds = [rustix::event::PollFd::new(&child.pidfd, rustix::event::PollFlags::IN)];
    let _ = rustix::event::poll(&mut fds, None);
    0
}

extern "C" fn on_signal(sig: std::os::raw::c_int) {
    let line: &[u8] = match sig {
        10 => b"got 10\n",
        12 => b"got 12\n",
        18 => b"got 18\n",
        _ => b"got ?\n",
    };
    raw_say(line);
}

fn signals() -> i32 {
    for s in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGCONT] {
        racelab_sys::sigaction::install_handler(s, on_signal, SaFlags::SA_RESTART)
            .expect("install a handler");
    }
    say("ready");
    loop {
        nix::unistd::pause();
    }
}

fn main() {
    let _ = std::io::stdout().as_fd();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let code = match mode.as_str() {
        "store" => store(),
        "fork-early" => fork_early(),
        "signals" => signals(),
        "syscalls" => {
            let n: u32 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
            let start = std::time::Instant::now();
            for _ in 0..n {
                let _ = rustix::process::getppid();
            }
            say(&format!("ns {}", start.elapsed().as_nanos() / u128::from(n.max(1))));
            0
        }
        _ => {
            eprintln!("usage: see the source of racelab-ptrace-probe");
            2
        }
    };
    std::process::exit(code);
}
