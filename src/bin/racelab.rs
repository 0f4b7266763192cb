//! racelab: the lab's command line (skeleton).
fn main() {}
