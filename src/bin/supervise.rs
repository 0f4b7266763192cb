//! supervise: the reference supervisor as a drop-in binary (skeleton).
fn main() {}
