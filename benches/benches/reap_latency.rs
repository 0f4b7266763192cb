//! Reap latency: the child's last instruction (a CLOCK_MONOTONIC store into shared memory right
//! before `_exit`) to the moment each strategy knows the exit status. criterion reports the sum
//! of the per-iteration latencies (`iter_custom`), one iteration per sample, so its statistics
//! are about the latency, not the loop around it.

use std::io;
use std::time::Duration;

use criterion::Bencher;
use racelab_benches::harness::{self, Notes, tune};
use racelab_benches::procs::Helper;
use racelab_benches::reap::{self, ReapEnv, SigchldFd};
use racelab_supervisor::{Config, Containment, Signal};
use racelab_sys::bench::{SelfPipe, SharedStamp};

/// How long the child sleeps before stamping: the waiting side is blocked by then.
const CHILD_DELAY: Duration = Duration::from_millis(1);

fn measure(b: &mut Bencher<'_>, mut one: impl FnMut() -> io::Result<Duration>) {
    b.iter_custom(|iters| {
        (0..iters).map(|_| one().unwrap_or_else(|e| panic!("reap iteration failed: {e}"))).sum()
    });
}

fn main() {
    let notes = Notes::start("reap_latency");
    notes.note(
        "reap_latency: latency = child's CLOCK_MONOTONIC store right before _exit -> strategy \
         has the status; every strategy spawns the same exec'd helper (racelab-bench-child), which \
         sleeps 1 ms first so the waiter is already blocked",
    );
    notes.note(
        "reap_latency/reference_*: until racelab_supervisor::run() RETURNS (status peeked, group \
         swept, child reaped, report built): an upper bound on when its loop has the status",
    );
    let mut c = harness::criterion();
    let helper = Helper::new(env!("CARGO_BIN_EXE_racelab-bench-child"));
    let env = ReapEnv::new(helper, CHILD_DELAY).expect("stamp memfd");
    let per_iter = Duration::from_micros(2500);

    let mut g = c.benchmark_group("reap_latency");
    tune(&mut g, 200, per_iter);
    g.bench_function("floor_blocking_waitid", |b| measure(b, || reap::blocking_waitid(&env)));
    g.bench_function("pidfd_poll_waitid", |b| measure(b, || reap::pidfd_poll(&env)));
    g.bench_function("signalfd_waitpid", |b| {
        let sfd = SigchldFd::new().expect("signalfd");
        measure(b, || reap::signalfd(&env, &sfd));
    });
    g.bench_function("sigchld_self_pipe", |b| {
        let pipe = SelfPipe::install(Signal::SIGCHLD).expect("SIGCHLD handler");
        measure(b, || reap::sigchld_self_pipe(&env, &pipe));
    });
    let reference = Config::default();
    g.bench_function("reference_run_returns", |b| measure(b, || reap::reference(&env, &reference)));
    let none = Config { containment: Containment::None, ..Config::default() };
    g.bench_function("reference_run_returns_containment_none", |b| {
        measure(b, || reap::reference(&env, &none))
    });
    let fork_stamp = SharedStamp::anonymous().expect("shared page");
    g.bench_function("fork_child_blocking_waitid", |b| {
        measure(b, || reap::fork_blocking_waitid(&fork_stamp, CHILD_DELAY))
    });
    tune(&mut g, 100, per_iter + Duration::from_millis(1));
    g.bench_function("sleep_poll_1ms", |b| {
        measure(b, || reap::sleep_poll(&env, Duration::from_millis(1)))
    });
    tune(&mut g, 40, per_iter + Duration::from_millis(10));
    g.bench_function("sleep_poll_10ms", |b| {
        measure(b, || reap::sleep_poll(&env, Duration::from_millis(10)))
    });
    tune(&mut g, 10, per_iter + Duration::from_millis(100));
    g.bench_function("sleep_poll_100ms", |b| {
        measure(b, || reap::sleep_poll(&env, Duration::from_millis(100)))
    });
    legacy(&mut g, &env, &notes, per_iter);
    g.finish();
    c.final_summary();
}

/// The legacy designs, through `racelab-legacy-wrapper` (built beforehand with
/// `cargo build --release -p racelab-legacy --bin racelab-legacy-wrapper`), if present.
fn legacy(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    env: &ReapEnv,
    notes: &Notes,
    per_iter: Duration,
) {
    let wrapper = std::env::var_os("RACELAB_LEGACY_WRAPPER")
        .map(std::path::PathBuf::from)
        .or_else(|| harness::profile_dir().map(|d| d.join("racelab-legacy-wrapper")))
        .filter(|p| p.is_file());
    let Some(wrapper) = wrapper else {
        notes.skip(
            "reap_latency/legacy_*",
            "no racelab-legacy-wrapper binary: run `cargo build --release -p racelab-legacy \
             --bin racelab-legacy-wrapper` first (or set RACELAB_LEGACY_WRAPPER)",
        );
        return;
    };
    notes.note(
        "reap_latency/legacy_*: run through racelab-legacy-wrapper MODE -- helper; latency until \
         the wrapper process is reaped by the bench (includes one extra exit + reap, about one \
         blocking-waitid floor)",
    );
    // (name, wrapper mode, the design's polling period, samples)
    let designs = [
        ("legacy_global_atomics", "global-atomics", Duration::ZERO, 100),
        ("legacy_polling_fix", "polling-fix", Duration::from_millis(10), 40),
        ("legacy_unbounded_poll", "unbounded-poll", Duration::from_millis(100), 10),
    ];
    for (name, mode, period, samples) in designs {
        tune(g, samples, per_iter + Duration::from_millis(2) + period);
        g.bench_function(name, |b| {
            measure(b, || reap::legacy_wrapper(env, &wrapper, mode, period))
        });
    }
}
