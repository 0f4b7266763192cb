//! The `main` of a runner executable: the top of the crate, dispatching `argv[1]` to the run, the
//! server, or the workload program.

use crate::modes::{RUN_MODE, SERVE_MODE, WORKLOAD_MODE};
use crate::runner::{Scenarios, run_mode};

/// The `main` of a runner executable. Dispatches on `argv[1]`:
/// - `__run <json>`: one sandbox run (what [`crate::run`] starts); prints one JSON report;
/// - `__serve`: a runner server ([`crate::Server`]): one `__run` request per stdin line, each
///   run in a forked fresh runner, one answer per stdout line;
/// - `__workload [options]`: the workload program ([`crate::workload`]).
///
/// Anything else prints a usage line and exits 2. Never returns.
pub fn runner_main(scenarios: Scenarios<'_>) -> ! {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some(RUN_MODE) if args.len() == 3 => run_mode(&args[2], scenarios),
        Some(SERVE_MODE) if args.len() == 2 => crate::server::serve(scenarios),
        Some(WORKLOAD_MODE) => crate::workload_main::main(&args[2..]),
        _ => {
            eprintln!(
                "usage: {} __run <json> | __serve | __workload [--ignore-term] [--pdeathsig] \
                 [--report P] [--ctl P] [--command C]...\n\
                 (a racelab sandbox runner: started by racelab_sandbox::run, not by hand)",
                args.first().map_or("runner", String::as_str)
            );
            std::process::exit(2)
        }
    }
}
