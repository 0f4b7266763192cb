//! racelab-supervisor (skeleton).
