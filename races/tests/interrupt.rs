//! An interrupted lab leaves nothing behind (issue #22): this test binary re-executes itself as
//! the front end (a libtest binary replaying O2 against the reference, as `cargo test -p races`
//! does), waits until a replay holds its child frozen in the v1 freezer, interrupts it with
//! SIGINT (once to the front end alone, which must pass it on; once to its whole process
//! group, as a Ctrl-C does), and checks that within
//! [`racelab_sandbox::interrupt::INTERRUPT_BOUND`] the front end is gone, killed by that
//! signal, and with it every process of the replays' PID namespaces (alive or zombie), every
//! process of their mount namespaces (so their mounts), every freezer group and v2 leaf their
//! processes made, and no mount was added to this namespace. Then the one exception: a SIGKILL
//! to the group mid-O2 leaves the frozen child and what waits for it, which the next lab's
//! start collects, within the same bound.
//!
//! No sleep: the freeze is seen through inotify on the freezer hierarchy (a group's creation,
//! then the write of its freezer.state), the front end's end through its pidfd.

use std::collections::BTreeSet;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use racelab_sandbox::interrupt::INTERRUPT_BOUND;
use rustix::fs::inotify;

/// Set in the environment of the re-executed test binary: it is the front end.
const HELPER_ENV: &str = "RACELAB_INTERRUPT_TEST_FRONT_END";

/// How long the front end may take to reach a frozen child (its first O2 replay, unless a
/// replay did not freeze: then the next).
const FREEZE_WITHIN: Duration = Duration::from_secs(30);

/// The front end: replays O2 against the reference until interrupted (or, run by hand without
/// the test around it, a bounded number of times), through a runner server, or with
/// `RACELAB_INTERRUPT_TEST_FRONT_END=exec` through an exec'd runner per replay.
#[test]
#[ignore = "the front end of the interrupt test, which runs it"]
fn front_end_replays_o2_until_interrupted() {
    let Some(mode) = std::env::var_os(HELPER_ENV) else { return };
    let race = races::catalog::find("O2").expect("O2 in the catalog");
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_races-runner"));
    let design = races::catalog::DesignId::Reference;
    let mut replayer = races::Replayer::new(&runner, races::RunAs::Caller);
    for _ in 0..20 {
        if mode == "exec" {
            races::replay_once(&runner, race, design, None);
        } else {
            replayer.replay(race, design, None);
        }
    }
}

#[test]
fn an_interrupt_mid_o2_leaves_nothing_behind_and_a_sigkill_only_what_the_next_lab_collects() {
    let root = rustix::process::geteuid().is_root();
    if racelab_sandbox::skip_unless(root, "root", "the v1 freezer (O2) needs root")
        || racelab_sandbox::skip_unless(
            racelab_cgroup::freezer_v1_usable(),
            "the v1 freezer",
            "the interrupt must come while O2 holds its child frozen",
        )
    {
        return;
    }
    // One after the other, the SIGKILL last: a lab's start collects what dead labs left, and
    // this test process becomes a subreaper for the SIGKILL.
    for runner in ["server", "exec"] {
        for whole_group in [false, true] {
            interrupt_mid_o2(runner, whole_group);
        }
    }
    sigkill_mid_o2();
}

/// A front end started by [`start_front_end`], holding a replay's child frozen.
struct Frozen {
    front: std::process::Child,
    front_fd: OwnedFd,
    front_pid: i32,
    /// The frozen group's name.
    group: String,
    tree: Tree,
}

