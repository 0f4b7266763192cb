//! What both piano replicas (before and after the fix) do alike outside their race windows:
//! each body runs against the design named by its `mode`; [`shared_tests!`] makes them the tests
//! of `global_atomics.rs` and `polling_fix.rs`.

use nix::sys::signal::Signal;

use crate::common::{Running, over_workload};

pub const WARNING: &str =
    "warning: program did not respond to SIGTERM -- terminated after --kill-timeout";

/// The duration and grace of the runs that stop by their duration.
const DURATION_AND_GRACE: [&str; 4] = ["--duration-ms", "200", "--kill-timeout-ms", "200"];

pub fn normal_exit_code_passes_through(mode: &str) {
    let mut run = Running::start(mode, &over_workload(&[], &["--command", "exit 7"]));
    assert_eq!(run.wait().code(), Some(7));
    assert!(!run.stderr_text().contains("warning:"), "{}", run.stderr_text());
}

pub fn duration_stop_exits_zero_with_no_warning(mode: &str) {
    let mut run = Running::start(mode, &over_workload(&DURATION_AND_GRACE, &[]));
    run.expect_stdout("ready");
    run.expect_stdout("sig 15");
    assert_eq!(run.wait().code(), Some(0));
    assert!(!run.stderr_text().contains("warning:"), "{}", run.stderr_text());
}

/// `before_interrupt` waits until the interrupt can no longer fall into a race window.
pub fn sigint_terminates_child_with_sigterm_and_exits_130(
    mode: &str,
    before_interrupt: impl FnOnce(&Running),
) {
    // Default kill timeout (10 s): the SIGINT escalation stays far away.
    let mut run = Running::start(mode, &over_workload(&[], &[]));
    run.expect_stdout("ready");
    before_interrupt(&run);
    run.signal(Signal::SIGINT);
    run.expect_stdout("sig 15");
    assert_eq!(run.wait().code(), Some(130));
}

pub fn kill_timeout_escalation_force_kills_a_term_ignoring_child_and_warns(mode: &str) {
    // The child ignores SIGTERM and blocks: it cannot exit inside the escalation window.
    let mut run = Running::start(mode, &over_workload(&DURATION_AND_GRACE, &["--ignore-term"]));
    run.expect_stdout("ready");
    assert_eq!(run.wait().code(), Some(0));
    assert!(run.stderr_text().contains(WARNING), "{}", run.stderr_text());
}

/// The shared tests, against the replica `$mode`; `$before_interrupt` (a `fn(&Running)`) waits
/// until an interrupt can no longer fall into one of its race windows.
macro_rules! shared_tests {
    ($mode:expr, $before_interrupt:expr) => {
        #[test]
        fn normal_exit_code_passes_through() {
            crate::piano::normal_exit_code_passes_through($mode);
        }

        #[test]
        fn duration_stop_exits_zero_with_no_warning() {
            crate::piano::duration_stop_exits_zero_with_no_warning($mode);
        }

        #[test]
        fn sigint_terminates_child_with_sigterm_and_exits_130() {
            crate::piano::sigint_terminates_child_with_sigterm_and_exits_130(
                $mode,
                $before_interrupt,
            );
        }

        #[test]
        fn kill_timeout_escalation_force_kills_a_term_ignoring_child_and_warns() {
            crate::piano::kill_timeout_escalation_force_kills_a_term_ignoring_child_and_warns(
                $mode,
            );
        }
    };
}
pub(crate) use shared_tests;
