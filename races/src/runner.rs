//! The runner executable's side: every binary that replays races (the `races-runner` of
//! `cargo test -p races`, the `racelab` CLI) calls [`dispatch_if_runner`] first in `main`.

use racelab_sandbox::Init;
use serde_json::Value;

fn scenarios(name: &str, input: Value, init: &mut Init) -> Result<Value, String> {
    match name {
        crate::scenario::SCENARIO => {
            // The legacy replicas refuse to signal strangers unless they run in a sandbox.
            racelab_sys::env::set_single_threaded("RACELAB_SANDBOX", "1")
                .map_err(|e| e.to_string())?;
            crate::scenario::run(input, init)
        }
        crate::blackbox::SCENARIO => crate::blackbox::run(input, init),
        other => Err(format!(
            "unknown scenario {other:?} (known: {}, {})",
            crate::scenario::SCENARIO,
            crate::blackbox::SCENARIO
        )),
    }
}

/// If this process was started as a runner (a hidden first argument), runs that mode and
/// exits; otherwise returns and `main` goes on.
pub fn dispatch_if_runner() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some(crate::design::LEGACY_MODE) => {
            let mode = args.get(2).cloned().unwrap_or_default();
            racelab_legacy::wrapper_main(&mode, args[3..].iter().map(Into::into))
        }
        Some(mode) if mode.starts_with("__") => racelab_sandbox::runner_main(&scenarios),
        _ => {}
    }
}
