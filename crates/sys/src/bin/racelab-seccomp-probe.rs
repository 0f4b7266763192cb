//! A tiny target program for racelab-sys's seccomp tests (tests/seccomp.rs): it makes exactly
//! the syscalls a test names and reports each result on stdout, one line at a time.
//!
//! ```text
//! racelab-seccomp-probe kill [--usr1=restart|norestart] PID:SIG...   (PID may be "self")
//! racelab-seccomp-probe block                  exit 0 at end of stdin
//! racelab-seccomp-probe spawn std|posix_spawn|fork|thread
//! racelab-seccomp-probe fork-child             fork B, then "kill" / "reap" B on stdin lines
//! racelab-seccomp-probe getppid N              N raw getppid calls, prints "ns <per call>"
//! ```
//! Not part of the lab: tests only.

use std::ffi::CString;
use std::io::{BufRead, Write};

use nix::sys::signal::{SaFlags, Signal};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

extern "C" fn on_usr1(_: libc::c_int) {
    let msg = b"handler\n";
    // SAFETY: write(2) is async-signal-safe; `msg` is a static buffer.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
}

/// `kill PID:SIG...`: prints `tid N`, then `kill PID SIG -> RET ERRNO` after each call.
fn kill(args: &[String]) -> i32 {
    let mut specs = args;
    if let Some(opt) = specs.first().and_then(|a| a.strip_prefix("--usr1=")) {
        let flags = if opt == "restart" { SaFlags::SA_RESTART } else { SaFlags::empty() };
        racelab_sys::sigaction::install_handler(Signal::SIGUSR1, on_usr1, flags)
            .expect("install the SIGUSR1 handler");
        specs = &specs[1..];
    }
    say(&format!("tid {}", rustix::thread::gettid().as_raw_nonzero()));
    for spec in specs {
        let (pid, sig) = spec.split_once(':').expect("PID:SIG");
        let pid: i32 = if pid == "self" { std::process::id() as i32 } else { pid.parse().unwrap() };
        let sig: i32 = sig.parse().unwrap();
        // SAFETY: kill(2) takes plain integers.
        let ret = unsafe { libc::kill(pid, sig) };
        let err = if ret < 0 { errno() } else { 0 };
        say(&format!("kill {pid} {sig} -> {ret} {err}"));
    }
    0
}

fn wait_pid(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid(2) on our own child, writing into a local int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

/// `spawn HOW`: starts `/bin/true` (or a thread) the way HOW says, waits, prints the outcome.
fn spawn(how: &str) -> i32 {
    let outcome = match how {
        "std" => match std::process::Command::new("/bin/true").status() {
            Ok(s) => format!("ok {}", s.code().unwrap_or(-1)),
            Err(e) => format!("err {}", e.raw_os_error().unwrap_or(0)),
        },
        "posix_spawn" => {
            let prog = CString::new("/bin/true").unwrap();
            let argv = [prog.as_ptr(), std::ptr::null()];
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            let mut pid = 0;
            // SAFETY: NUL-terminated argv/envp arrays of valid C strings, alive for the call;
            // no file actions or attributes.
            let r = unsafe {
                libc::posix_spawn(
                    &mut pid,
                    prog.as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    argv.as_ptr().cast(),
                    envp.as_ptr().cast(),
                )
            };
            if r == 0 { format!("ok {}", wait_pid(pid)) } else { format!("err {r}") }
        }
        "fork" => {
            // SAFETY: the child only calls _exit (async-signal-safe).
            let pid = unsafe { libc::fork() };
            match pid {
                // SAFETY: _exit is async-signal-safe and never returns.
                0 => unsafe { libc::_exit(0) },
                p if p > 0 => format!("ok {}", wait_pid(p)),
                _ => format!("err {}", errno()),
            }
        }
        "thread" => match std::thread::Builder::new().spawn(|| 7).map(|t| t.join()) {
            Ok(Ok(v)) => format!("ok {v}"),
            Ok(Err(_)) => "err panic".to_string(),
            Err(e) => format!("err {}", e.raw_os_error().unwrap_or(0)),
        },
        other => panic!("unknown spawn kind {other}"),
    };
    say(&format!("spawn {how} {outcome}"));
    0
}

/// `fork-child`: forks B (which pauses until killed), prints `child PID`, then obeys stdin:
/// `kill` sends B SIGKILL, `reap` waits for it; each prints `killed` / `reaped`.
fn fork_child() -> i32 {
    // SAFETY: this process is single-threaded here (main thread only); the child only calls
    // pause(2) in a loop until it is killed.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: pause(2) has no arguments.
            unsafe { libc::pause() };
        }
    }
    assert!(pid > 0, "fork failed: {}", errno());
    say(&format!("child {pid}"));
    for line in std::io::stdin().lock().lines() {
        match line.unwrap().as_str() {
            "kill" => {
                // SAFETY: kill(2) of our own unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                say("killed");
            }
            "reap" => {
                wait_pid(pid);
                say("reaped");
            }
            other => panic!("unknown command {other}"),
        }
    }
    0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("kill") => kill(&args[1..]),
        Some("block") => {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            0
        }
        Some("spawn") => spawn(&args[1]),
        Some("fork-child") => fork_child(),
        Some("getppid") => {
            let n: u32 = args[1].parse().unwrap();
            let start = std::time::Instant::now();
            for _ in 0..n {
                // SAFETY: getppid(2) has no arguments.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            say(&format!("ns {}", start.elapsed().as_nanos() / u128::from(n)));
            0
        }
        _ => {
            eprintln!("usage: see the source of racelab-seccomp-probe");
            2
        }
    };
    std::process::exit(code);
}
