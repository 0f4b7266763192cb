//! The race catalog (RACES.md): each race as data, with its origin, its schedule in the hooks'
//! text form, the setup the lab builds, and what each design must show.

use crate::verdict::{Expect, Invariant};
use serde::Serialize;
use std::time::Duration;

/// The designs the lab knows. Each legacy one models a public design (see crates/legacy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DesignId {
    /// piano before ecca3b9: four global atomics, three threads and a signal handler.
    GlobalAtomics,
    /// piano after ecca3b9: one flag, one thread, a 10 ms polling loop.
    PollingFix,
    /// buildah run_common.go: SIGKILL, then poll the state every 100 ms with no deadline.
    UnboundedPoll,
    /// A PID 1 that reaps one child per SIGCHLD.
    ReapOnce,
    /// A PID 1 whose waitpid(-1) reaper steals the main child's status.
    GreedyReaper,
    /// rvos qemu-lock.sh before d32fae6: flock, then exec the program.
    ExecUnderLock,
    /// StackStorm/st2's sensor container: PR_SET_PDEATHSIG in `preexec_fn`, no re-check (P1).
    PreexecPdeathsig,
    /// Spawned on a short-lived thread, waited for on another (golang/go #27505's report; P2).
    SpawnerThread,
    /// bazel process-wrapper: wait (which reaps), then `kill(-child_pid)` (G1).
    GroupKillAfterReap,
    /// OpenRC openrc-run: a SIGCHLD handler that reaps before the pid is stored (S1).
    ReapingHandler,
    /// CPython `subprocess.run` before bpo-37424: SIGKILL, then read to EOF (H1).
    UnboundedDrain,
    /// The reference supervisor (crates/supervisor).
    Reference,
}

impl DesignId {
    /// Every design, legacy first.
    pub const ALL: [DesignId; 12] = [
        DesignId::GlobalAtomics,
        DesignId::PollingFix,
        DesignId::UnboundedPoll,
        DesignId::ReapOnce,
        DesignId::GreedyReaper,
        DesignId::ExecUnderLock,
        DesignId::PreexecPdeathsig,
        DesignId::SpawnerThread,
        DesignId::GroupKillAfterReap,
        DesignId::ReapingHandler,
        DesignId::UnboundedDrain,
        DesignId::Reference,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            DesignId::GlobalAtomics => "global_atomics",
            DesignId::PollingFix => "polling_fix",
            DesignId::UnboundedPoll => "unbounded_poll",
            DesignId::ReapOnce => "reap_once",
            DesignId::GreedyReaper => "greedy_reaper",
            DesignId::ExecUnderLock => "exec_under_lock",
            DesignId::PreexecPdeathsig => "preexec_pdeathsig",
            DesignId::SpawnerThread => "spawner_thread",
            DesignId::GroupKillAfterReap => "group_kill_after_reap",
            DesignId::ReapingHandler => "reaping_handler",
            DesignId::UnboundedDrain => "unbounded_drain",
            DesignId::Reference => "reference",
        }
    }

    /// Looks a design up by name.
    pub fn by_name(name: &str) -> Option<DesignId> {
        DesignId::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// How the lab stops the run from outside, besides the schedule's own actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Nothing: the child ends by itself or through scheduled actions.
    None,
    /// Once the child is ready: freeze it (v1 freezer), then send SIGINT to the supervisor.
    FreezeThenInterrupt,
    /// Once the child is ready: SIGKILL the outer process that started the design.
    KillOuter,
    /// Once the child is ready (unless a scheduled `kill(design)` came first): SIGKILL the
    /// design process itself, the child's parent (P1).
    KillDesign,
}

