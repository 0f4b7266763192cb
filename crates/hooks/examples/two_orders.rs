//! Forces each order of a racy read/write, 1000 times each, and prints the last trace of each
//! as text and as a Mermaid diagram.
//!
//! `cargo run -p racelab-hooks --features hooks --example two_orders`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;
use std::time::Duration;

use racelab_hooks::{ArmOptions, NoActions, RunReport, Schedule, arm, point};

static FORCE_KILLED: AtomicBool = AtomicBool::new(false);

fn race_once(schedule: &Schedule) -> (bool, RunReport) {
    FORCE_KILLED.store(false, Relaxed);
    let options = ArmOptions { deadline: Duration::from_secs(5), ..ArmOptions::default() };
    let armed = arm(schedule.clone(), Arc::new(NoActions), options).expect("arm");
    let writer = thread::spawn(|| {
        point!(escalation.before_force_flag);
        FORCE_KILLED.store(true, Relaxed);
        point!(escalation.kill_sent);
    });
    let reader = thread::spawn(|| {
        point!(main.reaped);
        let seen = FORCE_KILLED.load(Relaxed);
        point!(main.classified);
        seen
    });
    // Every point wait has a 5 s deadline, so these joins cannot hang.
    let seen = reader.join().expect("reader");
    writer.join().expect("writer");
    (seen, armed.finish())
}

fn main() {
    for (text, expect) in [
        ("escalation.kill_sent < main.reaped", true),
        ("main.classified < escalation.before_force_flag", false),
    ] {
        let schedule = Schedule::parse(text).expect("schedule");
        let mut last = RunReport::default();
        let mut matched = 0;
        for _ in 0..1000 {
            let (seen, report) = race_once(&schedule);
            assert!(report.is_clean(), "{report}");
            matched += usize::from(seen == expect);
            last = report;
        }
        println!(
            "schedule `{schedule}`: reader saw the write = {expect} in {matched} of 1000 runs"
        );
        println!("{}", last.trace);
        println!("{}", last.trace.to_mermaid());
        assert_eq!(matched, 1000);
    }
}
