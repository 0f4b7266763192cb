//! Sandbox costs: start-to-verdict of one run, and PID forcing against a plain fork.
//!
//! `cargo bench -p racelab-sandbox --bench sandbox`
//!
//! The forcing figures come from inside one sandbox (a scenario does the measuring loop and
//! reports per-iteration nanoseconds, read with `iter_custom`), so a plain fork and both
//! forcing mechanisms are measured in the same run. Before criterion's groups, a summary pass
//! prints medians and p99 of all three, interleaved, with the ratios to a plain fork.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use racelab_sandbox::{RunOutcome, Server, Spec, run};
use serde_json::{Value, json};

const RUNNER: &str = env!("CARGO_BIN_EXE_racelab-sandbox-runner");

fn sandbox(scenario: &str, input: Value) -> (Value, Duration) {
    let spec = Spec::with_deadline(Duration::from_secs(120));
    match run(Path::new(RUNNER), scenario, &input, &spec) {
        Ok(RunOutcome::Finished { output, wall, .. }) => (output, wall),
        other => panic!("{scenario}: {other:?}"),
    }
}

fn ns_list(v: &Value) -> Vec<u64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn summary() {
    let n = 2000;
    let (out, _) = sandbox("forcing-bench", json!({ "iterations": n }));
    eprintln!("\nPID forcing, {n} interleaved iterations in one sandbox (us: median / p99):");
    let mut base = (0.0, 0.0);
    for kind in ["fork", "ns_last_pid", "set_tid"] {
        let mut c = ns_list(&out[kind]["create_ns"]);
        let mut y = ns_list(&out[kind]["cycle_ns"]);
        c.sort_unstable();
        y.sort_unstable();
        let (cm, ym) = (pct(&c, 0.5), pct(&y, 0.5));
        if kind == "fork" {
            base = (cm, ym);
        }
        eprintln!(
            "  {kind:12} create {cm:7.1} / {:7.1}  ({:.2}x fork)   create+exit+reap {ym:7.1} / {:7.1}  ({:.2}x)",
            pct(&c, 0.99),
            cm / base.0,
            pct(&y, 0.99),
            ym / base.1
        );
    }
    let (mut walls, mut totals) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let t = Instant::now();
        let (_, wall) = sandbox("noop", Value::Null);
        totals.push(t.elapsed().as_nanos() as u64);
        walls.push(wall.as_nanos() as u64);
    }
    walls.sort_unstable();
    totals.sort_unstable();
    eprintln!(
        "sandbox run of a no-op scenario, 200 runs (us: median / p99): run() start to verdict \
         {:.1} / {:.1}; PID 1 fork to result {:.1} / {:.1}",
        pct(&totals, 0.5),
        pct(&totals, 0.99),
        pct(&walls, 0.5),
        pct(&walls, 0.99)
    );
    let mut server = Server::start(Server::command(Path::new(RUNNER))).expect("runner server");
    let spec = Spec::with_deadline(Duration::from_secs(120));
    let mut served: Vec<u64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            match server.run("noop", &Value::Null, &spec) {
                Ok(RunOutcome::Finished { .. }) => t.elapsed().as_nanos() as u64,
                other => panic!("noop through the server: {other:?}"),
            }
        })
        .collect();
    served.sort_unstable();
    eprintln!(
        "the same through a runner server (one exec, then a clone of PID 1 per run), 200 runs: \
         Server::run() start to verdict {:.1} / {:.1}\n",
        pct(&served, 0.5),
        pct(&served, 0.99)
    );
}

fn benches(c: &mut Criterion) {
    summary();
    let mut g = c.benchmark_group("sandbox");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    g.bench_function("start_to_verdict", |b| b.iter(|| sandbox("noop", Value::Null)));
    let mut server = Server::start(Server::command(Path::new(RUNNER))).expect("runner server");
    let spec = Spec::with_deadline(Duration::from_secs(120));
    g.bench_function("start_to_verdict_server", |b| {
        b.iter(|| server.run("noop", &Value::Null, &spec).expect("noop through the server"))
    });
    g.finish();

    let mut g = c.benchmark_group("pid_forcing_create");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    for kind in ["fork", "ns_last_pid", "set_tid"] {
        g.bench_function(kind, |b| {
            b.iter_custom(|iters| {
                let (out, _) = sandbox("forcing-bench", json!({"iterations": iters, "only": kind}));
                Duration::from_nanos(ns_list(&out[kind]["create_ns"]).iter().sum())
            })
        });
    }
    g.finish();
}

criterion_group!(sandbox_benches, benches);
criterion_main!(sandbox_benches);