/// What the lab builds for one race.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Setup {
    /// The design's duration limit (`--duration`, `--timeout`).
    pub duration: Option<Duration>,
    /// The grace period between the stop signal and SIGKILL (`--kill-timeout`); zero = none.
    pub grace: Duration,
    /// The supervised child keeps running after SIGTERM.
    pub child_ignores_term: bool,
    /// A control command the child runs once it is ready (`fork-orphans 50`, `exit 7`).
    pub child_start: Option<&'static str>,
    /// The lab's own stop.
    pub stop: Stop,
    /// I4's bound: how long after a stop request the supervisor may take to return.
    pub bound: Duration,
    /// The design runs as a child subreaper (PID 1 duty).
    pub subreaper: bool,
    /// After the bound passed with the supervisor still running, send a second SIGINT (Q4).
    pub second_interrupt: bool,
    /// With [`Stop::KillOuter`]: the outer process starts the design with
    /// PR_SET_PDEATHSIG(SIGKILL), as buildah's parent starts its helper (O3).
    pub outer_pdeathsig: bool,
    /// With [`Stop::KillOuter`]: the child runs under the lock wrapper (O1).
    pub under_lock: bool,
    /// The child arms PR_SET_PDEATHSIG(SIGKILL) itself as it starts, before it says ready, as a
    /// worker that ties its life to its parent does (P2).
    pub child_pdeathsig: bool,
    /// The child's end starts I4's bound: a supervisor must return within `bound` of its
    /// child's end (S1, H1). A design still running then is asked for its trace and ended.
    pub child_end_starts_bound: bool,
    /// The design captures the child's standard error through a pipe (its tree inherits it);
    /// the workload reports to the lab on its standard output (H1).
    pub capture_stderr: bool,
}

impl Setup {
    /// Nothing special: no duration, no grace, the lab does not stop the run, a 300 ms bound.
    pub const BASE: Setup = Setup {
        duration: None,
        grace: Duration::ZERO,
        child_ignores_term: false,
        child_start: None,
        stop: Stop::None,
        bound: Duration::from_millis(300),
        subreaper: false,
        second_interrupt: false,
        outer_pdeathsig: false,
        under_lock: false,
        child_pdeathsig: false,
        child_end_starts_bound: false,
        capture_stderr: false,
    };
}

/// One catalogued race.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Race {
    /// Short id, `Q1`.
    pub id: &'static str,
    /// What goes wrong, as a name: `kill-recycled-pid`.
    pub slug: &'static str,
    /// One line.
    pub title: &'static str,
    /// The public bug it comes from.
    pub origin: &'static str,
    /// Why it happens, in the design that has it.
    pub root_cause: &'static str,
    /// What the fixed design does instead.
    pub fix: &'static str,
    /// The interleaving, in the hooks' schedule text form.
    pub schedule: &'static str,
    /// What the lab builds.
    pub setup: Setup,
    /// The invariants the oracle checks for this race.
    pub invariants: &'static [Invariant],
    /// The designs it runs against, with what each must show.
    pub designs: &'static [(DesignId, Expect)],
    /// Points a design may or may not pass in a replay of this race, depending on timing
    /// alone (the verdict does not depend on them): the docs pages do not draw them and the
    /// docs sync test does not compare them. Every other point a design passes must be passed
    /// in every replay.
    pub optional: &'static [(DesignId, &'static str)],
}

/// The reference's event loop reads SIGCHLD from its signalfd in a round of its own, or never
/// when the same round already saw the exit through the pidfd: which one depends on when the
/// kernel queued the signal relative to the poll's return, not on the schedule.
const REFERENCE_LOOP_WAKE: &[(DesignId, &str)] = &[(Reference, "reaper.woke")];

use DesignId::*;
use Invariant::*;