/// Starts the front end (its replays through `runner`: "server" or "exec") in a process group
/// of its own and waits until one of its replays holds its child frozen.
fn start_front_end(how: &str, runner: &str) -> Frozen {
    let mounts = racelab_cgroup::Mounts::probe().expect("cgroup mounts");
    let freezer_root = mounts.freezer_v1.clone().expect("a v1 freezer (checked)");
    let watch = FreezerWatch::new(&freezer_root);
    let mut front = Command::new(std::env::current_exe().expect("this test binary"));
    front
        .args([
            "--exact",
            "front_end_replays_o2_until_interrupted",
            "--ignored",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, runner)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0);
    let mut front = front.spawn().expect("start the front end");
    let front_pid = front.id() as i32;
    let front_fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(front_pid).expect("pid"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd of the front end");
    let group = match watch.wait_frozen(front_pid, &front_fd, Instant::now() + FREEZE_WITHIN) {
        Ok(g) => g,
        Err(why) => {
            let _ = front.kill();
            let _ = front.wait();
            panic!("{how}: {why}");
        }
    };
    let tree = Tree::of(front_pid);
    assert!(!tree.pid_namespaces.is_empty(), "{how}: no replay namespace under the front end");
    Frozen { front, front_fd, front_pid, group, tree }
}

/// One interrupt of a front end whose replays run in `runner` ("server": a runner server;
/// "exec": an exec'd runner per replay).
fn interrupt_mid_o2(runner: &str, whole_group: bool) {
    let how = format!(
        "SIGINT to {} (runner: {runner})",
        if whole_group { "the process group" } else { "the front end" }
    );
    let mounts = racelab_cgroup::Mounts::probe().expect("cgroup mounts");
    let mounts_before = mount_points();
    let Frozen { mut front, front_fd, front_pid, group, tree } = start_front_end(&how, runner);

    let signalled = Instant::now();
    let signal_ticks = ticks_now();
    if whole_group {
        let pgid = rustix::process::Pid::from_raw(front_pid).expect("pgid");
        rustix::process::kill_process_group(pgid, rustix::process::Signal::INT).expect("kill");
    } else {
        rustix::process::pidfd_send_signal(&front_fd, rustix::process::Signal::INT).expect("kill");
    }
    let ended = readable(&front_fd, INTERRUPT_BOUND);
    let took = signalled.elapsed();
    if !ended {
        let _ = front.kill();
        let _ = front.wait();
        panic!(
            "{how}: the front end still ran {took:?} after the signal (bound {INTERRUPT_BOUND:?})"
        );
    }
    let status = front.wait().expect("reap the front end");
    // Checked at once: everything must be gone by the time the front end is.
    let left = tree.what_is_left(&mounts, signal_ticks);
    let mounts_added: Vec<String> = mount_points().difference(&mounts_before).cloned().collect();
    eprintln!("{how}: the front end (frozen group {group}) ended {took:?} after the signal");
    assert_eq!(status.signal(), Some(libc_sigint()), "{how}: the front end's status {status:?}");
    assert!(left.is_empty(), "{how}: left behind {took:?} after the signal: {left:#?}");
    assert!(mounts_added.is_empty(), "{how}: mounts added here: {mounts_added:?}");
}

/// The one exception (README, "Safety of the lab"): a SIGKILL of the whole group mid-O2 leaves
/// a frozen child and what waits for it; the next lab's start collects it, and then nothing of
/// the killed lab is left. This test process is the subreaper of the killed tree, so that the
/// zombies the SIGKILL orphans come to it (not to the system's init) and are reaped here.
fn sigkill_mid_o2() {
    let how = "SIGKILL to the process group (runner: server)";
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).expect("subreaper");
    let mounts = racelab_cgroup::Mounts::probe().expect("cgroup mounts");
    let Frozen { mut front, front_fd, front_pid, group, tree } = start_front_end(how, "server");
    // Pidfds of the whole tree before the SIGKILL: each is readable once its process exited.
    let pidfds: Vec<(i32, OwnedFd)> = tree
        .processes
        .iter()
        .filter(|&&(pid, _)| pid != front_pid)
        .filter_map(|&(pid, _)| {
            let p = rustix::process::Pid::from_raw(pid)?;
            Some((pid, rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()?))
        })
        .collect();
    let pgid = rustix::process::Pid::from_raw(front_pid).expect("pgid");
    let signal_ticks = ticks_now();
    rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL).expect("kill");
    assert!(readable(&front_fd, INTERRUPT_BOUND), "{how}: the front end survived a SIGKILL");
    front.wait().expect("reap the front end");
    // What stays until the next lab: the frozen child, what waits for it, their cgroups.
    // Not asserted: another lab on this machine may start meanwhile and collect it first.
    let stays = tree.what_is_left(&mounts, signal_ticks);

    // The next lab's start: it collects what dead labs left.
    let collected_at = Instant::now();
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_races-runner"));
    drop(racelab_sandbox::Server::start(racelab_sandbox::Server::command(&runner)).expect("a lab"));
    for (pid, fd) in &pidfds {
        assert!(
            readable(fd, INTERRUPT_BOUND.saturating_sub(collected_at.elapsed())),
            "{how}: process {pid} still ran {:?} after the next lab's start",
            collected_at.elapsed()
        );
        // Ours since their parents died (subreaper): the runner server, the replay's init.
        // The others are reaped in their namespace, which ends with its init.
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(fd.as_fd()),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
        );
    }
    let left = tree.what_is_left(&mounts, signal_ticks);
    eprintln!(
        "{how}: left until the next lab (frozen group {group}): {stays:?}; all collected {:?} \
         after its start",
        collected_at.elapsed()
    );
    assert!(left.is_empty(), "{how}: left after the next lab's start: {left:#?}");
}

