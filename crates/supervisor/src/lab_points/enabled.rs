//! This build arms the lab's named points (the package was built with its `hooks` feature:
//! `racelab-supervisor-lab`, the lab's copy of these sources).

pub(crate) use racelab_hooks::{bind_thread, point};
