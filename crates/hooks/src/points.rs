//! The catalog of named points: every point of every design is declared here, once.
//!
//! A point's name is `actor.window`. The actor is the part of a design that reaches the point
//! (`main`, `escalation`, ...): in a multi-threaded design each actor is a thread, in a
//! single-threaded design one thread plays several actors. Code marks a point with
//! `point!(actor.window)`; a typo is a compile error because the macro resolves to
//! `points::actor::window`. A schedule names points by the same dotted string.
//!
//! Add a point by adding one line to `catalog!` below, with a doc line saying where the window
//! is and what goes wrong there in the designs that have it.

/// One named point. `index` is its position in [`ALL`], stable within one build.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Point {
    /// The stable dotted name, `actor.window`.
    pub name: &'static str,
    /// Position in [`ALL`].
    pub index: u16,
    /// One line: where the window is.
    pub doc: &'static str,
}

impl Point {
    /// The actor part of the name (before the first dot).
    pub fn actor(&self) -> &'static str {
        match self.name.split_once('.') {
            Some((actor, _)) => actor,
            None => self.name,
        }
    }
}

/// Looks a point up by its dotted name.
pub fn by_name(name: &str) -> Option<&'static Point> {
    ALL.iter().copied().find(|p| p.name == name)
}

macro_rules! catalog {
    ($( $actor:ident { $( $(#[doc = $doc:literal])+ $window:ident ),+ $(,)? } )+) => {
        catalog!(@modules 0u16; $( $actor { $( $(#[doc = $doc])+ $window ),+ } )+);
        /// Every point, in declaration order.
        pub static ALL: &[&Point] = &[ $( $( &$actor::$window ),+ ),+ ];
    };
    (@modules $start:expr; ) => {};
    (@modules $start:expr; $actor:ident { $( $(#[doc = $doc:literal])+ $window:ident ),+ } $($rest:tt)*) => {
        #[allow(non_upper_case_globals)]
        #[doc = concat!("Points reached by the `", stringify!($actor), "` actor.")]
        pub mod $actor {
            use super::Point;
            catalog!(@points $actor; $start; $( $(#[doc = $doc])+ $window ),+);
        }
        catalog!(@modules $start + catalog!(@count $($window)+); $($rest)*);
    };
    (@points $actor:ident; $i:expr; $(#[doc = $doc:literal])+ $window:ident $(, $( $(#[doc = $rdoc:literal])+ $rwindow:ident ),+ )?) => {
        $(#[doc = $doc])+
        pub const $window: Point = Point {
            name: concat!(stringify!($actor), ".", stringify!($window)),
            index: $i,
            doc: concat!($($doc),+),
        };
        $( catalog!(@points $actor; $i + 1u16; $( $(#[doc = $rdoc])+ $rwindow ),+); )?
    };
    (@count) => { 0u16 };
    (@count $head:ident $($tail:ident)*) => { 1u16 + catalog!(@count $($tail)*) };
}

catalog! {
    main {
        /// The interrupt path is ready (legacy: SIGINT handler installed; reference: signals
        /// blocked and signalfd open). Q4's window opens here.
        handler_installed,
        /// The child exists (spawn returned), before its identity is published to other actors.
        spawned,
        /// The child's identity is published (legacy: CHILD_PID stored; reference: pidfd held).
        /// Q4's window closes here.
        pid_stored,
        /// The main child's status was collected: from here its PID may be reused (Q1).
        reaped,
        /// The stop reason was decided (Q3: legacy reads FORCE_KILLED here).
        classified,
    }
    escalation {
        /// An escalation path decided to kill and holds the PID it will signal (Q1, Q3).
        pid_loaded,
        /// Just before FORCE_KILLED is stored (legacy global_atomics, Q3).
        before_force_flag,
        /// Just before SIGKILL is sent.
        before_kill,
        /// SIGKILL was sent (the kill call returned).
        kill_sent,
    }
    duration {
        /// The duration timer fired, before the stop signal is sent.
        expired,
    }
    signal {
        /// An interrupt handler was entered (async-signal context in legacy designs).
        handler_entered,
        /// The interrupt was forwarded to the child, or the design decided not to.
        forwarded,
    }
    poll {
        /// One iteration of a state-polling loop (unbounded_poll, polling_fix).
        iteration,
    }
    reaper {
        /// A reaper woke up (SIGCHLD or readiness).
        woke,
        /// A reaper collected one status.
        reaped,
    }
    wrapper {
        /// A wrapper took its lock.
        lock_taken,
        /// The wrapped program was launched (exec, or a background child).
        launched,
        /// The wrapper's signal traps are installed (exec_under_lock's later fix).
        traps_installed,
    }
    lab {
        /// The lab's adapter: the design under test returned its report (the lab can order a
        /// design's late threads before it, e.g. `escalation.kill_sent < lab.design_returned`).
        design_returned,
    }
    sweep {
        /// After the main child exited, just before the tree's leftovers are killed (a SIGKILL
        /// to its group, or cgroup.kill). Not an escalation: the child's own end is decided.
        /// G1's window when the child was already reaped (legacy group_kill_after_reap).
        before_kill,
        /// The sweep's kill call returned.
        kill_sent,
    }
    preexec {
        /// In the new child, between the fork (or clone) and its pre-exec steps, before
        /// PR_SET_PDEATHSIG: P1's window (the parent may die here, unseen by the child).
        entered,
    }
    spawner {
        /// A short-lived thread that started the child is about to return and exit: from its
        /// exit on, PR_SET_PDEATHSIG treats the child's parent as dead (P2).
        exiting,
    }
    output {
        /// The child is gone (or killed); the design starts reading its captured output to
        /// the end (H1: a grandchild holding the pipe keeps EOF away).
        drain_started,
        /// The captured output reached EOF (every writer closed the pipe).
        eof,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_positions_and_names_are_unique() {
        for (i, p) in ALL.iter().enumerate() {
            assert_eq!(usize::from(p.index), i, "{}", p.name);
            assert_eq!(by_name(p.name).map(|q| q.index), Some(p.index));
        }
        assert_eq!(main::reaped.name, "main.reaped");
        assert_eq!(escalation::pid_loaded.actor(), "escalation");
    }
}
