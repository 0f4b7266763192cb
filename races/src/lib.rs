//! races (skeleton).
