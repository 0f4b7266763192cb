//! racelab-benches: the criterion benchmarks behind docs/benchmarks.md.
//!
//! What it is for: measuring, in one run and against raw floors measured in the same run, how
//! fast each supervisor strategy learns that a child exited (reap latency), how fast it turns a
//! stop request into "every process reaped" (kill latency), and what `supervise -- /bin/true`
//! (the dynamic and the static build) costs as a whole process next to `tini -s -- /bin/true`
//! (and Debian's `tini-static`). `racelab report` turns criterion's output into the Markdown
//! table and SVG chart in docs/.
//!
//! What it is not for: correctness. The benches check only that each run did what it claims
//! (a stamp was written, every process was reaped); the races and their verdicts live in the
//! `races` package.
//!
//! Layout: [`harness`] (quick mode, sample sizing, notes for the report), [`procs`] (spawning
//! the helper child, readiness pipes, reaping, the /proc walk), [`reap`] and [`kill`] (one
//! function per strategy, each returning the latency of one iteration). The bench targets in
//! `benches/` only wire these into criterion. The helper child is the `racelab-bench-child`
//! binary of this package.

pub mod harness;
pub mod kill;
pub mod procs;
pub mod reap;
