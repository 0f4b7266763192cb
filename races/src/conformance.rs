//! The conformance matrix: catalogued races, and the cases every supervisor meets (a signal
//! right after start, a burst of orphans under PID 1, forwarding), replayed against black-box
//! programs at their syscall boundaries.
//!
//! A case is a [`Race`] (the catalogued one, Q1 or Z1, or one of [`CASE_RACES`]) plus what a
//! black-box run adds: whether the program runs as PID 1 of a namespace of its own, and which
//! signals the lab delivers once the child is ready. A [`Cell`] says, for one program, the
//! schedule that forces the case at its syscalls (`{p}` stands for the program's image label),
//! the flags it runs with, and what it must show, or why the case does not apply.

use crate::catalog::{self, Race, Setup};
use crate::verdict::{Expect, Invariant};
use std::time::Duration;

use Invariant::*;

/// One case of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The race id (`Q1`, `E1`).
    pub race: &'static str,
    /// The program runs as PID 1 of a PID namespace of its own.
    pub pid1: bool,
    /// Signals the lab delivers to the program one by one once the child is ready, each after
    /// the child reported the previous one (or its bound passed).
    pub signals: &'static [i32],
    /// Once the child is ready, the lab interrupts the program (SIGINT).
    pub interrupt_when_ready: bool,
    /// Signals the launcher blocks before it execs the program (the mask survives execve).
    pub launcher_blocks: &'static [i32],
}

impl Case {
    /// The race this case replays.
    pub fn race(&self) -> &'static Race {
        find_race(self.race).expect("every case names a race of the catalog or of CASE_RACES")
    }
}

/// What one program must show in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellExpect {
    /// Replayed, with this expectation.
    Run(Expect),
    /// Not replayed: why the case does not apply to this program, or cannot be forced at its
    /// syscall boundaries.
    NotApplicable(&'static str),
}

/// One cell: a program in a case.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    /// The case's race id.
    pub case: &'static str,
    /// The program's name.
    pub program: &'static str,
    /// The schedule over the program's syscall points; `{p}` is its image label. (The flags a
    /// case runs a program with are the program's, in its spec: `[cases.E1] flags = ["-g"]`.)
    pub schedule: &'static str,
    /// What it must show.
    pub expect: CellExpect,
    /// One line for the matrix: what the cell shows.
    pub note: &'static str,
}

impl Cell {
    /// The schedule with the program's image label (`tini_static`) filled in.
    pub fn schedule_for(&self, label: &str) -> String {
        self.schedule.replace("{p}", label)
    }
}

const BASE: Setup = Setup::BASE;

/// What an init is expected to forward: F1 sends them one by one, E2L's launcher blocks them.
const FORWARDED: &[i32] = {
    use nix::sys::signal::Signal::*;
    &[
        SIGHUP as i32,
        SIGINT as i32,
        SIGQUIT as i32,
        SIGUSR1 as i32,
        SIGUSR2 as i32,
        SIGWINCH as i32,
        SIGTERM as i32,
    ]
};

/// A race that exists only as a black-box case: no schedule of its own (each cell has one), the
/// base setup unless it says otherwise, no instrumented design.
const CASE_ONLY: Race = Race {
    id: "",
    slug: "",
    title: "",
    origin: "",
    root_cause: "",
    fix: "",
    schedule: "",
    setup: BASE,
    invariants: &[],
    designs: &[],
    optional: &[],
};

/// The early-signal cases (E1, E2, E2L) are about whether a SIGTERM is forwarded, not about the
/// grace: a supervisor that escalates (supervise, whose zero grace is 1 ms) must not SIGKILL
/// the child before it could log the signal it was sent. With 1 ms, a loaded machine let
/// supervise's SIGKILL land before the child read its signalfd (E1 and E2L, 3 replays in 1000
/// each), reported as "the child never saw SIGTERM" (I3). tini, dumb-init and catatonit have
/// no escalation; GNU timeout gets `--kill-after=1`, which changes nothing in E1's window (its
/// handler exits at once while no child PID is stored).
const EARLY: Setup = Setup { grace: Duration::from_secs(1), ..BASE };

