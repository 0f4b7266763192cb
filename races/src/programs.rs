//! The black-box programs the lab replays races against: published binaries nobody here wrote
//! (piano 0.14.0 and 0.15.1 from crates.io, tini, tini-static, dumb-init, catatonit from Debian,
//! GNU timeout from coreutils) and `supervise` itself, run unmodified.
//!
//! Each program says where its binary is (and how to install it when it is missing), which
//! image label its syscall points use (`dumb_init` for `/usr/bin/dumb-init`), how to start it
//! over the lab's workload with a case's options, and how to read its own report (exit code,
//! warning lines) for the oracle ([`Program::report`]).

use crate::design_report::{DesignReport, Reason, Status};
use racelab_sandbox::Fate;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a program gets onto the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `cargo install <krate> --version <version> --root target/programs/<name>`.
    Crate {
        /// The crate.
        krate: &'static str,
        /// The exact published version.
        version: &'static str,
    },
    /// A Debian package that puts the binary at `path`.
    Debian {
        /// The package.
        package: &'static str,
        /// The binary it installs.
        path: &'static str,
    },
    /// The workspace's own `supervise` binary, next to the runner (same target directory), or
    /// `$RACELAB_SUPERVISE`.
    Supervise,
}

/// The flavours of command lines the lab knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `piano run [--duration S] --kill-timeout G -- ARGS`, run in a Cargo project whose newest
    /// executable in `target/piano/release/` is the workload.
    Piano,
    /// `tini [-s] [FLAGS] -- CMD ARGS`.
    Tini,
    /// `dumb-init CMD ARGS` (setsid mode: signals go to the child's session).
    DumbInit,
    /// `catatonit [FLAGS] -- CMD ARGS`.
    Catatonit,
    /// GNU `timeout [--kill-after=G] DURATION CMD ARGS`.
    Timeout,
    /// `supervise [--timeout D] -k G [--subreaper] -- CMD ARGS`.
    Supervise,
}

/// One black-box program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// Its name on the command line: `piano-0.14.0`, `tini-static`.
    pub name: &'static str,
    /// The image label its syscall points use: `piano`, `tini_static`, `dumb_init`.
    pub label: &'static str,
    /// Where it comes from.
    pub source: Source,
    /// How its command line is built.
    pub kind: Kind,
    /// One line: what it is.
    pub about: &'static str,
}

/// Every program, in the order of the conformance matrix.
pub static PROGRAMS: &[Program] = &[
    Program {
        name: "piano-0.14.0",
        label: "piano",
        source: Source::Crate { krate: "piano", version: "0.14.0" },
        kind: Kind::Piano,
        about: "piano run before the fix of issue #620: four globals, three threads, a SIGINT handler",
    },
    Program {
        name: "piano-0.15.1",
        label: "piano",
        source: Source::Crate { krate: "piano", version: "0.15.1" },
        kind: Kind::Piano,
        about: "piano run after the fix (ecca3b9): one thread, one flag, a 10 ms polling loop",
    },
    Program {
        name: "tini",
        label: "tini",
        source: Source::Debian { package: "tini", path: "/usr/bin/tini" },
        kind: Kind::Tini,
        about: "tini 0.19.0 (Debian), dynamically linked",
    },
    Program {
        name: "tini-static",
        label: "tini_static",
        source: Source::Debian { package: "tini", path: "/usr/bin/tini-static" },
        kind: Kind::Tini,
        about: "tini 0.19.0 (Debian), statically linked",
    },
    Program {
        name: "dumb-init",
        label: "dumb_init",
        source: Source::Debian { package: "dumb-init", path: "/usr/bin/dumb-init" },
        kind: Kind::DumbInit,
        about: "dumb-init 1.2.5 (Debian), setsid mode",
    },
    Program {
        name: "catatonit",
        label: "catatonit",
        source: Source::Debian { package: "catatonit", path: "/usr/bin/catatonit" },
        kind: Kind::Catatonit,
        about: "catatonit 0.1.7 (Debian)",
    },
    Program {
        name: "timeout",
        label: "timeout",
        source: Source::Debian { package: "coreutils", path: "/usr/bin/timeout" },
        kind: Kind::Timeout,
        about: "GNU timeout (coreutils 9.1, Debian)",
    },
    Program {
        name: "supervise",
        label: "supervise",
        source: Source::Supervise,
        kind: Kind::Supervise,
        about: "racelab's reference supervisor, as a black box",
    },
];

