//! Found schedules, kept in the repository like proptest's own regression files and replayed
//! first on every run: `races/proptest-regressions/explore/<race>-<design>.txt`.
//!
//! proptest persists the seed of a failing case, which only reproduces the case with the same
//! strategy; ours depends on the probes (what the design passed), so the file keeps the shrunk
//! schedule itself, in the text form `racelab replay --schedule` takes:
//!
//! ```text
//! # Schedules `racelab explore` shrank to a violation of Q1 (kill-recycled-pid) against
//! # global_atomics. Every run replays them before drawing new ones; delete a line to forget it.
//! # I1: random, seed 0, case 37, confirmed 5/5
//! s on escalation.pid_loaded: exit(child); on main.reaped: recycle(child); main.reaped < escalation.before_kill
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use racelab_hooks::Schedule;

use super::outcome::ExploreError;
use crate::catalog::{DesignId, Race};

/// The directory of this repository's exploration regressions.
pub fn default_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/explore"))
}

/// The file of `race` against `design` in `dir`.
pub fn path(dir: &Path, race: &Race, design: DesignId) -> PathBuf {
    dir.join(format!("{}-{}.txt", race.id, design.name()))
}

/// The schedules kept in `path` (none when the file does not exist).
pub fn load(path: &Path) -> Result<Vec<Schedule>, ExploreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ExploreError::Regressions { path: path.to_path_buf(), source }),
    };
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| l.strip_prefix("s ").map(|s| (i + 1, s)))
        .map(|(line, s)| {
            Schedule::parse(s).map_err(|source| ExploreError::BadRegression {
                path: path.to_path_buf(),
                line,
                source,
            })
        })
        .collect()
}

/// Appends `schedule` to `path` with a comment line, unless the file has it already. Returns
/// whether it was added.
pub fn append(
    path: &Path,
    race: &Race,
    design: DesignId,
    schedule: &Schedule,
    note: &str,
) -> Result<bool, ExploreError> {
    if load(path)?.contains(schedule) {
        return Ok(false);
    }
    let io = |source| ExploreError::Regressions { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let fresh = !path.exists();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    let mut text = String::new();
    if fresh {
        text.push_str(&format!(
            "# Schedules `racelab explore` shrank to a violation of {} ({}) against\n# {}. \
             Every run replays them before drawing new ones; delete a line to forget it.\n",
            race.id,
            race.slug,
            design.name()
        ));
    }
    text.push_str(&format!("# {note}\ns {schedule}\n"));
    file.write_all(text.as_bytes()).map_err(io)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_schedules_load_back_once() {
        let dir = std::env::temp_dir().join(format!("racelab-regr-{}", std::process::id()));
        let race = crate::catalog::find("Q1").unwrap();
        let file = path(&dir, race, DesignId::GlobalAtomics);
        let s =
            Schedule::parse("on main.reaped#2: recycle(child); main.reaped < escalation.kill_sent")
                .unwrap();
        assert!(append(&file, race, DesignId::GlobalAtomics, &s, "I1: test").unwrap());
        assert!(!append(&file, race, DesignId::GlobalAtomics, &s, "again").unwrap());
        assert_eq!(load(&file).unwrap(), vec![s]);
        assert!(std::fs::read_to_string(&file).unwrap().starts_with("# Schedules"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_holds_nothing() {
        assert_eq!(load(Path::new("/nonexistent/racelab/x.txt")).unwrap(), vec![]);
    }
}