/// The races that exist only as black-box cases (no instrumented design has them).
pub static CASE_RACES: &[Race] = &[
    Race {
        id: "E1",
        slug: "early-signal-lost",
        title: "a SIGTERM during spawn is forwarded to a process group that does not exist yet",
        origin: "tini -g, dumb-init, catatonit -g: forward with kill(-pid) before the child's setpgid/setsid (ESRCH is ignored)",
        root_cause: "The supervisor forks, then starts forwarding signals at once; the child makes itself a group (setpgid/setsid) a moment later. A signal in between is forwarded with kill(-pid, sig) to a group that does not exist: ESRCH, the signal is dropped, the child runs on and the supervisor waits for it forever. GNU timeout 9.1 has its own window: a signal between fork's return and the store of the child's PID runs its handler with no PID known, and it exits at once, leaving the child behind.",
        fix: "Block the forwarded signals before the fork and create the group before the supervisor can forward (in the child before exec while the parent waits, or with posix_spawn's POSIX_SPAWN_SETPGROUP); forward to the child's pidfd when the group is not there yet.",
        invariants: &[I3InterruptDelivered, I4BoundedStop, I5NoSurvivors],
        setup: EARLY,
        ..CASE_ONLY
    },
    Race {
        id: "E2",
        slug: "pid1-early-signal-dropped",
        title: "a SIGTERM to a PID 1 that has not blocked it yet is dropped by the kernel",
        origin: "every PID 1 (tini, dumb-init, catatonit): a namespace init ignores signals it has no handler for",
        root_cause: "The kernel discards a signal sent to a PID namespace's init when its disposition is SIG_DFL and it is not blocked (SIGNAL_UNKILLABLE), from any sender. Between exec and the supervisor's first sigprocmask the signal is gone without a trace; the supervisor then starts its child and waits forever.",
        fix: "Nothing inside the supervisor can catch a signal that arrives before its first instruction: the launcher (the container runtime) must start PID 1 with the forwarded signals blocked (the mask survives execve), so an early signal is queued and read once the supervisor reads its signalfd.",
        invariants: &[I3InterruptDelivered, I4BoundedStop],
        setup: EARLY,
        ..CASE_ONLY
    },
    Race {
        id: "E2L",
        slug: "pid1-early-signal-launcher-blocks",
        title: "E2's early SIGTERM, with a launcher that starts PID 1 with the signals blocked: queued, not dropped",
        origin: "what E2 needs: a launcher (container runtime) that blocks the forwarded signals before execve",
        root_cause: "Same moment as E2, but the signal mask survives execve: the kernel queues a blocked signal instead of dropping it, and PID 1 reads it once it waits for signals.",
        fix: "This is the fix for E2, shown.",
        invariants: &[I3InterruptDelivered, I4BoundedStop],
        setup: EARLY,
        ..CASE_ONLY
    },
    Race {
        id: "F1",
        slug: "forward-common-signals",
        title: "HUP, INT, QUIT, USR1, USR2, WINCH and TERM sent to the supervisor reach the child",
        origin: "what tini, dumb-init and catatonit promise as an init; GNU timeout forwards a subset",
        root_cause: "A supervisor that handles some signals itself (or dies of them) does not forward them: the child never learns of a reload (HUP), a resize (WINCH) or a user signal.",
        fix: "Block every forwarded signal before spawn and forward each one read from the signalfd to the child (or its group).",
        // A grace long enough that a supervisor which treats HUP, INT or TERM as a stop request
        // (and escalates after its grace) never SIGKILLs the child before it logged the signal:
        // this case is about forwarding, R1 is about the grace.
        setup: Setup { child_ignores_term: true, grace: Duration::from_secs(1), ..BASE },
        invariants: &[I3InterruptDelivered],
        ..CASE_ONLY
    },
    Race {
        id: "R1",
        slug: "no-grace-term-ignoring-child",
        title: "with no kill timeout, a child that ignores SIGTERM keeps the supervisor waiting after Ctrl-C",
        origin: "rocketman-code/piano after ecca3b9 (the residual the fix kept: --kill-timeout 0 waits in a blocking wait)",
        root_cause: "After forwarding SIGTERM the fixed piano waits for the child with no deadline when --kill-timeout is 0; a child that ignores SIGTERM keeps it there, and a second Ctrl-C (SIG_DFL after SA_RESETHAND) kills piano and orphans the child.",
        fix: "Always bound the grace: after it, SIGKILL the child (the reference has no unbounded mode).",
        setup: Setup { child_ignores_term: true, second_interrupt: true, ..BASE },
        invariants: &[I4BoundedStop, I5NoSurvivors],
        ..CASE_ONLY
    },
];