/// Looks a program up by name.
pub fn find(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// Every program name, for error messages.
pub fn known_names() -> String {
    PROGRAMS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// Where `cargo install` puts crate programs: `<target dir>/programs/<name>/bin/<krate>`. The
/// target directory is found from the runner's own path (`<target>/<profile>/<exe>`, or
/// `<target>/<profile>/deps/<exe>` for test binaries), or `$RACELAB_PROGRAMS`.
pub fn programs_dir(runner: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("RACELAB_PROGRAMS") {
        return PathBuf::from(dir);
    }
    target_dir(runner).map_or_else(|| PathBuf::from("target/programs"), |t| t.join("programs"))
}

fn target_dir(runner: &Path) -> Option<PathBuf> {
    let mut dir = runner.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent()?;
    }
    // <target>/<profile> or <target>/<triple>/<profile>
    let up = dir.parent()?;
    Some(if up.join("CACHEDIR.TAG").exists() || up.file_name().is_some_and(|n| n == "target") {
        up.to_path_buf()
    } else {
        up.parent().unwrap_or(up).to_path_buf()
    })
}

impl Program {
    /// The binary, when it is installed.
    pub fn binary(&self, runner: &Path) -> Result<PathBuf, String> {
        let path = match self.source {
            Source::Crate { krate, .. } => {
                programs_dir(runner).join(self.name).join("bin").join(krate)
            }
            Source::Debian { path, .. } => PathBuf::from(path),
            Source::Supervise => match std::env::var_os("RACELAB_SUPERVISE") {
                Some(p) => PathBuf::from(p),
                None => {
                    let mut dir = runner.parent().map(Path::to_path_buf).unwrap_or_default();
                    if dir.file_name().is_some_and(|n| n == "deps") {
                        dir.pop();
                    }
                    dir.join("supervise")
                }
            },
        };
        if path.is_file() { Ok(path) } else { Err(self.missing(&path)) }
    }

    /// What is missing and how to get it.
    fn missing(&self, path: &Path) -> String {
        match self.source {
            Source::Crate { krate, version } => format!(
                "program {}: {} is not installed (run `cargo install {krate} --version {version} --locked --root {}`, which .ci/run does; crates.io must be reachable)",
                self.name,
                path.display(),
                path.parent()
                    .and_then(Path::parent)
                    .map_or_else(String::new, |p| p.display().to_string())
            ),
            Source::Debian { package, .. } => format!(
                "program {}: {} is missing (install the Debian package `{package}`, which .ci/run does)",
                self.name,
                path.display()
            ),
            Source::Supervise => format!(
                "program supervise: {} is missing (build it: `cargo build -p racelab-supervise`, or set RACELAB_SUPERVISE)",
                path.display()
            ),
        }
    }
}

/// The options of one black-box run, in the program's own terms.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The duration limit, for the programs that have one.
    pub duration: Option<Duration>,
    /// The grace between the stop signal and SIGKILL (piano's --kill-timeout, timeout's -k).
    pub grace: Duration,
    /// Extra flags the case asks of this program (`-g`).
    pub flags: Vec<String>,
    /// The program runs as PID 1 of a namespace of its own.
    pub pid1: bool,
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

impl Program {
    /// The argument vector (after the binary) that runs `workload` with `args` under this
    /// program with `opts`. For piano, `workload` is ignored: piano runs the project's binary.
    pub fn args(&self, opts: &RunOptions, workload: &Path, args: &[String]) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        let cmd = |v: &mut Vec<String>| {
            v.push(workload.display().to_string());
            v.extend(args.iter().cloned());
        };
        match self.kind {
            Kind::Piano => {
                v.push("run".into());
                if let Some(d) = opts.duration {
                    v.extend(["--duration".into(), secs(d)]);
                }
                v.extend(["--kill-timeout".into(), secs(opts.grace)]);
                v.extend(opts.flags.iter().cloned());
                v.push("--".into());
                v.extend(args.iter().cloned());
            }
            Kind::Tini => {
                // Not PID 1: -s registers tini as the child subreaper, as its docs ask.
                if !opts.pid1 {
                    v.push("-s".into());
                }
                v.extend(opts.flags.iter().cloned());
                v.push("--".into());
                cmd(&mut v);
            }
            Kind::DumbInit => {
                v.extend(opts.flags.iter().cloned());
                v.push("--".into());
                cmd(&mut v);
            }
            Kind::Catatonit => {
                v.extend(opts.flags.iter().cloned());
                v.push("--".into());
                cmd(&mut v);
            }
            Kind::Timeout => {
                if !opts.grace.is_zero() {
                    v.push(format!("--kill-after={}", secs(opts.grace)));
                }
                v.extend(opts.flags.iter().cloned());
                // No duration asked: one the replay never reaches.
                v.push(opts.duration.map_or_else(|| "1000".into(), secs));
                cmd(&mut v);
            }
            Kind::Supervise => {
                if let Some(d) = opts.duration {
                    v.extend(["--timeout".into(), format!("{}ms", d.as_millis())]);
                }
                // supervise always bounds its grace; zero asks for an immediate SIGKILL.
                v.extend(["-k".into(), format!("{}ms", opts.grace.as_millis().max(1))]);
                v.extend(["--kill-wait".into(), "200ms".into()]);
                if !opts.pid1 {
                    v.push("--subreaper".into());
                }
                v.extend(opts.flags.iter().cloned());
                v.push("--".into());
                cmd(&mut v);
            }
        }
        v
    }

    /// The warning lines of its stderr that say it had to SIGKILL (I2 reads them).
    pub fn force_kill_warnings(&self, stderr: &str) -> Vec<String> {
        let marker = match self.kind {
            Kind::Piano => "did not respond to SIGTERM",
            Kind::Supervise => "sent SIGKILL",
            _ => return Vec::new(),
        };
        stderr.lines().filter(|l| l.contains(marker)).map(str::to_string).collect()
    }

    /// Its own report, read from how it ended (`fate`: its exit code, or the signal that killed
    /// it) and what it wrote on stderr (warnings, and the record). `duration` says the run had
    /// a duration limit: piano's 0 then means the duration ended it.
    pub fn report(&self, fate: Option<Fate>, stderr: &str, duration: bool) -> DesignReport {
        let (status, exit_code) = match fate {
            Some(Fate::Exited { code }) => (Some(Status::Code(code)), code),
            Some(Fate::Killed { signal }) => (Some(Status::Signal(signal)), 128 + signal),
            _ => (None, -1),
        };
        let warnings = self.force_kill_warnings(stderr);
        let reason = if !warnings.is_empty() {
            Reason::ForcedKill
        } else {
            match (self.kind, exit_code) {
                (Kind::Piano | Kind::Supervise, 130) => Reason::Interrupted,
                (Kind::Piano, 0) if duration => Reason::Duration,
                (Kind::Piano | Kind::Supervise, _) => Reason::Exited,
                _ => Reason::Unreported,
            }
        };
        let raw: String = stderr.chars().take(2000).collect();
        DesignReport { reason, status, exit_code, warnings, raw }
    }
}

