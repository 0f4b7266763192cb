//! Whole-process time: spawn + wait of `/bin/true` alone, of `tini -s -- /bin/true` (the
//! distribution's dynamic `tini` and its `tini-static`) and of `supervise -- /bin/true` (a
//! dynamic and a static build), in the same run (std::process::Command, wall time per
//! iteration).
//!
//! On a small VM, starting a process is mostly page faults (a file-backed fault costs about
//! 20 µs here, an anonymous one about 2.5 µs), so a static binary, which maps no shared
//! libraries and runs no dynamic loader, starts faster. Both `supervise` builds are the
//! `racelab-supervise` package's binary (it never carries hook code), built beforehand:
//!
//! * dynamic: `cargo build --release -p racelab-supervise` (or any workspace release build),
//!   looked up in `$RACELAB_SUPERVISE`, else `<target>/release/supervise`;
//! * static (the recommended deployment): `RUSTFLAGS="-C target-feature=+crt-static"
//!   cargo build --profile dist --target <host triple> -p racelab-supervise` (the `--target`
//!   keeps the flag away from proc-macros; `dist` is release with fat LTO, one codegen unit and
//!   `opt-level = "s"`), looked up in `$RACELAB_SUPERVISE_STATIC`, else
//!   `<target>/<host triple>/dist/supervise`.
//!
//! A missing binary or tini is a named skip (a failure under `RACELAB_STRICT=1`).
//!
//! What each program asks of the kernel, counted with `strace -f -c PROGRAM -- /bin/true` and
//! split by process with `strace -f` (static builds, one run; /bin/true's own 29 calls after
//! its execve are in every total):
//!
//! * `tini-static -s`: 60. Parent 25: glibc's static start-up (execve, brk x5, arch_prctl,
//!   set_tid_address, set_robust_list, rseq, prlimit64, readlink /proc/self/exe, getrandom,
//!   mprotect), rt_sigprocmask, rt_sigaction x2 (SIGTTIN, SIGTTOU ignored), prctl x2
//!   (subreaper), getpid, clone (a fork), rt_sigtimedwait, wait4 x2, exit_group. Child before
//!   exec 8: set_robust_list, setpgid, getpgrp, ioctl(TIOCSPGRP), rt_sigprocmask,
//!   rt_sigaction x2, execve.
//! * `supervise` (dist profile, since #24): 130. Parent 36: the same glibc start-up (14 calls),
//!   rt_sigprocmask (block the forwarded signals: first thing), poll of fds 0-2 and
//!   rt_sigaction(SIGPIPE, SIG_IGN) (what Rust's runtime start-up did, done by hand: the binary
//!   is `#![no_main]`), rt_sigaction(SIGCHLD, SIG_DFL), rt_sigprocmask, signalfd4, getpid x2,
//!   mmap + mprotect (the vfork child's stack), rt_sigprocmask (all blocked across the clone),
//!   clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD), rt_sigprocmask, munmap, ppoll (pidfd and
//!   signalfd), waitid(WNOWAIT), kill(-pgid, SIGKILL) (the sweep of the child's group, which
//!   its descendants may still be in), waitid, close x2, rt_sigprocmask, exit_group. Child
//!   before exec 67: setpgid, prctl(PR_SET_PDEATHSIG), getppid (the check after it),
//!   rt_sigaction x62 (every signal but SIGKILL and SIGSTOP to SIG_DFL: no handler of the
//!   parent may run in the vfork child, no inherited SIG_IGN reaches the program),
//!   rt_sigprocmask (empty mask), execve.
//! * before #24 `supervise` (release profile) made 159: its parent also ran Rust's runtime
//!   start-up (poll, SIGPIPE, /proc/self/maps read through pthread_getattr_np, sched_getaffinity,
//!   an alternate signal stack: sigaltstack x2, mmap, mprotect, SIGSEGV and SIGBUS handlers),
//!   and its child reset the 10 forwarded signals twice and tried SIGKILL and SIGSTOP.
//!
//! The count of calls is not what costs: a start-up pays for page faults (`perf stat -r 200
//! --no-inherit -e page-faults PROGRAM -- /bin/true`, the parent alone, which varies by a few
//! with how the binary's file sits in the page cache: tini-static 33-34, supervise 48-54, 55-65
//! before #24), most of them code pages of the binary, the heap, and for supervise the
//! static-pie self-relocation of its data (one fault per page of .data.rel.ro; tini-static is
//! not position-independent).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Bencher;
use racelab_benches::harness::{self, Notes, profile_dir, target_dir, tune};

