use nix::sys::signal::Signal;

use crate::common::{Running, over_workload};
use crate::piano;

const MODE: &str = "polling-fix";

// The handler needs no PID here: an interrupt at any time after "ready" is forwarded.
piano::shared_tests!(MODE, |_: &Running| {});

#[test]
fn sigint_with_kill_timeout_force_kills_a_term_ignoring_child() {
    let mut run =
        Running::start(MODE, &over_workload(&["--kill-timeout-ms", "200"], &["--ignore-term"]));
    run.expect_stdout("ready");
    run.signal(Signal::SIGINT);
    assert_eq!(run.wait().code(), Some(0));
    assert!(run.stderr_text().contains(piano::WARNING), "{}", run.stderr_text());
}