/// A race of the catalog or of [`CASE_RACES`], by id or slug.
pub fn find_race(name: &str) -> Option<&'static Race> {
    catalog::find(name).or_else(|| {
        CASE_RACES
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(name) || r.slug.eq_ignore_ascii_case(name))
    })
}

/// A case of race `race` with nothing special: not PID 1, no signals of its own, no interrupt
/// once ready, nothing blocked by the launcher.
const fn case(race: &'static str) -> Case {
    Case { race, pid1: false, signals: &[], interrupt_when_ready: false, launcher_blocks: &[] }
}

/// Like [`case`], with the program as PID 1 of a PID namespace of its own.
const fn pid1_case(race: &'static str) -> Case {
    Case { pid1: true, ..case(race) }
}

/// The cases, in matrix order.
pub static CASES: &[Case] = &[
    case("Q1"),
    case("Q3"),
    case("Q4"),
    case("Q4b"),
    Case { interrupt_when_ready: true, ..case("R1") },
    case("E1"),
    pid1_case("E2"),
    pid1_case("Z1"),
    Case { signals: FORWARDED, ..case("F1") },
    Case { launcher_blocks: FORWARDED, ..pid1_case("E2L") },
];

/// A case by race id or slug.
pub fn find_case(name: &str) -> Option<&'static Case> {
    let race = find_race(name)?;
    CASES.iter().find(|c| c.race == race.id)
}

// The duration's SIGTERM waits for the child to be ready (it ignores SIGTERM from then on: a
// SIGTERM before that would kill it and end the run before any escalation).
const Q1_PIANO: &str = "on {p}.kill(SIGTERM): ready(child)\n\
                        on {p}.kill(SIGKILL): exit(child), recycle(child)\n\
                        {p}.kill(SIGKILL).returned < {p}.rt_sigaction(SIGINT)#4";
const Q1_TIMEOUT: &str = "on {p}.kill(SIGTERM): ready(child)\n\
                          on {p}.kill(SIGKILL): exit(child), recycle(child)";
// supervise sends its SIGTERM to the child's group (kill(-pgid)) and its SIGKILL through the
// pidfd first. The SIGTERM point holds the timer's stop until the child said ready, as the
// duration point does in the catalog: a point at pidfd_send_signal(SIGTERM) was never reached,
// and a loaded machine let the SIGTERM kill the child mid-exec (not forced: 1 replay in 1000
// of the peers run, 1 in 900 of a loop next to CI).
const Q1_SUPERVISE: &str = "on {p}.kill(SIGTERM): ready(child)\n\
                            on {p}.pidfd_send_signal(SIGKILL): exit(child), recycle(child)";
// Q3 has no syscall inside its window: the duration thread is held by a breakpoint (ptrace)
// at its FORCE_KILLED store, found in the binary, while the child exits and main reaps it,
// classifies (FORCE_KILLED still false: Duration) and clears CHILD_PID (its next syscall is
// the restoring sigaction); then the store and the SIGKILL happen, and exit_group waits for
// that kill to return. The duration's SIGTERM waits for the child to be ready, as in Q1.
const Q3_PIANO: &str = "on {p}.kill(SIGTERM): ready(child)\n\
                        on {p}@store(piano::FORCE_KILLED, __rust_begin_short_backtrace): exit(child), await({p}.rt_sigaction(SIGINT)#4)\n\
                        {p}.kill(SIGKILL).returned < {p}.exit_group";
const Q3_FIXED: &str = "the fix has no FORCE_KILLED: the SIGKILL and the stop reason are decided in one step of one thread, so the window does not exist";
// GNU timeout 9.1 held at the exit of its clone, the child's PID returned but not stored.
const E1_TIMEOUT: &str = "on {p}.clone.exit: terminate(target)";
const Q4_PIANO: &str = "on {p}.clone3: interrupt(target)";
const E1_GROUP: &str = "on {p}.setpgid: terminate(target), await({p}.kill(SIGTERM).returned)";
const E1_SESSION: &str = "on {p}.setsid: terminate(target), await({p}.kill(SIGTERM).returned)";
const E2_PID1: &str = "on {p}.rt_sigprocmask: terminate(target)";
const Z1_PID1: &str = "on {p}.wait4: orphans(child)";
// supervise reaps with waitid(P_ALL), never wait4: the point above would never park it, and the
// burst would land while nothing held the reaper (a cell judged on a schedule that did not run).
const Z1_SUPERVISE: &str = "on {p}.waitid: orphans(child)";
const NOT_AN_INIT: &str = "piano handles SIGINT only and reaps only its child: it is not an init";