/// The triple this bench was built for (set by build.rs), where the static build lives.
const TRIPLE: &str = env!("RACELAB_TARGET_TRIPLE");

fn measure(b: &mut Bencher<'_>, program: &str, args: &[&str]) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let mut cmd = Command::new(program);
            cmd.args(args).stdin(Stdio::null());
            let t0 = Instant::now();
            let status = cmd.status().unwrap_or_else(|e| panic!("spawn {program}: {e}"));
            total += t0.elapsed();
            assert!(status.success(), "{program} {args:?} failed: {status}");
        }
        total
    });
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// `$var` if set, else `fallback`, if the file exists.
fn binary(var: &str, fallback: Option<PathBuf>) -> Option<PathBuf> {
    std::env::var_os(var).map(PathBuf::from).or(fallback).filter(|p| p.is_file())
}

/// One peer: a bench id, the program if found, its arguments before `/bin/true`, and what to
/// do when it is missing.
struct Peer {
    id: &'static str,
    program: Option<PathBuf>,
    args: &'static [&'static str],
    missing: String,
}

fn main() {
    let notes = Notes::start("whole_process");
    notes.note(
        "whole_process: wall time of Command::status() (spawn, run, wait) per iteration, one \
         iteration per sample",
    );
    let dynamic = binary("RACELAB_SUPERVISE", profile_dir().map(|d| d.join("supervise")));
    let static_ = binary(
        "RACELAB_SUPERVISE_STATIC",
        target_dir().map(|t| t.join(TRIPLE).join("dist").join("supervise")),
    );
    let peers = [
        Peer {
            id: "tini_s_true",
            program: find_on_path("tini"),
            args: &["-s", "--"],
            missing: "tini is not installed (apt-get install tini)".into(),
        },
        Peer {
            id: "tini_static_s_true",
            program: find_on_path("tini-static"),
            args: &["-s", "--"],
            missing: "tini-static is not installed (Debian's tini package ships it)".into(),
        },
        Peer {
            id: "supervise_true",
            program: dynamic,
            args: &["--"],
            missing: "no dynamic supervise binary: run `cargo build --release -p \
                      racelab-supervise` first (or set RACELAB_SUPERVISE)"
                .into(),
        },
        Peer {
            id: "supervise_static_true",
            program: static_,
            args: &["--"],
            missing: format!(
                "no static supervise binary: run `RUSTFLAGS=\"-C target-feature=+crt-static\" \
                 cargo build --profile dist --target {TRIPLE} -p racelab-supervise` first (or \
                 set RACELAB_SUPERVISE_STATIC)"
            ),
        },
    ];
    let mut c = harness::criterion();
    let mut g = c.benchmark_group("whole_process");
    tune(&mut g, 150, Duration::from_micros(1200));
    g.bench_function("floor_bin_true", |b| measure(b, "/bin/true", &[]));
    for peer in &peers {
        let Some(program) = &peer.program else {
            notes.skip(&format!("whole_process/{}", peer.id), &peer.missing);
            continue;
        };
        notes.note(&format!("whole_process/{}: {}", peer.id, program.display()));
        let program = program.to_string_lossy().into_owned();
        let mut args = peer.args.to_vec();
        args.push("/bin/true");
        g.bench_function(peer.id, |b| measure(b, &program, &args));
    }
    g.finish();
    c.final_summary();
}
