//! Which program a thread runs, as points name it: the leaf both the session (seccomp
//! notifications) and the tracer (ptrace stops) ask.

/// The program image a thread runs, as syscall points name it: the executable's file name with
/// `-` written `_` (`/usr/bin/dumb-init` is `dumb_init`). `None` when the thread is gone.
pub fn program_label(tid: i32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{tid}/exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    // A binary replaced on disk while running reads as "name (deleted)".
    let name = name.strip_suffix(" (deleted)").unwrap_or(&name).to_string();
    Some(name.replace('-', "_"))
}
