//! The locator against the real piano 0.14.0 built on this machine (peers-facts §5.2): the
//! `FORCE_KILLED` stores of the escalation threads are found from the symbol table, without
//! a hard-coded offset. Skips (or fails under RACELAB_STRICT=1) when the binary is missing.

mod common;

use racelab_blackbox::{Executable, locate};
use racelab_hooks::{CodePoint, PointRef, Schedule};

fn piano_or_skip() -> bool {
    let piano = common::piano_0_14_0();
    if piano.exists() {
        return true;
    }
    let msg = format!(
        "SKIP: needs piano 0.14.0 at {} (installed by scripts/install-programs)",
        piano.display()
    );
    if std::env::var_os("RACELAB_STRICT").is_some_and(|v| v == "1") {
        panic!("{msg} (RACELAB_STRICT=1 turns skips into failures)");
    }
    eprintln!("{msg}");
    false
}

#[test]
fn the_force_killed_stores_of_the_escalation_threads_are_located_by_symbol() {
    if !piano_or_skip() {
        return;
    }
    // The point as a schedule writes it. The thread closures of run_child are inlined into
    // std's thread entry, `__rust_begin_short_backtrace::<piano::run_child::{{closure}}, ()>`,
    // whose legacy-mangled symbol keeps no generic argument: its demangled name is
    // `std::sys::backtrace::__rust_begin_short_backtrace`, and nothing named after run_child
    // holds the closures' code.
    let text = "on piano@store(piano::FORCE_KILLED, __rust_begin_short_backtrace): ready(child)";
    let s = Schedule::parse(text).unwrap();
    let Some(PointRef::Code(point)) = s.points().next() else { panic!("a code point") };
    let found = locate(&common::piano_0_14_0(), &point).unwrap();
    // Two threads store FORCE_KILLED = true right before their SIGKILL: the duration thread
    // (main.rs:968) and the SIGINT escalation thread (main.rs:997); nothing else there does.
    assert_eq!(found.len(), 2, "{found:#?}");
    for f in &found {
        assert_eq!(f.function, "std::sys::backtrace::__rust_begin_short_backtrace", "{f:?}");
        assert!(f.instruction.starts_with("xchg 86 05"), "{f:?}");
    }
    // The duration thread's, as peers-facts §5.2 found it with objdump.
    assert_eq!(found[0].address, 0x19319c, "{found:#?}");
    // Within run_child itself: only its reset of the flag (store false) at the start.
    let own = CodePoint::store("piano", "piano::FORCE_KILLED", Some("run_child"));
    let own = locate(&common::piano_0_14_0(), &own).unwrap();
    assert_eq!(own.len(), 1, "{own:#?}");
    assert_eq!(own[0].function, "piano::run_child");
    // Anywhere in piano: the three of them.
    let all = CodePoint::store("piano", "piano::FORCE_KILLED", None);
    assert_eq!(locate(&common::piano_0_14_0(), &all).unwrap().len(), 3);
}

#[test]
fn an_address_is_checked_against_the_code_and_maps_to_its_file_offset() {
    if !piano_or_skip() {
        return;
    }
    let exe = Executable::read(&common::piano_0_14_0()).unwrap();
    let at = exe.locate(&CodePoint::address("piano", 0x19319c)).unwrap();
    assert_eq!(at.len(), 1);
    assert!(at[0].instruction.starts_with("xchg"), "{at:?}");
    // The text segment is loaded 0x1000 above its file offset in this build.
    assert_eq!(exe.file_offset(0x19319c), Some(0x19219c));
    assert!(exe.locate(&CodePoint::address("piano", 0x49d6d0)).is_err(), "data is not code");
}
