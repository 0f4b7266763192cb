//! Setting environment variables, which Rust 2024 makes `unsafe` because another thread may
//! read the environment concurrently.

use std::ffi::OsStr;
use std::io;

/// `setenv(key, value)`, only in a process that has exactly one thread (checked), where no
/// concurrent reader can exist. The lab's init uses it to mark the sandbox for its children.
pub fn set_single_threaded(key: &str, value: impl AsRef<OsStr>) -> io::Result<()> {
    crate::ns::ensure_single_threaded("setenv")?;
    // SAFETY: the process has one thread (checked above), so nothing reads or writes the
    // environment concurrently with this call.
    unsafe { std::env::set_var(key, value) };
    Ok(())
}
