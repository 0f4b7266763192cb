//! racelab-legacy (skeleton).
