//! Kill latency: the stop request to every process of the tree reaped, for one process and for
//! trees of 10, 100 and 1000, built and ready before the clock starts. Raw floors and the
//! reference supervisor's stop in the same run; criterion reports the per-iteration latencies
//! (`iter_custom`), one iteration per sample.
//!
//! `reference_*`: the stop asked for with `Supervisor::stop` on the supervising thread,
//! compared with the raw kill floors. `reference_group_via_sigterm` (one process): the stop
//! asked for by a SIGTERM from another thread, compared with `request_then_kill_pid`, a raw
//! kill behind the same request path.

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
    // Before any thread exists: the via_sigterm stop request is a process-directed SIGTERM that
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
        "kill_latency/reference_<containment>: Supervisor::start, tree ready, t0, \
         Supervisor::stop() on the supervising thread, Supervisor::wait(), then the bench reaps \
         what is left until ECHILD: t1; Config::default() with subreaper on and the containment \
         named; compared with the raw kill floor (floor_kill_pid; cgroup rows with cgroup_kill)",
    );
    notes.note(
        "kill_latency_1/reference_group_via_sigterm: t0 = another thread sends SIGTERM to the \
         bench process (read by run()'s signalfd); t1 = run() returned and every orphan reaped; \
         compared with request_then_kill_pid (a raw kill behind the same request path), not \
         with floor_kill_pid",
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
        // Each compared pair runs back to back (the floor, then the reference measured against
        // it): the machine drifts during a run, and the targets compare medians of one run.
        let h = &helper;
        let reference = move |containment| move || kill::reference(h, size, containment);
        if size == 1 {
            g.bench_function("floor_kill_pid", |b| measure(b, || kill::kill_pid(&helper)));
            g.bench_function("reference_group", |b| measure(b, reference(Containment::Group)));
            g.bench_function("reference_none", |b| measure(b, reference(Containment::None)));
            g.bench_function("pidfd_send_signal", |b| measure(b, || kill::kill_pidfd(&helper)));
            g.bench_function("kill_pgid", |b| measure(b, || kill::kill_pgid(&helper, size)));
            g.bench_function("request_then_kill_pid", |b| {
                measure(b, || kill::request_then_kill_pid(&helper))
            });
            g.bench_function("reference_group_via_sigterm", |b| {
                measure(b, || kill::reference_via_sigterm(&helper, size, Containment::Group))
            });
        } else {
            g.bench_function("floor_kill_pgid", |b| measure(b, || kill::kill_pgid(&helper, size)));
            g.bench_function("reference_group", |b| measure(b, reference(Containment::Group)));
        }
        if cgroup {
            g.bench_function("cgroup_kill", |b| measure(b, || kill::cgroup_kill(&helper, size)));
            g.bench_function("reference_cgroup", |b| measure(b, reference(Containment::Cgroup)));
        }
        g.bench_function("proc_walk", |b| measure(b, || kill::proc_walk(&helper, size)));
        g.finish();
    }
    c.final_summary();
}
