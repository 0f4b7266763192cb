//! racelab-bench-child: the workload of the benches. Small and exec'd by every strategy alike,
//! so each strategy pays the same exit cost for the same process.
//!
//! `racelab-bench-child stamp-exit FD DELAY_US`: sleep DELAY_US (the supervisor is waiting by
//! then), store CLOCK_MONOTONIC into the memfd FD (mapped shared), `_exit(0)`.
//! `racelab-bench-child tree N FD`: fork N-1 children that each write one byte to FD and block
//! in pause(2); write one byte itself and block too. N bytes on FD = the tree is built.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use racelab_sys::bench::{SharedStamp, exit_now, fork_paused};

fn usage() -> ! {
    eprintln!("usage: racelab-bench-child stamp-exit FD DELAY_US | tree N FD");
    exit_now(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage())
}

fn fail(what: &str, e: std::io::Error) -> ! {
    eprintln!("racelab-bench-child: {what}: {e}");
    exit_now(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("stamp-exit") => {
            let fd: i32 = arg(&args, 1);
            let delay: u64 = arg(&args, 2);
            let fd = inherited(fd);
            let stamp = SharedStamp::from_fd(fd).unwrap_or_else(|e| fail("mmap stamp", e));
            std::thread::sleep(Duration::from_micros(delay));
            stamp.store_now();
            // The store above is the last thing this process does: no destructors, no flush.
            exit_now(0)
        }
        Some("tree") => {
            let n: usize = arg(&args, 1);
            let fd: i32 = arg(&args, 2);
            let ready = inherited(fd);
            for _ in 1..n {
                if let Err(e) = fork_paused(ready) {
                    fail("fork", e);
                }
            }
            if rustix::io::write(ready, b"r") != Ok(1) {
                fail("write ready", std::io::Error::other("short write"));
            }
            loop {
                // Blocked until killed; pause(2) without libc: sleep forever in big steps.
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => usage(),
    }
}

/// An fd the parent left open across exec for us, named on the command line.
fn inherited(fd: i32) -> BorrowedFd<'static> {
    racelab_sys::bench::inherited_fd(fd).unwrap_or_else(|e| fail("inherited fd", e))
}
