//! Reading and writing cgroup interface files, with errors that name the file.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Reads a whole (small) interface file.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// Writes `data` to an existing interface file in one write(2): cgroup files act on each write
/// separately, and a short write would split a pid.
pub(crate) fn write(path: &Path, data: &str, op: &'static str) -> Result<()> {
    write_raw(path, data).map_err(|e| Error::io(op, path, e))
}

/// Like [`write`] but returns the bare io::Error, for callers that branch on it.
pub(crate) fn write_raw(path: &Path, data: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    let n = file.write(data.as_bytes())?;
    if n != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write to a cgroup file"));
    }
    Ok(())
}

/// Parses a list of pids, one per line (cgroup.procs, tasks).
pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse::<i32>().map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                detail: format!("not a pid: {l:?}"),
            })
        })
        .collect()
}

/// Reads a pid list file.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>> {
    parse_pids(path, &read(path)?)
}

/// Checks a caller-given cgroup name: one path component, printable, short enough to carry
/// the owner suffix within NAME_MAX.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("is . or ..")
    } else if name.len() > 128 {
        Some("longer than 128 bytes")
    } else if name.contains(['/', '\0', '\n']) || name.chars().any(char::is_whitespace) {
        Some("contains '/', NUL or whitespace")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidName { name: name.to_owned(), why }),
        None => Ok(()),
    }
}

/// mkdir that treats "already exists" as success.
pub(crate) fn mkdir_if_absent(path: &Path) -> Result<()> {
    match rustix::fs::mkdir(path, rustix::fs::Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(Error::io("mkdir", path, e.into())),
    }
}

/// Subdirectories of a cgroup directory (its child cgroups).
pub(crate) fn child_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read_dir", path, e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read_dir", path, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_lists_parse_and_ignore_blank_lines() {
        let p = Path::new("x");
        assert_eq!(parse_pids(p, "1\n22\n\n333\n").unwrap(), vec![1, 22, 333]);
        assert!(parse_pids(p, "1\nabc\n").is_err());
    }

    #[test]
    fn names_with_slashes_or_dots_are_refused() {
        for bad in ["", ".", "..", "a/b", "a b", "a\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("sup-1_x.y").unwrap();
    }
}
