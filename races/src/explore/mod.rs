//! Exploration: the lab finds a bad interleaving by itself, on real processes, and hands back
//! the shortest schedule that shows it.
//!
//! # Background
//!
//! Every race of the [catalog](crate::catalog) is replayed from a schedule a person wrote after
//! reading the bug report. That proves the fix for races we know. Exploration asks the other
//! question: given a design and a race's setup (the child, the timers, the stop), is there
//! *any* schedule over the design's named points that breaks an invariant? It draws schedules
//! at random with proptest, replays each one exactly like `racelab replay` does (a fresh PID
//! namespace, real signals, real PID reuse), judges it with the same oracle, and when one
//! breaks an invariant, lets proptest shrink it to a minimal schedule you can paste:
//!
//! ```text
//! $ racelab explore Q4 --design global_atomics
//! Q4 against global_atomics (random, seed 0): I3 broken at case 15 after 5.6 s
//!   shrunk in 3 replays, confirmed 5/5:
//!   racelab replay Q4 --design global_atomics --schedule 'on main.spawned: interrupt(design)'
//!   violated I3 interrupt delivered: SIGINT reached the supervisor while the child lived; the child never saw SIGINT/SIGTERM/SIGHUP (it saw [])
//! ```
//!
//! # The model
//!
//! 1. **Probes** ([`Vocabulary`]): a design only passes some points, some of them several
//!    times. Three probe replays show which: the empty schedule (the unforced path), one where
//!    the child exits at the first point reached (a design that would wait forever for its
//!    child shows the rest of its points), and one interrupted at the last point (its
//!    interrupt path). The traces list every point passed, with occurrences and threads.
//! 2. **Schedules** ([`ScheduleStrategy`]): a `Vec<Step>` of happens-before edges between
//!    point occurrences of *different* threads (within one thread an edge is program order or
//!    a thread waiting for itself) and the lab actions the race's setup makes meaningful:
//!    `exit(child)`, `ready(child)`, `interrupt(design)`, `recycle(child)` where the oracle
//!    watches victims (I1), `orphans(child)` where the child forks them, `kill(outer)` where
//!    there is an outer process. Two ways to draw the edges ([`SearchStrategy`]): uniformly
//!    at random, or PCT-style (random thread priorities and `d - 1` priority change points,
//!    the resulting order written as edges). The actions are drawn the same way in both.
//! 3. **Replays**: with a shortened [`Patience`](crate::scenario::Patience), from what the
//!    probes needed, so a schedule that deadlocks costs a fraction of a second. A schedule
//!    with a cycle is never replayed; one whose thread would wait for itself, or that gets
//!    stuck, comes back `not forced`: both are counted and exploration moves on.
//! 4. **Shrinking** ([`StepsTree`]): proptest's runner drives it: drop each step in turn while
//!    the violation persists, then lower each occurrence toward `#1`.
//! 5. **Confirmation and memory**: the shrunk schedule is replayed again with the default
//!    patience (what `racelab replay` does), and kept in
//!    `races/proptest-regressions/explore/<race>-<design>.txt`, which every later run
//!    replays before drawing anything new ([`regressions`]).
//!
//! # Writing an exploration
//!
//! ```no_run
//! use races::explore::{ExploreConfig, SearchStrategy};
//! use races::{Replayer, RunAs, catalog::{self, DesignId}};
//! # fn runner() -> std::path::PathBuf { "races-runner".into() }
//! let mut replayer = Replayer::new(&runner(), RunAs::Caller);
//! let race = catalog::find("Z2").unwrap();
//! let config = ExploreConfig { cases: 50, seed: 3, ..ExploreConfig::default() };
//! let found = races::explore::explore(&mut replayer, race, DesignId::GreedyReaper, &config, &mut |_| {})?;
//! assert!(found.as_expected(), "{}", found.summary());
//! # Ok::<(), races::explore::ExploreError>(())
//! ```
//!
//! `cargo test -p races --test explore` runs a bounded, seeded exploration of each design this
//! way: one race per legacy design must break, the reference must not.
//!
//! # Running it
//!
//! `racelab explore [RACE...] [--design D] [--cases N] [--seed S] [--strategy random|pct|both]
//! [--depth D] [--stress]`. Exit 0 when exploration behaved as the catalog expects (a
//! violation for each legacy design that has the race, none for the reference), 1 otherwise (a
//! reference violation is printed with its replay command), 2 for a usage error.
//! `--stress` adds the brute-force column: the unforced path replayed until the same violation
//! appears, or a cap. docs/exploration.md has the figures.
//!
//! # Debugging a finding
//!
//! Paste the printed `racelab replay ... --schedule '...'` command; add `--format mermaid`
//! for the timeline. A finding confirmed less than every time is timing-dependent beyond the
//! schedule: the trace shows which thread ran ahead. `--no-regressions` explores from scratch.
//!
//! # Limitations
//!
//! - The probes see only what a design does in three runs; a point reached only on some other
//!   path never appears in a generated schedule (the traces of later replays are not learned).
//! - PCT assumes every thread is always runnable; the lab cannot see a thread the kernel
//!   blocks (a reap before the child died), so some PCT orders deadlock and come back
//!   `not forced`.
//! - The same seed draws the same schedules only from the same vocabulary: a design whose
//!   occurrence counts vary from run to run (Z1's reaper wakes) draws slightly different ones.
//! - Lab actions are never attached to points of the `signal` actor, which may sit in a
//!   signal handler.

mod generate;
mod outcome;
pub mod regressions;
mod run;
mod vocabulary;

pub use generate::{MAX_RANDOM_EDGES, ScheduleStrategy, SearchStrategy, StepsTree, pct_order};
pub use outcome::{
    Counts, Exploration, ExploreConfig, ExploreError, Found, KnownHit, Progress, Stress,
    replay_command,
};
pub use run::explore;
pub use vocabulary::{Probe, ThreadKey, Vocabulary, actions_for};