fn libc_sigint() -> i32 {
    rustix::process::Signal::INT.as_raw()
}

/// Now, in the unit of a process's start time (field 22 of its stat): clock ticks since boot,
/// `USER_HZ` (100 on Linux) a second. One tick later than now, rounded: a bound, not a stamp.
fn ticks_now() -> u64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("uptime");
    let secs: f64 = text.split_whitespace().next().and_then(|s| s.parse().ok()).expect("uptime");
    (secs * 100.0).ceil() as u64 + 1
}

/// Whether `fd` (a pidfd) becomes readable within `timeout`.
fn readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec::try_from(timeout).expect("timespec");
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// The mount points of this process's mount namespace.
fn mount_points() -> BTreeSet<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines().filter_map(|l| l.split(' ').nth(4)).map(str::to_string).collect()
}

/// inotify on `<freezer>` (for `racelab` to appear) and `<freezer>/racelab` (for groups to
/// appear), and on each group's freezer.state (for the write that freezes it).
struct FreezerWatch {
    fd: OwnedFd,
    root: PathBuf,
}

impl FreezerWatch {
    fn new(root: &Path) -> FreezerWatch {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .expect("inotify");
        inotify::add_watch(&fd, root, inotify::WatchFlags::CREATE | inotify::WatchFlags::ONLYDIR)
            .expect("watch the freezer root");
        FreezerWatch { fd, root: root.to_path_buf() }
    }

    fn base(&self) -> PathBuf {
        self.root.join(racelab_cgroup::BASE_NAME)
    }

