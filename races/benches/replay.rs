//! Replay throughput: one deterministic replay end to end (runner start, namespaces, the
//! design process, the workload, the oracle, the JSON verdict back), for races with no design
//! timers (Z2 against both designs: the lab's own cost) and for Q1 against global_atomics
//! (whose duration and kill-timeout timers, 5 ms each, are part of the design).
//!
//! Two ways to start the runner, each its own row: `server` (what `racelab replay` and the
//! catalog tests use: the runner exec'd once, a fork of it per replay) and `exec` (one exec of
//! the runner per replay, `races::replay_once`). The floor in the same run: exec of the runner
//! binary that does nothing but print its usage.
//!
//! Black-box rows: the same pipeline around an unmodified program parked at its syscalls
//! (the launcher installs a seccomp filter, init answers its notifications): F1 against tini
//! (seven signals forwarded one by one) and Q1 against the published piano 0.14.0 (its 5 ms
//! duration and kill-timeout included). A program that is not installed is skipped with a
//! message (`scripts/install-programs`).
//!
//! `cargo bench -p races --bench replay`; `RACELAB_BENCH_QUICK=1` for a smoke run.

use criterion::{Criterion, criterion_group, criterion_main};
use races::catalog::{self, DesignId};
use std::path::PathBuf;
use std::time::Duration;

fn runner() -> PathBuf {
    // The bench binary lives in target/<profile>/deps; the runner one level up.
    let exe = std::env::current_exe().expect("bench executable");
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("races-runner")
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("RACELAB_BENCH_QUICK").is_some();
    let runner = runner();
    assert!(
        runner.exists(),
        "build the runner first: cargo build --release -p races ({})",
        runner.display()
    );
    let mut g = c.benchmark_group("replay");
    g.sample_size(if quick { 10 } else { 60 });
    g.measurement_time(Duration::from_secs(if quick { 1 } else { 8 }));
    g.warm_up_time(Duration::from_millis(if quick { 100 } else { 1000 }));
    g.bench_function("floor: exec runner", |b| {
        b.iter(|| std::process::Command::new(&runner).output().expect("runner runs"))
    });
    let check = |r: &catalog::Race, design: DesignId, out: &races::ReplayOutput| {
        let ok = r.designs.iter().any(|(d, e)| *d == design && e.check(&out.verdict).is_ok());
        assert!(ok, "{} {}: {:?}", r.id, design.name(), out.verdict);
    };
    let mut replayer = races::Replayer::new(&runner, races::RunAs::Caller);
    for (race, design) in [
        ("Z2", DesignId::Reference),
        ("Z2", DesignId::GreedyReaper),
        ("Q1", DesignId::GlobalAtomics),
    ] {
        let r = catalog::find(race).expect("race");
        g.bench_function(format!("{race} {} (server)", design.name()), |b| {
            b.iter(|| check(r, design, &replayer.replay(r, design, None)))
        });
    }
    for (case, program) in [("F1", "tini"), ("Q1", "piano-0.14.0")] {
        let p = races::programs::find(program).expect("program");
        if let Err(why) = p.binary(&runner) {
            eprintln!("skipped {case} {program} (black box): {why}");
            continue;
        }
        let cell = races::conformance::cell(case, program).expect("cell");
        let races::conformance::CellExpect::Run(expect) = cell.expect else { continue };
        let case = races::conformance::find_case(case).expect("case");
        g.bench_function(format!("{} {program} (server, black box)", case.race), |b| {
            b.iter(|| {
                let out = replayer.replay_program(case, p, None);
                assert!(expect.check(&out.verdict).is_ok(), "{}: {:?}", p.name, out.verdict);
            })
        });
    }
    let z2 = catalog::find("Z2").expect("race");
    g.bench_function("Z2 reference (exec)", |b| {
        b.iter(|| {
            check(
                z2,
                DesignId::Reference,
                &races::replay_once(&runner, z2, DesignId::Reference, None),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
