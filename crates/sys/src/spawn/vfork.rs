//! The vfork style (the default): `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` on a private
//! stack, as glibc's `posix_spawn` does. Its own file because of what it shares: the child runs
//! on the parent's memory, with every signal blocked, until it execs, and hands its failure back
//! through a record in that memory.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::child::{Parent, child_pre_exec, reap_failed};
use super::request::{SpawnError, SpawnRequest, Spawned};

/// What the vfork-style child shares with its parent: its inputs, and where it leaves the
/// failed step and errno. The parent reads `failed` only after `clone` returned, which with
/// `CLONE_VFORK` is after the child exec'd or exited.
#[repr(C)]
struct VforkShared<'a, 'r> {
    req: &'a SpawnRequest<'r>,
    argv: *const *const libc::c_char,
    parent_pid: Parent,
    /// `NO_FAILURE`, or the index in [`STEPS`] of the step that failed.
    failed: u8,
    errno: i32,
}

const NO_FAILURE: u8 = u8::MAX;

/// Stack for the vfork-style child: what `child_pre_exec` and `execvp` need (`execvp` copies
/// PATH entries and, for a script, argv onto the stack), with a wide margin.
fn vfork_stack_size(argc: usize, hook: bool) -> usize {
    let path = std::env::var_os("PATH").map_or(0, |p| p.len());
    // A child hook is ordinary code (the lab's points, which may talk to the lab): room for it.
    let hook_room = if hook { 256 * 1024 } else { 0 };
    let want = 64 * 1024 + 2 * path + 16 * (argc + 2) + hook_room;
    want.next_multiple_of(4096)
}

/// Vfork style: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` on a private stack.
pub(super) fn spawn_vforked(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    parent_pid: Parent,
) -> Result<Spawned, SpawnError> {
    let size = vfork_stack_size(argv.len(), req.child_hook.is_some());
    let guard = 4096;
    // SAFETY: a fresh anonymous private mapping at an address of the kernel's choosing; nothing
    // aliases it. The lowest page stays PROT_NONE as a guard against a stack overflow.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size + guard,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(SpawnError::Clone(io::Error::last_os_error()));
    }
    let unmap = |base: *mut libc::c_void| {
        // SAFETY: `base` is the mapping made above, of this length, no longer used by anyone
        // (the child has exec'd or exited: CLONE_VFORK returned).
        unsafe { libc::munmap(base, size + guard) };
    };
    // SAFETY: `base + guard .. base + guard + size` lies inside the mapping made above.
    let stack_ok = unsafe {
        libc::mprotect(
            base.cast::<u8>().add(guard).cast(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } == 0;
    if !stack_ok {
        let e = io::Error::last_os_error();
        unmap(base);
        return Err(SpawnError::Clone(e));
    }
    // SAFETY: one past the end of the mapping: the initial stack pointer (stacks grow down);
    // the mapping's length is a multiple of the page size, so the top is 16-byte aligned.
    let top = unsafe { base.cast::<u8>().add(guard + size) };

    let mut shared =
        VforkShared { req, argv: argv.as_ptr(), parent_pid, failed: NO_FAILURE, errno: 0 };
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    if req.new_pid_namespace {
        flags |= libc::CLONE_NEWPID;
    }
    let mut pidfd: libc::c_int = -1;

    // Every signal blocked across the clone: the child runs on our memory, and a handler of
    // ours must never run in it. The child resets handlers to SIG_DFL before it unblocks. Raw
    // rt_sigprocmask, as glibc's posix_spawn does: glibc's pthread_sigmask would leave its
    // internal signals 32 and 33 open.
    let all: u64 = !0;
    let mut old_mask: u64 = 0;
    // SAFETY: rt_sigprocmask with 8-byte kernel sigsets, both local and live for the call.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old_mask as *mut u64,
            8usize,
        )
    };
    // SAFETY: `vfork_child` runs on the fresh stack `top` with `shared` as its argument and never
    // returns (exec or _exit). CLONE_VFORK suspends this thread until then, so `shared`, `req`,
    // `argv` and the stack outlive the child's use of them. With CLONE_PIDFD the kernel stores
    // the pidfd in `pidfd` (glibc passes it as the parent_tid argument).
    let ret = unsafe {
        libc::clone(
            vfork_child,
            top.cast(),
            flags,
            (&mut shared as *mut VforkShared<'_, '_>).cast(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_err = (ret < 0).then(io::Error::last_os_error);
    // SAFETY: restores the mask saved above (same raw call, same sizes).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old_mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    unmap(base);
    if let Some(e) = clone_err {
        return Err(SpawnError::Clone(e));
    }
    // SAFETY: CLONE_PIDFD made the kernel store a fresh pidfd, owned by nobody else, in `pidfd`.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // SAFETY: the child is done with `shared` (exec'd or exited); volatile because the writes
    // came from another task the compiler cannot see.
    let (failed, errno) = unsafe {
        (std::ptr::read_volatile(&shared.failed), std::ptr::read_volatile(&shared.errno))
    };
    if failed == NO_FAILURE {
        return Ok(Spawned { pid: ret, pidfd });
    }
    Err(reap_failed(&pidfd, failed, errno))
}

/// The vfork-style child. Never returns.
extern "C" fn vfork_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `VforkShared`, alive and untouched by the suspended parent
    // until this task execs or exits.
    let shared = unsafe { &mut *arg.cast::<VforkShared<'_, '_>>() };
    // SAFETY: `argv` points to the parent's NUL-terminated pointer array (see `spawn`).
    let argv = unsafe { std::slice::from_raw_parts(shared.argv, shared.req.argv.len() + 1) };
    let (step, errno) = child_pre_exec(shared.req, argv, shared.parent_pid, true);
    // SAFETY: plain stores into the shared record, then _exit (async-signal-safe, no return).
    unsafe {
        std::ptr::write_volatile(&mut shared.errno, errno);
        std::ptr::write_volatile(&mut shared.failed, step);
        libc::_exit(127)
    }
}
