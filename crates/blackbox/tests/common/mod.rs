//! What the black-box tests share.

use std::path::PathBuf;

/// piano 0.14.0 where `scripts/install-programs` (and .ci/run) puts it: `programs/` of this
/// build's target directory, found from the test binary (`<target>/<profile>/deps/<test>`), so
/// a fresh clone, a `CARGO_TARGET_DIR` and nextest all look where the lab itself looks.
pub fn piano_0_14_0() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe.ancestors().nth(3).expect("<target>/<profile>/deps/<test>");
    target.join("programs/piano-0.14.0/bin/piano")
}
