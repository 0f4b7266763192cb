//! Without the `hooks` feature there is no controller: the environment is not read and the
//! wrapper runs its replica unscheduled.

/// Nothing armed (this build has no hooks).
#[derive(Debug)]
pub struct EnvArmed;

/// Does nothing: this build has no hooks.
pub fn arm_from_env() -> EnvArmed {
    EnvArmed
}

impl EnvArmed {
    /// Does nothing.
    pub fn finish(self) {}
}
