//! Reading `/proc/<pid>/stat`: the state letter and process group of the tree's members, for the
//! "unkillable" report. Only pids that cannot have been recycled are read here (an unreaped
//! child, or members of a group whose leader is unreaped), and only for display.

use std::path::Path;

use crate::report::Survivor;

/// The fields of /proc/<pid>/stat we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Parses the text of /proc/<pid>/stat. `comm` may contain spaces and parentheses: it runs
/// from the first '(' to the LAST ')'.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(Stat { pid, comm, state, ppid, pgrp })
}

/// Reads /proc/<pid>/stat, `None` when the process is gone.
pub(crate) fn stat(proc_root: &Path, pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text)
}

/// Every process whose stat satisfies `keep`, found by listing `proc_root`.
pub(crate) fn scan(proc_root: &Path, keep: impl Fn(&Stat) -> bool) -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir(proc_root) else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| stat(proc_root, pid))
        .filter(|s| keep(s))
        .collect()
}

impl From<Stat> for Survivor {
    fn from(s: Stat) -> Survivor {
        Survivor { pid: s.pid, name: s.comm, state: s.state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_parentheses_and_spaces_in_comm() {
        let s = parse_stat("1234 (we ird) (x)) D 1 1234 1234 0 -1").expect("parse");
        assert_eq!(
            s,
            Stat { pid: 1234, comm: "we ird) (x)".into(), state: 'D', ppid: 1, pgrp: 1234 }
        );
    }

    #[test]
    fn own_process_is_found_by_scan() {
        let me = std::process::id() as i32;
        let found = scan(Path::new("/proc"), |s| s.pid == me);
        assert_eq!(found.len(), 1);
        assert!("RS".contains(found[0].state), "{:?}", found[0]);
    }
}