use CellExpect::{NotApplicable as Na, Run};

const fn reproduce(list: &'static [Invariant]) -> CellExpect {
    Run(Expect::Reproduce(list))
}

const PREVENT: CellExpect = Run(Expect::Prevent);

/// The early signal never reaches the child, and the supervisor waits for it forever.
const LOST_AND_HUNG: CellExpect = reproduce(&[I3InterruptDelivered, I4BoundedStop]);

/// The orphans' zombies stay.
const ZOMBIES: CellExpect = reproduce(&[I6NoZombies]);

macro_rules! cell {
    ($case:literal, $program:literal, $schedule:expr, $expect:expr, $note:literal) => {
        Cell { case: $case, program: $program, schedule: $schedule, expect: $expect, note: $note }
    };
}

/// Every cell of the matrix.
pub static CELLS: &[Cell] = &[
    // Q1: the escalation's SIGKILL held at its syscall while the child exits, is reaped and its
    // PID recycled; main held at its restoring sigaction so that exit_group does not end the
    // held thread first.
    cell!(
        "Q1",
        "piano-0.14.0",
        Q1_PIANO,
        Run(Expect::Reproduce(&[I1NoStraySignal])),
        "the victim that took the PID is SIGKILLed"
    ),
    cell!(
        "Q1",
        "piano-0.15.1",
        Q1_PIANO,
        PREVENT,
        "the SIGKILL comes from the thread that reaps: the PID is pinned"
    ),
    cell!("Q1", "timeout", Q1_TIMEOUT, PREVENT, "one thread signals and reaps: the PID is pinned"),
    cell!(
        "Q1",
        "supervise",
        Q1_SUPERVISE,
        PREVENT,
        "SIGKILL through a pidfd, by the thread that reaps"
    ),
    cell!(
        "Q3",
        "piano-0.14.0",
        Q3_PIANO,
        reproduce(&[I2TrueStopReason]),
        "exit 0, no warning, although the SIGKILL was sent (a breakpoint holds the store)"
    ),
    cell!("Q3", "piano-0.15.1", "", Na(Q3_FIXED), ""),
    // Q4: SIGINT while main is inside posix_spawn (all signals blocked there): the handler
    // runs as spawn returns, before CHILD_PID is stored.
    cell!(
        "Q4",
        "piano-0.14.0",
        Q4_PIANO,
        Run(Expect::Reproduce(&[I3InterruptDelivered])),
        "the handler sees PID 0; the child is SIGKILLed untold"
    ),
    cell!(
        "Q4",
        "piano-0.15.1",
        Q4_PIANO,
        PREVENT,
        "the flag is read by the loop, which forwards SIGTERM"
    ),
    cell!(
        "Q4b",
        "piano-0.14.0",
        Q4_PIANO,
        Run(Expect::Reproduce(&[I3InterruptDelivered, I4BoundedStop, I5NoSurvivors])),
        "hangs in wait; the second SIGINT kills piano and orphans the child"
    ),
    cell!("Q4b", "piano-0.15.1", Q4_PIANO, PREVENT, "forwarded by the loop; the child exits"),
    cell!(
        "R1",
        "piano-0.14.0",
        "",
        Run(Expect::Reproduce(&[I4BoundedStop, I5NoSurvivors])),
        "waits forever, orphans the child on the second SIGINT"
    ),
    cell!(
        "R1",
        "piano-0.15.1",
        "",
        Run(Expect::Reproduce(&[I4BoundedStop, I5NoSurvivors])),
        "the fix's residual is real: a blocking wait with no deadline"
    ),
    cell!("R1", "supervise", "", PREVENT, "the grace is always bounded: SIGKILL, then return"),
    cell!("R1", "tini", "", Na("an init forwards and waits: it has no grace period to bound"), ""),
    cell!("R1", "timeout", "", Na("without --kill-after GNU timeout waits by design"), ""),
    cell!(
        "E1",
        "tini",
        E1_GROUP,
        LOST_AND_HUNG,
        "tini -g: kill(-pid) gives ESRCH, tini waits forever"
    ),
    cell!("E1", "tini-static", E1_GROUP, LOST_AND_HUNG, "tini-static -g: the same"),
    cell!(
        "E1",
        "dumb-init",
        E1_SESSION,
        LOST_AND_HUNG,
        "kill(-pid) before setsid: ESRCH ignored, hangs"
    ),
    cell!(
        "E1",
        "catatonit",
        E1_GROUP,
        LOST_AND_HUNG,
        "catatonit -g: the forward fails silently, hangs"
    ),
    cell!(
        "E1",
        "timeout",
        E1_TIMEOUT,
        reproduce(&[I3InterruptDelivered, I5NoSurvivors]),
        "held at its clone's exit (ptrace): exits 143 at once, the child survives (timeout.c:536)"
    ),
    cell!(
        "E1",
        "supervise",
        E1_GROUP,
        PREVENT,
        "signals blocked before spawn; the parent waits for the child's exec, then forwards"
    ),
    cell!("E1", "piano-0.14.0", "", Na(NOT_AN_INIT), ""),
    cell!("E2", "tini", E2_PID1, LOST_AND_HUNG, "the kernel drops it; tini waits forever"),
    cell!("E2", "tini-static", E2_PID1, LOST_AND_HUNG, "the same"),
    cell!("E2", "dumb-init", E2_PID1, LOST_AND_HUNG, "the same"),
    cell!("E2", "catatonit", E2_PID1, LOST_AND_HUNG, "the same"),
    cell!(
        "E2",
        "supervise",
        E2_PID1,
        LOST_AND_HUNG,
        "kernel semantics: only the launcher can block it before exec"
    ),
    cell!(
        "E2",
        "timeout",
        "",
        Na(
            "timeout installs its handlers before it blocks anything: a signal then is handled, not dropped"
        ),
        ""
    ),
    cell!("E2", "piano-0.14.0", "", Na(NOT_AN_INIT), ""),
    cell!("E2L", "tini", E2_PID1, PREVENT, "the queued SIGTERM is read and forwarded"),
    cell!("E2L", "tini-static", E2_PID1, PREVENT, "the same"),
    cell!("E2L", "catatonit", E2_PID1, PREVENT, "the same"),
    cell!("E2L", "supervise", E2_PID1, PREVENT, "read from its signalfd and forwarded"),
    cell!(
        "E2L",
        "dumb-init",
        "",
        Na(
            "the queued signal is forwarded at once with kill(-pid), before the child's setsid: that is E1"
        ),
        ""
    ),
    cell!("Z1", "tini", Z1_PID1, PREVENT, "drains with waitpid(-1, WNOHANG)"),
    cell!("Z1", "tini-static", Z1_PID1, PREVENT, "the same"),
    cell!("Z1", "dumb-init", Z1_PID1, PREVENT, "the same"),
    cell!("Z1", "catatonit", Z1_PID1, PREVENT, "the same"),
    cell!("Z1", "timeout", Z1_PID1, ZOMBIES, "waits for its child only"),
    cell!("Z1", "piano-0.14.0", Z1_PID1, ZOMBIES, "waits for its child only"),
    cell!("Z1", "piano-0.15.1", Z1_PID1, ZOMBIES, "waits for its child only"),
    cell!(
        "Z1",
        "supervise",
        Z1_SUPERVISE,
        PREVENT,
        "reaps every orphan as PID 1 (held at its waitid)"
    ),
    cell!("F1", "tini", "", PREVENT, "all seven forwarded"),
    cell!("F1", "tini-static", "", PREVENT, "all seven forwarded"),
    cell!("F1", "dumb-init", "", PREVENT, "all seven forwarded"),
    cell!("F1", "catatonit", "", PREVENT, "all seven forwarded"),
    cell!(
        "F1",
        "timeout",
        "",
        reproduce(&[I3InterruptDelivered]),
        "by design: forwards HUP, INT, QUIT, TERM only; USR1 ends timeout"
    ),
    cell!("F1", "supervise", "", PREVENT, "all seven forwarded"),
    cell!("F1", "piano-0.14.0", "", Na(NOT_AN_INIT), ""),
];

/// The cell of `program` in `case`, if the matrix has one.
pub fn cell(case: &str, program: &str) -> Option<&'static Cell> {
    let race = find_race(case)?;
    CELLS.iter().find(|c| c.case == race.id && c.program == program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_unique_and_case_ids_do_not_clash_with_the_catalog() {
        for (i, c) in CELLS.iter().enumerate() {
            assert!(
                !CELLS[..i].iter().any(|d| d.case == c.case && d.program == c.program),
                "{} {}",
                c.case,
                c.program
            );
        }
        for r in CASE_RACES {
            assert!(catalog::find(r.id).is_none(), "{} is also a catalog race", r.id);
        }
    }
}
