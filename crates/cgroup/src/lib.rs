//! racelab-cgroup (skeleton).
