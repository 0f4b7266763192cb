//! Kill latency of a tree of sleeping children moved into a leaf: cgroup.kill versus the
//! pidfd walk, measured from the kill until every process has exited (by pidfd). Spawning,
//! reaping and leaf setup are outside the timed part. Needs root (writable cgroup v2).

use std::os::fd::OwnedFd;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use racelab_cgroup::{Leaf, Mounts};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

fn spawn_in(leaf: &Leaf, n: usize) -> Vec<(Child, OwnedFd)> {
    (0..n)
        .map(|_| {
            let child = Command::new("/bin/sleep").arg("1000").spawn().expect("spawn sleep");
            let pid = Pid::from_raw(child.id() as i32).expect("pid");
            let fd = pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open");
            leaf.add(child.id() as i32).expect("add to leaf");
            (child, fd)
        })
        .collect()
}

fn wait_all(children: &[(Child, OwnedFd)]) {
    let ts = rustix::time::Timespec::try_from(Duration::from_secs(5)).expect("timespec");
    for (_, fd) in children {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        assert_eq!(poll(&mut fds, Some(&ts)).expect("poll"), 1, "child did not die");
    }
}

fn bench_kill(c: &mut Criterion) {
    if !racelab_cgroup::v2_writable() {
        println!("SKIP: needs cgroup v2 writable: benches create leaves");
        return;
    }
    let base = Mounts::probe().expect("mounts").v2_base().expect("v2 base");
    let mut group = c.benchmark_group("kill_tree");
    group.sample_size(10).measurement_time(Duration::from_secs(3));
    for n in [1usize, 10] {
        for walk in [false, true] {
            let name = format!("{}/{n}", if walk { "walk" } else { "cgroup.kill" });
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let leaf = Leaf::create(&base, "bench").expect("leaf");
                        let mut children = spawn_in(&leaf, n);
                        let t = Instant::now();
                        if walk {
                            leaf.kill_by_walk(Instant::now() + Duration::from_secs(5))
                                .expect("walk");
                        } else {
                            leaf.kill().expect("cgroup.kill");
                        }
                        wait_all(&children);
                        total += t.elapsed();
                        for (child, _) in &mut children {
                            child.wait().expect("reap");
                        }
                        leaf.remove(Instant::now() + Duration::from_secs(5)).expect("remove");
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_kill);
criterion_main!(benches);