/// Sets up the Cargo project piano needs in `dir`: an empty `Cargo.toml` (piano only checks it
/// exists) and `target/piano/release/workload`, a symlink to the runner. piano runs the newest
/// extension-less executable there (a symlink counts: its own mode is 0777).
pub fn piano_project(dir: &Path, runner: &Path) -> std::io::Result<PathBuf> {
    let release = dir.join("target/piano/release");
    std::fs::create_dir_all(&release)?;
    std::fs::write(dir.join("Cargo.toml"), "")?;
    let link = release.join("workload");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(runner, &link)?;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_have_unique_names_and_labels_that_name_their_binary() {
        for (i, p) in PROGRAMS.iter().enumerate() {
            assert!(PROGRAMS[..i].iter().all(|q| q.name != p.name), "{}", p.name);
            if let Source::Debian { path, .. } = p.source {
                let file = Path::new(path).file_name().unwrap().to_string_lossy().replace('-', "_");
                assert_eq!(file, p.label, "{}", p.name);
            }
        }
        assert_eq!(find("tini-static").map(|p| p.label), Some("tini_static"));
    }

    #[test]
    fn command_lines_follow_each_programs_syntax() {
        let w = Path::new("/w");
        let a = vec!["__workload".to_string()];
        let opts = RunOptions { grace: Duration::from_millis(200), ..RunOptions::default() };
        let piano = find("piano-0.14.0").unwrap().args(&opts, w, &a);
        assert_eq!(piano, ["run", "--kill-timeout", "0.2", "--", "__workload"]);
        let g = RunOptions { flags: vec!["-g".into()], ..RunOptions::default() };
        assert_eq!(find("tini").unwrap().args(&g, w, &a), ["-s", "-g", "--", "/w", "__workload"]);
        assert_eq!(
            find("timeout").unwrap().args(&opts, w, &a),
            ["--kill-after=0.2", "1000", "/w", "__workload"]
        );
    }

    #[test]
    fn the_target_dir_is_found_from_a_test_binary_or_a_bin() {
        let t = tempfile_dir();
        std::fs::create_dir_all(t.join("debug/deps")).unwrap();
        std::fs::write(t.join("CACHEDIR.TAG"), "").unwrap();
        assert_eq!(target_dir(&t.join("debug/deps/races-abc")), Some(t.clone()));
        assert_eq!(target_dir(&t.join("debug/races-runner")), Some(t.clone()));
        let _ = std::fs::remove_dir_all(&t);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("racelab-programs-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
