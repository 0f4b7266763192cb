//! Runs the unit tests of the report generator (src/report.rs of the root package, compiled
//! into the `racelab` binary by the lead) from this package, so they run without the binary.
#[path = "../../src/report.rs"]
#[allow(dead_code)]
mod report;