    /// Waits until a group under `racelab` is FROZEN with a process of `front`'s tree inside;
    /// returns its name. Fails when `front` ends first or `deadline` passes.
    fn wait_frozen(
        &self,
        front: i32,
        front_fd: &OwnedFd,
        deadline: Instant,
    ) -> Result<String, String> {
        let mut base_watched = false;
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        loop {
            // Watch first, then look: a change between the two is seen by the look, one after
            // both by the watch.
            if !base_watched
                && inotify::add_watch(&self.fd, self.base(), inotify::WatchFlags::CREATE).is_ok()
            {
                base_watched = true;
            }
            if base_watched {
                for group in child_dirs(&self.base()) {
                    let state = group.join("freezer.state");
                    let _ = inotify::add_watch(&self.fd, &state, inotify::WatchFlags::MODIFY);
                    let frozen =
                        std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN");
                    if frozen && procs(&group).iter().any(|&p| descends_from(p, front)) {
                        return Ok(group.file_name().unwrap_or_default().to_string_lossy().into());
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no replay froze its child within {FREEZE_WITHIN:?}"));
            }
            let ts = rustix::time::Timespec::try_from(left).expect("timespec");
            let mut fds = [
                rustix::event::PollFd::new(&self.fd, rustix::event::PollFlags::IN),
                rustix::event::PollFd::new(front_fd, rustix::event::PollFlags::IN),
            ];
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            if !fds[1].revents().is_empty() {
                return Err("the front end ended before a replay froze its child".into());
            }
            // Drain the events: what changed is looked at again above.
            let mut reader = inotify::Reader::new(&self.fd, &mut buf);
            while reader.next().is_ok() {}
        }
    }
}

fn child_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

fn procs(group: &Path) -> Vec<i32> {
    std::fs::read_to_string(group.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Fields 3.. of /proc/PID/stat (after the command name, which may hold spaces).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(text[text.rfind(')')? + 1..].split_whitespace().map(str::to_string).collect())
}

/// (parent pid, start time) of `pid`.
fn parent_and_start(pid: i32) -> Option<(i32, u64)> {
    let f = stat_fields(pid)?;
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Whether `ancestor` is `pid` or one of its ancestors.
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..16 {
        if pid == ancestor {
            return true;
        }
        match parent_and_start(pid) {
            Some((ppid, _)) if ppid > 0 => pid = ppid,
            _ => return false,
        }
    }
    false
}

fn ns_inode(pid: i32, kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    let text = link.to_string_lossy().into_owned();
    text.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The front end's process tree while a replay holds its child frozen.
struct Tree {
    /// (pid, start time) of every process in it.
    processes: BTreeSet<(i32, u64)>,
    /// The PID namespaces of the replays (not this one).
    pid_namespaces: BTreeSet<u64>,
    /// The mount namespaces of the replays (not this one).
    mount_namespaces: BTreeSet<u64>,
}

impl Tree {
    fn of(front: i32) -> Tree {
        let (own_pid_ns, own_mnt_ns) = (
            ns_inode(std::process::id() as i32, "pid"),
            ns_inode(std::process::id() as i32, "mnt"),
        );
        let mut tree = Tree {
            processes: BTreeSet::new(),
            pid_namespaces: BTreeSet::new(),
            mount_namespaces: BTreeSet::new(),
        };
        for pid in all_pids() {
            if !descends_from(pid, front) {
                continue;
            }
            if let Some((_, start)) = parent_and_start(pid) {
                tree.processes.insert((pid, start));
            }
            tree.pid_namespaces.extend(ns_inode(pid, "pid").filter(|&n| Some(n) != own_pid_ns));
            tree.mount_namespaces.extend(ns_inode(pid, "mnt").filter(|&n| Some(n) != own_mnt_ns));
        }
        tree
    }

    /// What is still there: a process of the tree (alive or zombie), a process in one of its
    /// namespaces, a cgroup one of its processes made. `before`: the signal's time, in clock
    /// ticks since boot ([`ticks_now`]): a namespace's inode is reused once it is freed, so a
    /// process or cgroup started later (another lab's, on this machine) is not the tree's.
    fn what_is_left(&self, mounts: &racelab_cgroup::Mounts, before: u64) -> Vec<String> {
        let mut left = Vec::new();
        for pid in all_pids() {
            let Some((_, start)) = parent_and_start(pid) else { continue };
            let state = stat_fields(pid).and_then(|f| f.first().cloned()).unwrap_or_default();
            if self.processes.contains(&(pid, start)) {
                left.push(format!("process {pid} (state {state}) of the front end's tree"));
            }
            if start > before {
                continue;
            }
            if ns_inode(pid, "pid").is_some_and(|n| self.pid_namespaces.contains(&n)) {
                left.push(format!("process {pid} (state {state}) in a replay's PID namespace"));
            }
            if ns_inode(pid, "mnt").is_some_and(|n| self.mount_namespaces.contains(&n)) {
                left.push(format!("process {pid} (state {state}) in a replay's mount namespace"));
            }
        }
        let bases = [mounts.freezer_base(), mounts.v2_base()];
        for dir in bases.iter().flatten().flat_map(|b| child_dirs(b)) {
            // `<name>.<pid>.<start>.<pidns>.<seq>`: the owner's PID namespace is second from last.
            let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let field = |i: usize| name.rsplit('.').nth(i).and_then(|n| n.parse::<u64>().ok());
            let (pidns, start) = (field(1), field(2));
            if pidns.is_some_and(|n| self.pid_namespaces.contains(&n))
                && start.is_some_and(|s| s <= before)
            {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        left
    }
}
