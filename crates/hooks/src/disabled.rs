//! The `hooks` feature is off: the controller does not exist, and the two calls that designs
//! make outside `point!` are no-ops that compile to nothing.

/// Without the `hooks` feature: does nothing (see the feature's `bind_thread`).
#[inline(always)]
pub fn bind_thread(_actors: &[&'static str]) {}

/// Without the `hooks` feature: does nothing (see the feature's `note`).
#[inline(always)]
pub fn note(_actor: &str, _detail: String) {}
