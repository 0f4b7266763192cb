use crate::common::{Running, wait_for_threads};

// The SIGINT-escalation thread is spawned after CHILD_PID is stored: once it exists, the signal
// cannot fall into Q4's window.
crate::piano::shared_tests!("global-atomics", |run: &Running| wait_for_threads(run.pid(), 2));
