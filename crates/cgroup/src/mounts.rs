//! Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo, and which v2
//! cgroup this process is in, read from /proc/self/cgroup. Nothing is hard-coded: hybrid hosts
//! mount v2 at /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fsutil;

/// The name of the directory racelab owns under each hierarchy's root.
pub const BASE_NAME: &str = "racelab";

const MOUNTINFO: &str = "/proc/self/mountinfo";
const PROC_CGROUP: &str = "/proc/self/cgroup";

/// The cgroup hierarchies visible to this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// Mount point of the cgroup v2 (unified) hierarchy, if mounted.
    pub v2: Option<PathBuf>,
    /// Mount point of the cgroup v1 hierarchy carrying the `freezer` controller, if mounted.
    pub freezer_v1: Option<PathBuf>,
    /// This process's cgroup in the v2 hierarchy, as /proc/self/cgroup says it ("0::/a/b" gives
    /// "/a/b"), relative to the v2 root (of the cgroup namespace).
    pub own_v2: Option<PathBuf>,
}

impl Mounts {
    /// Reads /proc/self/mountinfo and /proc/self/cgroup.
    pub fn probe() -> Result<Mounts> {
        let mountinfo = fsutil::read(Path::new(MOUNTINFO))?;
        // /proc/self/cgroup is absent on kernels without cgroups; that is not an error here.
        let cgroup = std::fs::read_to_string(PROC_CGROUP).unwrap_or_default();
        Ok(Mounts::from_texts(&mountinfo, &cgroup))
    }

    /// Builds the table from the text of a mountinfo file and of a /proc/PID/cgroup file.
    pub fn from_texts(mountinfo: &str, proc_cgroup: &str) -> Mounts {
        let mut mounts = Mounts { own_v2: parse_own_v2(proc_cgroup), ..Mounts::default() };
        for line in mountinfo.lines() {
            let Some(m) = parse_mountinfo_line(line) else { continue };
            // The first mount of each kind wins: later duplicates are usually bind mounts
            // into containers.
            if m.fstype == "cgroup2" && mounts.v2.is_none() {
                mounts.v2 = Some(m.mount_point);
            } else if m.fstype == "cgroup"
                && m.super_options.split(',').any(|o| o == "freezer")
                && mounts.freezer_v1.is_none()
            {
                mounts.freezer_v1 = Some(m.mount_point);
            }
        }
        mounts
    }

    /// The directory of this process's own v2 cgroup (`v2` joined with `own_v2`).
    pub fn own_v2_dir(&self) -> Option<PathBuf> {
        let v2 = self.v2.as_ref()?;
        let own = self.own_v2.as_ref()?;
        Some(v2.join(own.strip_prefix("/").unwrap_or(own)))
    }

    /// `<v2>/racelab`: the default parent for [`crate::Leaf::create`].
    pub fn v2_base(&self) -> Option<PathBuf> {
        self.v2.as_ref().map(|p| p.join(BASE_NAME))
    }

    /// `<freezer>/racelab`: where [`crate::Freezer::create`] puts its groups.
    pub fn freezer_base(&self) -> Option<PathBuf> {
        self.freezer_v1.as_ref().map(|p| p.join(BASE_NAME))
    }
}

struct MountLine {
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_mountinfo_line(line: &str) -> Option<MountLine> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 4 {
        return None;
    }
    Some(MountLine {
        mount_point: unescape(fields[4]),
        fstype: fields[sep + 1].to_owned(),
        super_options: fields[sep + 3].to_owned(),
    })
}

/// Undoes the kernel's octal escapes in mountinfo paths (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash).
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The "0::/path" line of /proc/PID/cgroup.
fn parse_own_v2(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|l| l.strip_prefix("0::")).map(|p| PathBuf::from(p.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_has_both_v2_and_the_v1_freezer() {
        let m = Mounts::from_texts(HYBRID, "6:freezer:/\n0::/\n");
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(m.freezer_v1.as_deref(), Some(Path::new("/sys/fs/cgroup/freezer")));
        assert_eq!(m.own_v2.as_deref(), Some(Path::new("/")));
        assert_eq!(m.own_v2_dir().as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(m.v2_base().as_deref(), Some(Path::new("/sys/fs/cgroup/unified/racelab")));
    }

    #[test]
    fn pure_v2_host_has_no_freezer() {
        let text = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - \
                    cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let m = Mounts::from_texts(text, "0::/user.slice/user-1000.slice/session-2.scope\n");
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(m.freezer_v1, None);
        assert_eq!(
            m.own_v2_dir().as_deref(),
            Some(Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"))
        );
    }

    #[test]
    fn v1_only_host_has_a_freezer_but_no_v2() {
        let text = "25 20 0:22 / /sys/fs/cgroup/freezer rw shared:9 - cgroup cgroup rw,freezer\n\
                    26 20 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let m = Mounts::from_texts(text, "4:freezer:/\n3:cpu,cpuacct:/\n");
        assert_eq!(m.v2, None);
        assert_eq!(m.own_v2, None);
        assert_eq!(m.freezer_v1.as_deref(), Some(Path::new("/sys/fs/cgroup/freezer")));
    }

    #[test]
    fn host_without_cgroups_has_nothing() {
        let text = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                    23 22 0:5 / /proc rw - proc proc rw\n";
        assert_eq!(Mounts::from_texts(text, ""), Mounts::default());
    }

    #[test]
    fn octal_escapes_in_mount_points_are_decoded() {
        let text = "41 31 0:38 / /mnt/my\\040cg\\134x rw - cgroup2 none rw\n\
                    42 31 0:39 / /mnt/frz\\011t rw - cgroup cgroup rw,freezer\n";
        let m = Mounts::from_texts(text, "");
        assert_eq!(m.v2.as_deref(), Some(Path::new("/mnt/my cg\\x")));
        assert_eq!(m.freezer_v1.as_deref(), Some(Path::new("/mnt/frz\tt")));
    }

    #[test]
    fn a_freezer_word_inside_another_option_is_not_the_freezer() {
        let text = "42 31 0:39 / /x rw - cgroup cgroup rw,name=nofreezer\n";
        assert_eq!(Mounts::from_texts(text, "").freezer_v1, None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n1 2 3\n41 31 0:38 / /ok rw - cgroup2 cgroup2 rw\n";
        assert_eq!(Mounts::from_texts(text, "").v2.as_deref(), Some(Path::new("/ok")));
    }
}
