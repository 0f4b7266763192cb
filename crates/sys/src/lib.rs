//! racelab-sys: every `unsafe` block and every raw `libc` call of racelab lives here.
//!
//! The rest of the workspace is `#![forbid(unsafe_code)]`. Each wrapper here is thin and typed,
//! documents the syscall it makes, and carries a `// SAFETY:` comment on every unsafe block
//! (enforced by `clippy::undocumented_unsafe_blocks`).
//!
//! What this crate is not for: policy. It never decides when to fork, signal or wait; the
//! sandbox, the supervisor and the legacy replicas do.
//!
//! Modules are grouped by kernel mechanism, not by the crate that uses them.
pub mod bench;
pub mod clone3;
pub mod env;
pub mod fdpass;
pub mod mem;
pub mod ns;
#[cfg(target_os = "linux")]
pub mod ptrace;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod seccomp;
pub mod sigaction;
pub mod spawn;
pub mod stdio;
