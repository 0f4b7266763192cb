//! Kill latency: the stop request to every process of the tree reaped, for one process and for
//! trees of 10, 100 and 1000, built and ready before the clock starts. Raw floors and the
//! reference supervisor's stop in the same run; criterion reports the per-iteration latencies
//! (`iter_custom`), one iteration per sample.

use std::io;
use std::time::Duration;

use criterion::Bencher;
use racelab_benches::harness::{self, Notes, tune};
use racelab_benches::kill;
use racelab_benches::procs::Helper;
use racelab_supervisor::{Containment, Signal};

fn measure(b: &mut Bencher<'_>, mut one: impl FnMut() -> io::Result<Duration>) {
    b.iter_custom(|iters| {
        (0..iters).map(|_| one().unwrap_or_else(|e| panic!("kill iteration failed: {e}"))).sum()
    });
}

/// (tree size, samples, wall time of one iteration including building the tree)
const SIZES: [(usize, usize, Duration); 4] = [
    (1, 150, Duration::from_micros(1500)),
    (10, 100, Duration::from_micros(2500)),
    (100, 40, Duration::from_millis(12)),
    (1000, 10, Duration::from_millis(150)),
];

fn main() {
    // Before any thread exists: the reference's stop request is a process-directed SIGTERM that
    // must wait in run()'s signalfd, not kill the bench (threads inherit the mask).
    racelab_supervisor::block_signals(&[Signal::SIGTERM]).expect("block SIGTERM");
    // Orphans of a killed tree come to this process, so "every process reaped" is observable.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).expect("subreaper");

    let notes = Notes::start("kill_latency");
    notes.note(
        "kill_latency: tree = racelab-bench-child + N-1 forked children blocked in pause(2), \
         all ready before t0; t1 = every process reaped (this process is a child subreaper; \
         waitid(P_ALL) until ECHILD)",
    );
    notes.note(
        "kill_latency/reference_*: t0 = another thread sends SIGTERM to the bench process (the \
         stop request, read by run()'s signalfd); t1 = run() returned and every orphan reaped; \
         Config::default() with subreaper on and the containment named",
    );
    let cgroup = match kill::cgroup_available() {
        Ok(()) => true,
        Err(why) => {
            notes.skip("kill_latency cgroup_kill and reference_cgroup", &why);
            false
        }
    };
    let mut c = harness::criterion();
    let helper = Helper::new(env!("CARGO_BIN_EXE_racelab-bench-child"));
    for (size, samples, per_iter) in SIZES {
        let mut g = c.benchmark_group(format!("kill_latency_{size}"));
        tune(&mut g, samples, per_iter);
        if size == 1 {
            g.bench_function("floor_kill_pid", |b| measure(b, || kill::kill_pid(&helper)));
            g.bench_function("pidfd_send_signal", |b| measure(b, || kill::kill_pidfd(&helper)));
            g.bench_function("request_then_kill_pid", |b| {
                measure(b, || kill::request_then_kill_pid(&helper))
            });
        }
        let pgid_name = if size == 1 { "kill_pgid" } else { "floor_kill_pgid" };
        g.bench_function(pgid_name, |b| measure(b, || kill::kill_pgid(&helper, size)));
        if cgroup {
            g.bench_function("cgroup_kill", |b| measure(b, || kill::cgroup_kill(&helper, size)));
        }
        g.bench_function("proc_walk", |b| measure(b, || kill::proc_walk(&helper, size)));
        if size == 1 {
            g.bench_function("reference_none", |b| {
                measure(b, || kill::reference(&helper, size, Containment::None))
            });
        }
        g.bench_function("reference_group", |b| {
            measure(b, || kill::reference(&helper, size, Containment::Group))
        });
        if cgroup {
            g.bench_function("reference_cgroup", |b| {
                measure(b, || kill::reference(&helper, size, Containment::Cgroup))
            });
        }
        g.finish();
    }
    c.final_summary();
}