/// The first catalog.
pub static CATALOG: &[Race] = &[
    Race {
        id: "Q1",
        slug: "kill-recycled-pid",
        title: "SIGKILL reaches a process that took the reaped child's PID",
        origin: "rocketman-code/piano issue #620, fixed in commit ecca3b9",
        root_cause: "The child's numeric PID outlives the reap: main's blocking `wait()` reaps the child, but CHILD_PID is cleared only after classification. An escalation thread that loaded the PID before the reap sends SIGKILL after it, to whatever process took the number since.",
        fix: "Signal only through a pidfd, and only from the thread that reaps: a pidfd names one process forever, and a child that is not reaped yet is at worst a zombie that pins its PID.",
        schedule: "on duration.expired: ready(child)\n\
                   on escalation.pid_loaded: exit(child)\n\
                   on main.reaped: recycle(child)\n\
                   main.reaped < escalation.before_kill\n\
                   escalation.kill_sent < main.classified",
        setup: Setup {
            duration: Some(Duration::from_millis(5)),
            grace: Duration::from_millis(5),
            child_ignores_term: true,
            ..Setup::BASE
        },
        invariants: &[I1NoStraySignal],
        designs: &[
            (GlobalAtomics, Expect::Reproduce(&[I1NoStraySignal])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "Q3",
        slug: "force-flag-after-classify",
        title: "a SIGKILL was sent but the report says the duration ended it",
        origin: "rocketman-code/piano issue #620, fixed in commit ecca3b9",
        root_cause: "Nothing orders the escalation thread's FORCE_KILLED store before main's classification load: main can classify Duration (exit 0, no warning) and the escalation thread then stores the flag and sends SIGKILL.",
        fix: "Decide the kill and the stop reason in the same step of one state machine: a SIGKILL decided is a ForcedKill reported, and the warning printed.",
        schedule: "on duration.expired: ready(child)\n\
                   on escalation.pid_loaded: exit(child)\n\
                   main.classified < escalation.before_force_flag\n\
                   escalation.kill_sent < lab.design_returned",
        setup: Setup {
            duration: Some(Duration::from_millis(5)),
            grace: Duration::from_millis(5),
            child_ignores_term: true,
            ..Setup::BASE
        },
        invariants: &[I2TrueStopReason],
        designs: &[
            (GlobalAtomics, Expect::Reproduce(&[I2TrueStopReason])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "Q4",
        slug: "signal-before-pid-store",
        title: "an interrupt during spawn is never forwarded; the child is SIGKILLed untold",
        origin: "rocketman-code/piano issue #620, fixed in commit ecca3b9",
        root_cause: "The SIGINT handler is installed before spawn but CHILD_PID is stored after it; a SIGINT in between finds PID 0 and forwards nothing, and SA_RESETHAND has already reset the handler. The escalation thread later SIGKILLs a child that never saw SIGTERM.",
        fix: "Block the forwarded signals before spawn (unblocking them in the child) and read them from a signalfd in the event loop once the child exists: a signal that arrives during spawn waits, it is never lost.",
        schedule: "on main.spawned: ready(child)\n\
                   on main.spawned: interrupt(design)\n\
                   signal.forwarded < main.pid_stored",
        // The grace must leave the child time to run and log the SIGTERM a fixed design sends
        // it: with 20 ms, a heavily loaded machine (load 41 during benches) failed to schedule
        // it in 2 of 1000 polling_fix replays, and the oracle saw no SIGTERM.
        setup: Setup { grace: Duration::from_millis(200), ..Setup::BASE },
        invariants: &[I3InterruptDelivered],
        designs: &[
            (GlobalAtomics, Expect::Reproduce(&[I3InterruptDelivered])),
            (PollingFix, Expect::Prevent),
            (Reference, Expect::Prevent),
        ],
        // The escalation thread's SIGKILL ends the child, and main may reap, classify and exit
        // before that thread passes `escalation.kill_sent` (a soak under load saw it once).
        optional: &[(Reference, "reaper.woke"), (GlobalAtomics, "escalation.kill_sent")],
    },
    Race {
        id: "Q4b",
        slug: "signal-before-pid-store-no-grace",
        title: "with no kill timeout the same interrupt leaves the supervisor waiting forever",
        origin: "rocketman-code/piano issue #620, fixed in commit ecca3b9",
        root_cause: "Same window as Q4 with --kill-timeout 0: no escalation thread exists, the child is never signalled, and main blocks in wait() forever. A second Ctrl-C (SIG_DFL after SA_RESETHAND) kills the supervisor and orphans the child.",
        fix: "The reference forwards the pending interrupt from its event loop and always bounds its grace period, so it returns within its bound and leaves no orphan.",
        schedule: "on main.spawned: ready(child)\n\
                   on main.spawned: interrupt(design)\n\
                   signal.forwarded < main.pid_stored",
        setup: Setup { second_interrupt: true, bound: Duration::from_millis(100), ..Setup::BASE },
        invariants: &[I3InterruptDelivered, I4BoundedStop, I5NoSurvivors],
        designs: &[
            (
                GlobalAtomics,
                Expect::Reproduce(&[I3InterruptDelivered, I4BoundedStop, I5NoSurvivors]),
            ),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "O2",
        slug: "unbounded-wait-after-sigkill",
        title: "after SIGKILL the supervisor polls an unkillable child with no deadline",
        origin: "containers/buildah issue #6786",
        root_cause: "After an interrupt the supervisor sends SIGKILL and then polls the container state every 100 ms with no deadline; a task that cannot die (in D state) keeps it polling forever, and the user's later SIGKILL of the supervisor leaves the tree orphaned.",
        fix: "After SIGKILL wait a bounded time, then cgroup.kill the whole tree, wait a bounded time again, and return a clear `unkillable` report that names the process and its state.",
        // The stop (freeze the child, then SIGINT) comes once the design can take it: the replica
        // blocks its signals only after spawning, like buildah's signal.Notify, and a SIGINT
        // before that would kill it at start-up, which is not this race.
        schedule: "on main.handler_installed: ready(design)",
        setup: Setup {
            grace: Duration::from_millis(20),
            stop: Stop::FreezeThenInterrupt,
            bound: Duration::from_millis(500),
            ..Setup::BASE
        },
        invariants: &[I4BoundedStop],
        designs: &[
            (UnboundedPoll, Expect::Reproduce(&[I4BoundedStop])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "Z1",
        slug: "zombie-accumulation",
        title: "a PID 1 that reaps one child per SIGCHLD leaves zombies after a burst",
        origin: "dualeai/exec-sandbox guest-agent (TestPid1ZombieReaping); catatonit issue 4",
        root_cause: "A PID 1 that reaps one child per SIGCHLD: standard signals coalesce, so a burst of exits gives fewer notifications than exits and the rest stay zombies.",
        fix: "On every SIGCHLD drain with waitpid(-1, WNOHANG) until none is left, routing the main child's status when it comes by.",
        schedule: "on reaper.woke: orphans(child)",
        setup: Setup { child_start: Some("fork-orphans 50"), subreaper: true, ..Setup::BASE },
        invariants: &[I6NoZombies],
        designs: &[(ReapOnce, Expect::Reproduce(&[I6NoZombies])), (Reference, Expect::Prevent)],
        optional: &[],
    },
    Race {
        id: "Z2",
        slug: "reaper-steals-status",
        title: "a waitpid(-1) reaper consumes the main child's status; the waiter invents one",
        origin: "dualeai/exec-sandbox guest-agent init.rs reap_zombies vs tokio Child::wait",
        root_cause: "A reaper thread reaps every child with waitpid(-1) while the main path waits for its child by PID: the reaper consumes the main child's status, the waiter gets ECHILD and reports a made-up -1.",
        fix: "One reaper that recognises the main child's PID when waitpid(-1) returns it and routes that status to the caller, instead of discarding it.",
        schedule: "on main.spawned: exit(child, 7)\n\
                   reaper.reaped < main.pid_stored",
        setup: Setup { subreaper: true, ..Setup::BASE },
        invariants: &[I7TrueExitStatus],
        designs: &[
            (GreedyReaper, Expect::Reproduce(&[I7TrueExitStatus])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "O1",
        slug: "orphan-on-wrapper-death",
        title: "the program exec'd under a lock outlives its killed parent and keeps the lock",
        origin: "XMPPwocky/surely-this-cant-work (rvos) bug 0017, fixed in d32fae6",
        root_cause: "The wrapper takes the lock and execs the program: the program inherits the lock descriptor and no parent is left to stop it; when the outer tool is killed the program is reparented and keeps the lock, so the next run says \"already running\".",
        fix: "Run the program under a supervisor that contains its tree (here a PID namespace whose init dies with the supervisor) and dies with its own parent: killing the outer tool takes the program and its lock down.",
        schedule: "",
        setup: Setup { stop: Stop::KillOuter, under_lock: true, ..Setup::BASE },
        invariants: &[I5NoSurvivors],
        designs: &[
            (ExecUnderLock, Expect::Reproduce(&[I5NoSurvivors])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "O3",
        slug: "pdeathsig-kills-cleanup",
        title: "the helper dies by PR_SET_PDEATHSIG before its cleanup; the tree it started survives",
        origin: "containers/buildah issue #6786 (runUsingRuntimeSubproc: Pdeathsig = SIGKILL)",
        root_cause: "The parent starts its helper with PR_SET_PDEATHSIG(SIGKILL) and the helper's cleanup (kill and delete the container) runs in its own deferred code. When the outer process is SIGKILLed the helper is killed outright, its cleanup never runs, and the processes it started are reparented to the nearest subreaper and live on.",
        fix: "Contain the tree so that no cleanup code has to run: the reference puts the child in its own PID namespace as its init, with PR_SET_PDEATHSIG(SIGKILL) tied to the supervisor, so the supervisor's death takes the whole namespace down.",
        schedule: "",
        setup: Setup {
            child_start: Some("spawn-tree 3"),
            stop: Stop::KillOuter,
            outer_pdeathsig: true,
            ..Setup::BASE
        },
        invariants: &[I5NoSurvivors],
        designs: &[
            (UnboundedPoll, Expect::Reproduce(&[I5NoSurvivors])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    // The next five (issue 14).
    Race {
        id: "P1",
        slug: "pdeathsig-parent-already-dead",
        title: "the parent dies before the child's PR_SET_PDEATHSIG; the child outlives it",
        origin: "the prctl(2) PR_SET_PDEATHSIG caveat; StackStorm/st2 on_parent_exit('SIGTERM') as the sensor container's preexec_fn",
        root_cause: "The child arms PR_SET_PDEATHSIG in its pre-exec hook, after the fork. A parent that dies between the fork and the prctl is never noticed: the child has been adopted by then, the prctl ties the signal to its new parent, and nothing re-checks getppid(). The program runs on with no one left to stop it.",
        fix: "Re-check the parent after the prctl: the reference's spawn compares getppid() with the pid its parent had before the clone and exits at once when it changed (with PID namespace containment the whole tree goes with its init).",
        schedule: "on preexec.entered: kill(design)",
        setup: Setup { stop: Stop::KillDesign, ..Setup::BASE },
        invariants: &[I5NoSurvivors],
        designs: &[
            (PreexecPdeathsig, Expect::Reproduce(&[I5NoSurvivors])),
            (Reference, Expect::Prevent),
        ],
        optional: &[],
    },
    Race {
        id: "P2",
        slug: "pdeathsig-thread-exit",
        title: "PR_SET_PDEATHSIG fires when the spawning thread exits: a healthy child of a live parent dies",
        origin: "golang/go issue #27505; Tencent-Hunyuan/UniRL issue #275 (c1da41b, fixed by PR #276)",
        root_cause: "PR_SET_PDEATHSIG's parent is the thread that created the child, not the process. The child is started on a short-lived thread and waited for on another; once it has armed the signal, the starter thread's exit is its parent's death: the kernel SIGKILLs it while the process that owns it lives, and the owner reports the death as the child's own end.",
        fix: "Spawn, wait and signal from one thread that lives as long as the child: the reference's single event-loop thread spawns the child (its PR_SET_PDEATHSIG tied to that thread) and returns only once the child is reaped.",
        schedule: "on spawner.exiting: ready(child)\n\
                   main.reaped < duration.expired",
        // The timeout only ends the replays where nothing kills the child (the reference's,
        // and the unforced one); the schedule holds it back until the child was reaped.
        setup: Setup {
            duration: Some(Duration::from_millis(50)),
            child_pdeathsig: true,
            ..Setup::BASE
        },
        invariants: &[I2TrueStopReason],
        designs: &[
            (SpawnerThread, Expect::Reproduce(&[I2TrueStopReason])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "G1",
        slug: "group-kill-after-leader-reaped",
        title: "kill(-pgid) after the group leader was reaped reaches a new group that took the id",
        origin: "bazelbuild/bazel issue #11910 (src/main/tools/process-wrapper-legacy.cc)",
        root_cause: "The wrapper waits for its child, which reaps it, and only then SIGKILLs the child's process group, named by the child's pid. With the leader reaped and no member left, the number is free: a new process that took it and leads a group of that id (setpgid(0, 0)) receives the SIGKILL.",
        fix: "Kill the group before reaping its leader: the reference sweeps the group while the leader is an unreaped zombie, which pins the id, and sends nothing to the group once it has reaped it.",
        schedule: "on main.reaped: recycle(child, group)",
        setup: Setup { child_start: Some("exit 0"), ..Setup::BASE },
        invariants: &[I1NoStraySignal],
        designs: &[
            (GroupKillAfterReap, Expect::Reproduce(&[I1NoStraySignal])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "S1",
        slug: "sigchld-before-pid-known",
        title: "the SIGCHLD handler reaps the child before its pid is stored; the exit is missed and the supervisor waits on",
        origin: "OpenRC issue #895 and pull #898 (openrc-run.c svc_exec); Yelp/dumb-init pull #104",
        root_cause: "A SIGCHLD handler reaps every child with waitpid(-1) and passes on only the status of the pid the main path stores once fork (or spawn) has returned. A child that exits at once is reaped before that store: its status is dropped, nothing ever writes the pipe the main path polls, and the supervisor waits for an exit that already happened.",
        fix: "Block SIGCHLD before the child exists and learn of its exit through a handle taken at its creation: the reference blocks SIGCHLD before the spawn, gets the child's pidfd from clone3 itself and peeks at its status through that pidfd, so an exit at any moment is seen.",
        schedule: "on main.spawned: exit(child, 7)\n\
                   reaper.reaped < main.pid_stored",
        setup: Setup {
            child_start: Some("exit 7"),
            child_end_starts_bound: true,
            bound: Duration::from_millis(100),
            ..Setup::BASE
        },
        invariants: &[I4BoundedStop],
        designs: &[
            (ReapingHandler, Expect::Reproduce(&[I4BoundedStop])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
    Race {
        id: "H1",
        slug: "grandchild-holds-pipe",
        title: "after the timeout's SIGKILL a grandchild keeps the output pipe open; the caller reads to EOF forever",
        origin: "python/cpython pull #14490 (bpo-37424); golang/go issue #13155",
        root_cause: "On timeout the caller SIGKILLs its child, then reads the captured output to its end of file, with no deadline, before waiting. The end of file comes only when every holder of the pipe's write end has closed it: a grandchild that inherited the stream survives its parent's SIGKILL and keeps it open, so the read never ends, and nothing ever kills the grandchild.",
        fix: "Kill the tree that holds the pipe, and bound the read: the reference sweeps the child's process group while its leader is an unreaped zombie, then reads the captured output to its end of file for at most output_wait, and warns instead of waiting on when something outside the tree still holds it.",
        schedule: "on duration.expired: tree(child)",
        // The timeout expires before the child can have started a grandchild, unless the
        // schedule holds it back until the grandchild exists.
        setup: Setup {
            duration: Some(Duration::from_micros(100)),
            child_start: Some("spawn-tree 1"),
            child_end_starts_bound: true,
            capture_stderr: true,
            bound: Duration::from_millis(100),
            ..Setup::BASE
        },
        invariants: &[I4BoundedStop, I5NoSurvivors],
        designs: &[
            (UnboundedDrain, Expect::Reproduce(&[I4BoundedStop, I5NoSurvivors])),
            (Reference, Expect::Prevent),
        ],
        optional: REFERENCE_LOOP_WAKE,
    },
];

/// Looks a race up by id (`Q1`) or slug (`kill-recycled-pid`), case-insensitively.
pub fn find(name: &str) -> Option<&'static Race> {
    CATALOG.iter().find(|r| r.id.eq_ignore_ascii_case(name) || r.slug.eq_ignore_ascii_case(name))
}

/// Every known race name, for error messages.
pub fn known_names() -> String {
    CATALOG.iter().map(|r| format!("{} ({})", r.id, r.slug)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_race_runs_against_the_reference_and_at_least_one_legacy_design() {
        for race in CATALOG {
            assert!(
                race.designs.iter().any(|(d, e)| *d == Reference && *e == Expect::Prevent),
                "{}",
                race.id
            );
            assert!(
                race.designs
                    .iter()
                    .any(|(d, e)| *d != Reference && matches!(e, Expect::Reproduce(_)))
            );
        }
    }

    #[test]
    fn optional_points_exist_apply_to_a_design_of_the_race_and_are_not_scheduled() {
        for race in CATALOG {
            for (design, point) in race.optional {
                assert!(racelab_hooks::points::by_name(point).is_some(), "{}: {point}", race.id);
                assert!(race.designs.iter().any(|(d, _)| d == design), "{}: {design:?}", race.id);
                // A point the schedule names is forced, hence never optional.
                assert!(!race.schedule.contains(point), "{}: {point} is scheduled", race.id);
            }
        }
    }

    #[test]
    fn races_are_found_by_id_or_slug() {
        assert_eq!(find("q1").map(|r| r.slug), Some("kill-recycled-pid"));
        assert_eq!(find("zombie-accumulation").map(|r| r.id), Some("Z1"));
        assert!(find("Q2").is_none());
    }
}
