//! racelab-sandbox: one throw-away PID namespace per replay, the PID-recycling driver, the
//! workload program, and the probe of what this host allows.
//!
//! What it is for:
//! - **running a scenario in a sandbox** ([`run`]): the caller (a multi-threaded test or the
//!   CLI) execs a *runner executable* whose `main` is [`runner_main`]. The runner, a fresh
//!   single-threaded process, unshares a PID and a mount namespace (plus a user namespace when
//!   not root: the caller's uid/gid map to 0, setgroups denied) and forks. The child is PID 1
//!   of the new namespace: it arms `PR_SET_PDEATHSIG(SIGKILL)` and re-checks that the runner is
//!   still alive (on a pidfd: `getppid()` is 0 for a PID 1), makes every mount private, mounts
//!   a fresh /proc, optionally joins a cgroup v2 leaf, and runs the scenario with an [`Init`].
//!   The result (a `serde_json::Value`) goes back over a pipe; the runner prints one JSON
//!   document. Every wait has a deadline: the runner SIGKILLs an overrunning PID 1 (the kernel
//!   then kills the whole namespace) and the caller kills a runner that does not answer (its
//!   PID 1 follows by pdeathsig). Nothing a scenario starts can outlive the run or reach a
//!   process outside it.
//! - **many runs from one exec** ([`Server`]): the runner exec'd once as a server that forks a
//!   fresh single-threaded runner per run, for callers that replay many times (an exec is the
//!   dearest step of a short run).
//! - **forcing a PID** ([`Init::recycle`]): after a process was reaped, make a [`Victim`] take
//!   exactly its PID, through `ns_last_pid` + fork or `clone3(set_tid)`, always verified.
//! - **the workload** ([`Workload`], [`workload_main`]): the supervised child of every
//!   replay and supervisor test, driven over its stdin and stdout (or FIFOs, or inherited fds),
//!   reporting what it inherited and every signal it gets.
//! - **capabilities** ([`Capabilities::probe`], [`skip_unless`]).
//!
//! What it is not for: judging designs (the `races` crate's oracle), scheduling interleavings
//! (`racelab-hooks`), or supervising anything outside a sandbox (`racelab-supervisor`).
//!
//! # A runner and a run
//!
//! ```no_run
//! // src/bin/my-runner.rs
//! use racelab_sandbox::{Init, runner_main};
//! use serde_json::{Value, json};
//!
//! fn scenarios(name: &str, _input: Value, init: &mut Init) -> Result<Value, String> {
//!     match name {
//!         "whoami" => Ok(json!({ "pid": init.pid() })),
//!         other => Err(format!("unknown scenario {other}")),
//!     }
//! }
//!
//! fn main() {
//!     runner_main(&scenarios)
//! }
//! ```
//!
//! ```no_run
//! # use std::path::Path;
//! use racelab_sandbox::{RunOutcome, Spec, run};
//! let out = run(Path::new("/path/to/my-runner"), "whoami", &serde_json::json!({}), &Spec::default())?;
//! if let RunOutcome::Finished { output, .. } = out {
//!     assert_eq!(output["pid"], 1);
//! }
//! # Ok::<(), racelab_sandbox::SandboxError>(())
//! ```

#![forbid(unsafe_code)]

// Bottom to top: each module uses only those above it in this list.
mod caller;
mod caps;
mod entry;
mod error;
mod init;
pub mod interrupt;
mod leaf;
mod modes;
mod probe;
mod proc;
mod ready;
mod recycle;
mod runner;
mod server;
mod skip;
mod spec;
mod stop;
pub mod workload;
mod workload_main;

pub use caller::{command, run, run_command};
pub use caps::{Capabilities, Capability};
pub use entry::runner_main;
pub use error::{ErrorKind, SandboxError};
pub use init::{Init, Reaped, now_ns};
pub use leaf::gc_stale_leaves;
pub use modes::{
    EXIT_PARENT_GONE, EXIT_SETUP, PROBE_SCENARIO, RUN_MODE, SERVE_MODE, WORKLOAD_MODE,
};
pub use proc::{Child, Fate};
pub use ready::ReadyFifo;
pub use recycle::{Mechanism, NS_LAST_PID_ATTEMPTS, Victim};
pub use runner::Scenarios;
pub use server::Server;
pub use skip::skip_unless;
pub use spec::{Fault, RunOutcome, Spec, UserNs};
pub use workload::{Channel, ReportLine, Workload};
pub use workload_main::main as workload_main;
