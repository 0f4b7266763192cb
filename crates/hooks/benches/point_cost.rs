//! The cost of one `point!`: compiled out (no `hooks` feature), compiled in but unarmed, and
//! armed with a schedule that does not mention the point (it is recorded, never parks).
//!
//! `cargo bench -p racelab-hooks --bench point_cost` (disabled) and
//! `cargo bench -p racelab-hooks --features hooks --bench point_cost` (unarmed, armed).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use racelab_hooks::point;

fn baseline(c: &mut Criterion) {
    c.bench_function("empty loop body (baseline)", |b| b.iter(|| black_box(1u32)));
}

#[cfg(not(feature = "hooks"))]
fn points(c: &mut Criterion) {
    c.bench_function("point, hooks feature off", |b| {
        b.iter(|| {
            point!(main.spawned);
            black_box(1u32)
        })
    });
}

#[cfg(feature = "hooks")]
fn points(c: &mut Criterion) {
    use std::sync::Arc;
    use std::time::Duration;

    use racelab_hooks::{ArmOptions, NoActions, Schedule, arm};

    c.bench_function("point, hooks on, controller not armed", |b| {
        b.iter(|| {
            point!(main.spawned);
            black_box(1u32)
        })
    });
    // Another point is scheduled, so the edge table is live; main.spawned has no edge.
    let schedule = Schedule::parse("escalation.pid_loaded < main.reaped").expect("schedule");
    for (name, trace_capacity) in
        [("armed, unscheduled point, traced", 4096), ("armed, unscheduled point, trace off", 0)]
    {
        let options = ArmOptions { deadline: Duration::from_secs(5), trace_capacity };
        let armed = arm(schedule.clone(), Arc::new(NoActions), options).expect("arm");
        c.bench_function(&format!("point, hooks on, {name}"), |b| {
            b.iter(|| {
                point!(main.spawned);
                black_box(1u32)
            })
        });
        let _ = armed.finish();
    }
}

criterion_group!(benches, baseline, points);
criterion_main!(benches);
