use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use nix::sys::signal::{SaFlags, Signal, raise};
use racelab_hooks::{EventKind, point, points};

use crate::{arm_plain, exclusive, spawn, tid};

static MAIN_PASSED: AtomicBool = AtomicBool::new(false);
static HANDLER_SAW_MAIN: AtomicBool = AtomicBool::new(false);
static HANDLER_TID: AtomicU32 = AtomicU32::new(0);

/// Async-signal-safe: atomics, gettid and the point (atomics + futex).
extern "C" fn on_usr1(_: c_int) {
    HANDLER_TID.store(nix::unistd::gettid().as_raw() as u32, SeqCst);
    point!(signal.handler_entered);
    HANDLER_SAW_MAIN.store(MAIN_PASSED.load(SeqCst), SeqCst);
}

#[test]
fn a_point_hit_from_a_signal_handler_parks_and_is_released() {
    let _g = exclusive();
    MAIN_PASSED.store(false, SeqCst);
    HANDLER_SAW_MAIN.store(false, SeqCst);
    racelab_sys::sigaction::install_handler(Signal::SIGUSR1, on_usr1, SaFlags::empty())
        .expect("install SIGUSR1 handler");
    let armed = arm_plain("main.spawned < signal.handler_entered", Duration::from_secs(5));
    // The handler runs on the raising thread, before raise returns: it parks inside the handler.
    let interrupted = spawn(|| {
        raise(Signal::SIGUSR1).expect("raise");
        tid()
    });
    assert!(
        armed.wait_parked(&points::signal::handler_entered, Duration::from_secs(5)),
        "the handler never parked"
    );
    MAIN_PASSED.store(true, SeqCst);
    point!(main.spawned);
    let interrupted_tid = interrupted.join_within(Duration::from_secs(10));
    let report = armed.finish();
    racelab_sys::sigaction::restore_default(Signal::SIGUSR1).expect("restore SIGUSR1");
    assert!(report.is_clean(), "{report}");
    assert!(HANDLER_SAW_MAIN.load(SeqCst), "the handler passed before main.spawned");
    assert_eq!(HANDLER_TID.load(SeqCst), interrupted_tid);
    let handler: Vec<EventKind> = report
        .trace
        .events
        .iter()
        .filter(|e| e.subject == "signal.handler_entered")
        .map(|e| e.kind)
        .collect();
    assert_eq!(handler, [EventKind::Arrive, EventKind::Park, EventKind::Release, EventKind::Pass]);
    assert!(
        report
            .trace
            .events
            .iter()
            .all(|e| e.subject != "signal.handler_entered" || e.tid == interrupted_tid)
    );
}
