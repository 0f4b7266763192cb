//! What a pidfd of a process that is NOT our child reports when its parent reaps it: the lab
//! needs a "reaped by the target" event (its PID may be recycled from then on) without
//! polling /proc. Answer on Linux 6.18, pinned here: the pidfd reports POLLIN at exit, then
//! POLLHUP once the parent has reaped it, and the reap itself wakes pollers, so waiting for
//! POLLHUP alone (epoll with EPOLLHUP only, or poll with no requested events) is that event.

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{DEADLINE, Lines, PROBE, QUIET, proc_state, wait_fd};
use rustix::event::{PollFlags, epoll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// Waits on `ep` up to `timeout` and returns the events of the one registered fd.
fn epoll_events(ep: &OwnedFd, timeout: Duration) -> Option<epoll::EventFlags> {
    let mut events = Vec::with_capacity(1);
    let ts = rustix::event::Timespec::try_from(timeout).unwrap();
    epoll::wait(ep, rustix::buffer::spare_capacity(&mut events), Some(&ts)).unwrap();
    events.first().map(|e| e.flags)
}

#[test]
fn a_grandchild_pidfd_reports_pollin_at_exit_and_wakes_with_pollhup_at_reap() {
    // A = the probe (our child); B = A's child, which pauses until A kills it.
    let mut a = Command::new(PROBE)
        .arg("fork-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_a = a.stdin.take().unwrap();
    let mut from_a = Lines::new(a.stdout.take().unwrap());
    let b: i32 = from_a.expect("child ")[6..].parse().unwrap();
    // B cannot be reaped before A reads "reap": the pid names B here.
    let pidfd = pidfd_open(Pid::from_raw(b).unwrap(), PidfdFlags::empty()).unwrap();

    // Registered before the reap, for HUP only: only a wake-up after this point delivers it.
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    epoll::add(&ep, &pidfd, epoll::EventData::new_u64(1), epoll::EventFlags::HUP).unwrap();

    writeln!(to_a, "kill").unwrap();
    from_a.expect("killed");
    let at_exit = wait_fd(&pidfd, PollFlags::IN, DEADLINE);
    assert_eq!(at_exit, PollFlags::IN, "exited but unreaped: POLLIN only");
    assert_eq!(proc_state(b), 'Z');
    assert_eq!(epoll_events(&ep, QUIET), None, "HUP before the reap");
    // poll with no requested events sleeps through POLLIN: it waits for POLLHUP alone.
    assert_eq!(wait_fd(&pidfd, PollFlags::empty(), Duration::ZERO), PollFlags::empty());

    writeln!(to_a, "reap").unwrap();
    let woken = epoll_events(&ep, DEADLINE);
    eprintln!("pidfd of a grandchild, epoll for HUP across its reap: {woken:?}");
    assert_eq!(woken, Some(epoll::EventFlags::HUP), "the reap woke no HUP waiter");
    from_a.expect("reaped");
    let after = wait_fd(&pidfd, PollFlags::IN, Duration::ZERO);
    assert_eq!(after, PollFlags::IN | PollFlags::HUP);

    drop(to_a);
    assert!(a.wait().unwrap().success());
}
