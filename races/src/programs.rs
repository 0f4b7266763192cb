//! The black-box programs the lab replays races against, as data: a program is a spec (TOML,
//! `programs/*.toml` for the ones that ship with the lab, or a user's own file), never Rust.
//!
//! A spec says how the program gets onto a machine (a crate and version, a Debian package, or a
//! path), how to start it over the lab's child (an argv template), which roles it plays (and so
//! which cases apply to it), what it promises (the signals it forwards, a warning when it had to
//! SIGKILL) and how to read its own report (exit codes and stderr lines). The same code reads
//! every spec: `racelab replay --program`, the conformance matrix and `racelab check`.
//!
//! ## The argv template
//!
//! Each element is a string or a group (a list of strings). Placeholders:
//!
//! | placeholder | value |
//! |---|---|
//! | `{child}` | the lab's child command: its binary and arguments (a whole element) |
//! | `{child_args}` | the child's arguments only, for a program that finds the binary itself |
//! | `{flags}` | the case's extra flags from `[cases.X] flags` (a whole element) |
//! | `{duration}`, `{duration_ms}` | the case's duration in seconds or milliseconds; absent when it has none (unless `default_duration`) |
//! | `{grace}`, `{grace_ms}` | the grace between the stop signal and SIGKILL, in seconds or milliseconds |
//! | `{grace_nonzero}` | the grace in seconds, absent when it is zero |
//!
//! A group is left out whole when a placeholder in it is absent: `["--duration", "{duration}"]`.
//! With the default template (`["{child}"]`) the child is appended to nothing.

use crate::design_report::{DesignReport, Reason, Status};
use racelab_sandbox::Fate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// One black-box program: a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// Its name on the command line: `piano-0.14.0`, `tini-static`.
    pub name: String,
    /// One line: what it is.
    #[serde(default)]
    pub about: String,
    /// The image label its syscall points use, when it is not the binary's file name with `-`
    /// written `_` (`tini_static`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The roles it plays: which cases apply.
    pub roles: Vec<Role>,
    /// How it gets onto a machine.
    pub install: Install,
    /// How it is started over the lab's child.
    #[serde(default)]
    pub start: Start,
    /// What it promises.
    #[serde(default)]
    pub promises: Promises,
    /// How its own report is read.
    #[serde(default)]
    pub report: ReportSpec,
    /// Per case: extra flags, or why the case does not apply.
    #[serde(default)]
    pub cases: BTreeMap<String, CaseSpec>,
}

/// A role: what the program is to the process it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs one command and stays its parent, passing signals on (dumb-init outside a
    /// container).
    Wrapper,
    /// A wrapper with a duration and a grace before SIGKILL (GNU timeout, piano run).
    WrapperTimeout,
    /// A container's PID 1 (tini, catatonit).
    Init,
    /// A child subreaper (`tini -s`, `supervise --subreaper`).
    Subreaper,
}

impl Role {
    /// Every role, in the order usage errors list them.
    pub const ALL: [Role; 4] = [Role::Wrapper, Role::WrapperTimeout, Role::Init, Role::Subreaper];

    /// The role's name in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Wrapper => "wrapper",
            Role::WrapperTimeout => "wrapper-timeout",
            Role::Init => "init",
            Role::Subreaper => "subreaper",
        }
    }

    /// A role by name.
    pub fn by_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// How a program gets onto the machine: exactly one of `crate`, `debian`, `path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// A crate on crates.io: `cargo install <crate> --version <version>` into
    /// `<target>/programs/<name>`.
    #[serde(rename = "crate", default, skip_serializing_if = "Option::is_none")]
    pub krate: Option<String>,
    /// The crate's exact version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The crate's binary, when it is not named like the crate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// A Debian package that installs the binary at `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debian: Option<String>,
    /// The binary's path (`{racelab_dir}`: the directory of the racelab binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// An environment variable that, when set, overrides the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// How to build it, said when it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// How a program is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The arguments after the binary (see the module docs for the placeholders).
    #[serde(default = "default_argv")]
    pub argv: Vec<ArgTemplate>,
    /// The arguments when the program runs as PID 1 of a namespace of its own (default: `argv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv_pid1: Option<Vec<ArgTemplate>>,
    /// `{duration}` when the case has none, for a program whose duration is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_duration: Option<String>,
    /// The least grace to pass, in milliseconds (a program that refuses zero).
    #[serde(default)]
    pub min_grace_ms: u64,
    /// Variables to set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Variables of the lab's environment to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_remove: Vec<String>,
    /// Files made in a fresh working directory of the replay's own, which becomes the
    /// program's working directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
}

impl Default for Start {
    fn default() -> Start {
        Start {
            argv: default_argv(),
            argv_pid1: None,
            default_duration: None,
            min_grace_ms: 0,
            env: BTreeMap::new(),
            env_remove: Vec::new(),
            files: Vec::new(),
        }
    }
}

fn default_argv() -> Vec<ArgTemplate> {
    vec![ArgTemplate::One("{child}".into())]
}

/// One element of an argv template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgTemplate {
    /// One argument (or, for `{child}`, `{child_args}` and `{flags}`, several).
    One(String),
    /// Arguments left out together when a placeholder in them has no value.
    Group(Vec<String>),
}

/// A file of the program's working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Its path, relative to the working directory.
    pub path: String,
    /// Its contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Or a symbolic link to this (`{child_binary}`: the lab's child binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// What the program promises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promises {
    /// The signals it passes on to its child (names without `SIG`). Empty: the signal cases
    /// (E1, E2, E2L, F1) do not apply.
    #[serde(default)]
    pub forwards: Vec<String>,
    /// A stop that ends in SIGKILL is reported by a line of `report.forced_kill_lines`.
    #[serde(default)]
    pub warns_on_forced_kill: bool,
}

/// How its own report is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Parts of a stderr line that says it had to SIGKILL.
    #[serde(default)]
    pub forced_kill_lines: Vec<String>,
    /// Exit codes that mean it stopped because it was interrupted.
    #[serde(default)]
    pub interrupted_codes: Vec<i32>,
    /// Exit codes that mean its duration ended it (read only when the case set one).
    #[serde(default)]
    pub duration_codes: Vec<i32>,
    /// Its exit code says why it stopped (otherwise the reason is unreported).
    #[serde(default)]
    pub reports_reason: bool,
}

/// A program's settings for one case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// Extra flags the case runs it with (`{flags}`).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Why the case does not apply to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
    /// Why the case is known to break, and is accepted (a check reports the finding and
    /// passes): `E2` for every PID 1, which the kernel decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
}

/// A spec that could not be read: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SpecError {
    /// The file (or `<command line>`).
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What was wrong, naming the field.
    pub message: String,
}

/// The placeholders an argv element may hold.
const PLACEHOLDERS: &[&str] = &[
    "child",
    "child_args",
    "flags",
    "duration",
    "duration_ms",
    "grace",
    "grace_ms",
    "grace_nonzero",
];
/// The placeholders that stand for several arguments: whole elements only.
const MULTI: &[&str] = &["child", "child_args", "flags"];

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Program {
    /// Reads a spec from `text` (named `file` in errors): TOML, every field checked.
    pub fn parse(text: &str, file: &str) -> Result<Program, SpecError> {
        let program: Program = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            SpecError {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        program.validate().map_err(|(needle, message)| {
            let (line, column) = text.find(&needle).map_or((0, 0), |o| line_col(text, o));
            SpecError { file: file.to_string(), line, column, message }
        })?;
        Ok(program)
    }

    /// The spec as TOML text, which [`Program::parse`] reads back.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Reads the spec file at `path`.
    pub fn load(path: &Path) -> Result<Program, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read the spec: {e}"),
        })?;
        Program::parse(&text, &file)
    }

    /// What serde cannot check: (text to point at, message).
    fn validate(&self) -> Result<(), (String, String)> {
        let at = |needle: &str, msg: String| Err((needle.to_string(), msg));
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return at("name", format!("name: {:?} must be a non-empty word", self.name));
        }
        if self.roles.is_empty() {
            return at(
                "roles",
                "roles: at least one of wrapper, wrapper-timeout, init, subreaper".into(),
            );
        }
        let i = &self.install;
        let sources =
            [i.krate.is_some(), i.debian.is_some(), i.path.is_some() && i.debian.is_none()];
        match sources.iter().filter(|s| **s).count() {
            1 => {}
            0 => {
                return at(
                    "[install]",
                    "install: needs one of `crate`, `debian` (with `path`) or `path`".into(),
                );
            }
            _ => {
                return at(
                    "[install]",
                    "install: `crate` and `debian`/`path` exclude each other".into(),
                );
            }
        }
        if i.krate.is_some() && i.version.is_none() {
            return at("crate", "install.version: a crate needs its exact version".into());
        }
        if i.debian.is_some() && i.path.is_none() {
            return at(
                "debian",
                "install.path: a Debian package needs the path of the binary it installs".into(),
            );
        }
        let templates = self.start.argv.iter().chain(self.start.argv_pid1.iter().flatten());
        let mut has_child = false;
        for t in templates {
            let (items, group) = match t {
                ArgTemplate::One(s) => (std::slice::from_ref(s), false),
                ArgTemplate::Group(g) => (g.as_slice(), true),
            };
            for item in items {
                for key in placeholders(item) {
                    if !PLACEHOLDERS.contains(&key) {
                        return at(
                            &format!("{{{key}}}"),
                            format!(
                                "start.argv: unknown placeholder {{{key}}} in {item:?}; known: {}",
                                PLACEHOLDERS
                                    .iter()
                                    .map(|p| format!("{{{p}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                    if MULTI.contains(&key) && (group || item != &format!("{{{key}}}")) {
                        return at(
                            &format!("{{{key}}}"),
                            format!(
                                "start.argv: {{{key}}} stands for several arguments: it must be an element of its own, outside groups"
                            ),
                        );
                    }
                    has_child |= key == "child" || key == "child_args";
                }
            }
        }
        if !has_child {
            return at(
                "argv",
                "start.argv: the template must place the child ({child} or {child_args})".into(),
            );
        }
        for f in &self.start.files {
            if f.text.is_some() == f.link.is_some() {
                return at(
                    &f.path,
                    format!("start.files: {:?} needs exactly one of `text` and `link`", f.path),
                );
            }
            if Path::new(&f.path).is_absolute() || f.path.split('/').any(|c| c == "..") {
                return at(
                    &f.path,
                    format!("start.files: {:?} must stay inside the working directory", f.path),
                );
            }
        }
        for (case, c) in &self.cases {
            if crate::conformance::find_case(case).is_none() {
                let known: Vec<&str> = crate::conformance::CASES.iter().map(|c| c.race).collect();
                return at(
                    &format!("[cases.{case}]"),
                    format!("cases.{case}: unknown case; known: {}", known.join(", ")),
                );
            }
            if c.skip.is_some() && (!c.flags.is_empty() || c.known.is_some()) {
                return at(
                    &format!("[cases.{case}]"),
                    format!(
                        "cases.{case}: `skip` says the case does not run: no `flags` or `known` with it"
                    ),
                );
            }
        }
        for s in &self.promises.forwards {
            if signal_number(s).is_none() {
                return at(
                    s,
                    format!("promises.forwards: unknown signal {s:?} (write HUP, TERM, ...)"),
                );
            }
        }
        Ok(())
    }

    /// The image label its syscall points use: the binary's file name with `-` written `_`
    /// (`/usr/bin/dumb-init` is `dumb_init`), as the lab names a thread's program.
    pub fn label(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        let i = &self.install;
        let file = match (&i.krate, &i.path) {
            (Some(k), _) => i.binary.clone().unwrap_or_else(|| k.clone()),
            (None, Some(p)) => Path::new(p)
                .file_name()
                .map_or_else(|| p.clone(), |f| f.to_string_lossy().into_owned()),
            (None, None) => self.name.clone(),
        };
        file.replace('-', "_")
    }

    /// The signals it promises to forward, as numbers.
    pub fn forwarded_signals(&self) -> Vec<i32> {
        self.promises.forwards.iter().filter_map(|s| signal_number(s)).collect()
    }

    /// Its settings for `case` (by race id).
    pub fn case(&self, case: &str) -> Option<&CaseSpec> {
        self.cases.iter().find(|(k, _)| k.eq_ignore_ascii_case(case)).map(|(_, v)| v)
    }

    /// The extra flags `case` runs it with.
    pub fn flags_for(&self, case: &str) -> Vec<String> {
        self.case(case).map(|c| c.flags.clone()).unwrap_or_default()
    }
}

/// A signal number from its name, with or without `SIG`.
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim();
    let full = if name.starts_with("SIG") { name.to_string() } else { format!("SIG{name}") };
    full.parse::<nix::sys::signal::Signal>().ok().map(|s| s as i32)
}

fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

/// The specs that ship with the lab (`programs/*.toml`), compiled in: an installed racelab has
/// them wherever it runs.
const BUNDLED: &[(&str, &str)] = &[
    ("programs/piano-0.14.0.toml", include_str!("../../programs/piano-0.14.0.toml")),
    ("programs/piano-0.15.1.toml", include_str!("../../programs/piano-0.15.1.toml")),
    ("programs/tini.toml", include_str!("../../programs/tini.toml")),
    ("programs/tini-static.toml", include_str!("../../programs/tini-static.toml")),
    ("programs/dumb-init.toml", include_str!("../../programs/dumb-init.toml")),
    ("programs/catatonit.toml", include_str!("../../programs/catatonit.toml")),
    ("programs/timeout.toml", include_str!("../../programs/timeout.toml")),
    ("programs/supervise.toml", include_str!("../../programs/supervise.toml")),
];

/// Every program that ships with the lab, in the order of the conformance matrix.
pub fn all() -> &'static [Program] {
    static ALL: OnceLock<Vec<Program>> = OnceLock::new();
    ALL.get_or_init(|| {
        BUNDLED
            .iter()
            .map(|(file, text)| {
                // A test parses each file: a bundled spec that does not parse is a build bug.
                Program::parse(text, file).unwrap_or_else(|e| panic!("bundled spec: {e}"))
            })
            .collect()
    })
}

/// Looks a bundled program up by name.
pub fn find(name: &str) -> Option<&'static Program> {
    all().iter().find(|p| p.name == name)
}

/// Every bundled program name, for error messages.
pub fn known_names() -> String {
    all().iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Where crate programs are installed: `<dir>/<name>/bin/<binary>`. Inside a Cargo target
/// directory (the runner is `<target>/<profile>/<exe>`, `<target>/<triple>/<profile>/<exe>`, or
/// a test binary in `deps/` below them) it is `<target>/programs`, where scripts/install-programs
/// puts them; for an installed racelab (`~/.cargo/bin/racelab`) it is `../lib/racelab/programs`
/// beside its bin directory; `$RACELAB_PROGRAMS` overrides both.
pub fn programs_dir(runner: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("RACELAB_PROGRAMS") {
        return PathBuf::from(dir);
    }
    match target_dir(runner) {
        Some(t) => t.join("programs"),
        None => runner_dir(runner).join("../lib/racelab/programs"),
    }
}

fn target_dir(runner: &Path) -> Option<PathBuf> {
    let mut dir = runner.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent()?;
    }
    // <target>/<profile> or <target>/<triple>/<profile>: the first with Cargo's tag.
    let up = dir.parent()?;
    [Some(up), up.parent()]
        .into_iter()
        .flatten()
        .find(|d| d.join("CACHEDIR.TAG").exists() || d.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
}

/// The directory of the runner's own binary (`deps/` of a test binary counts as its parent):
/// where the helper binaries built with it are.
fn runner_dir(runner: &Path) -> PathBuf {
    let mut dir = runner.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

impl Program {
    /// The binary, when it is installed; otherwise what is missing and how to install it.
    pub fn binary(&self, runner: &Path) -> Result<PathBuf, String> {
        let i = &self.install;
        let overridden = i.env.as_ref().and_then(std::env::var_os).map(PathBuf::from);
        let path = match (overridden, &i.krate, &i.path) {
            (Some(p), _, _) => p,
            (None, Some(k), _) => programs_dir(runner)
                .join(&self.name)
                .join("bin")
                .join(i.binary.as_deref().unwrap_or(k)),
            (None, None, Some(p)) => {
                PathBuf::from(p.replace("{racelab_dir}", &runner_dir(runner).to_string_lossy()))
            }
            (None, None, None) => return Err(format!("program {}: no install section", self.name)),
        };
        if path.is_file() { Ok(path) } else { Err(self.missing(&path)) }
    }

    /// What is missing and how to get it.
    fn missing(&self, path: &Path) -> String {
        let i = &self.install;
        if let (Some(krate), Some(version)) = (&i.krate, &i.version) {
            let root = path
                .parent()
                .and_then(Path::parent)
                .map_or_else(String::new, |p| p.display().to_string());
            return format!(
                "program {}: {} is not installed (run `cargo install {krate} --version {version} --locked --root {root}`, which scripts/install-programs does; crates.io must be reachable)",
                self.name,
                path.display()
            );
        }
        if let Some(package) = &i.debian {
            return format!(
                "program {}: {} is missing (install the Debian package `{package}`: `apt-get install {package}`, which scripts/install-programs does)",
                self.name,
                path.display()
            );
        }
        let how = match (&i.build, &i.env) {
            (Some(b), Some(e)) => format!(" (build it: `{b}`, or set {e})"),
            (Some(b), None) => format!(" (build it: `{b}`)"),
            (None, Some(e)) => format!(" (or set {e})"),
            (None, None) => String::new(),
        };
        format!("program {}: {} is missing{how}", self.name, path.display())
    }
}

/// The options of one black-box run, in the program's own terms.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The duration limit, for the programs that have one.
    pub duration: Option<Duration>,
    /// The grace between the stop signal and SIGKILL.
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
    /// The argument vector (after the binary) that runs `child` with `child_args` under this
    /// program with `opts`.
    pub fn args(&self, opts: &RunOptions, child: &Path, child_args: &[String]) -> Vec<String> {
        let grace = opts.grace.max(Duration::from_millis(self.start.min_grace_ms));
        let duration = opts.duration.map(secs).or_else(|| self.start.default_duration.clone());
        let single = |key: &str| -> Option<String> {
            match key {
                "duration" => duration.clone(),
                "duration_ms" => opts.duration.map(|d| d.as_millis().to_string()),
                "grace" => Some(secs(grace)),
                "grace_ms" => Some(grace.as_millis().to_string()),
                "grace_nonzero" => (!grace.is_zero()).then(|| secs(grace)),
                _ => None,
            }
        };
        let multi = |key: &str| -> Option<Vec<String>> {
            match key {
                "child" => {
                    let mut v = vec![child.display().to_string()];
                    v.extend(child_args.iter().cloned());
                    Some(v)
                }
                "child_args" => Some(child_args.to_vec()),
                "flags" => Some(opts.flags.clone()),
                _ => None,
            }
        };
        // One element: its expansion, or None when a placeholder in it has no value.
        let expand = |item: &str| -> Option<Vec<String>> {
            if let Some(key) = item.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                && MULTI.contains(&key)
            {
                return multi(key);
            }
            let mut out = item.to_string();
            for key in placeholders(item) {
                out = out.replace(&format!("{{{key}}}"), &single(key)?);
            }
            Some(vec![out])
        };
        let template = match (&self.start.argv_pid1, opts.pid1) {
            (Some(t), true) => t,
            _ => &self.start.argv,
        };
        let mut v = Vec::new();
        for t in template {
            match t {
                ArgTemplate::One(item) => v.extend(expand(item).unwrap_or_default()),
                ArgTemplate::Group(items) => {
                    let parts: Option<Vec<Vec<String>>> = items.iter().map(|i| expand(i)).collect();
                    v.extend(parts.into_iter().flatten().flatten());
                }
            }
        }
        v
    }

    /// Makes the program's working directory in `dir` (its `start.files`), when it has one.
    /// Returns whether it made one.
    pub fn make_workdir(&self, dir: &Path, child_binary: &Path) -> std::io::Result<bool> {
        if self.start.files.is_empty() {
            return Ok(false);
        }
        std::fs::create_dir_all(dir)?;
        for f in &self.start.files {
            let path = dir.join(&f.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let _ = std::fs::remove_file(&path);
            match (&f.text, &f.link) {
                (Some(text), _) => std::fs::write(&path, text)?,
                (None, Some(link)) => {
                    let target = link.replace("{child_binary}", &child_binary.to_string_lossy());
                    std::os::unix::fs::symlink(target, &path)?;
                }
                (None, None) => {}
            }
        }
        Ok(true)
    }

    /// The warning lines of its stderr that say it had to SIGKILL (I2 reads them).
    pub fn force_kill_warnings(&self, stderr: &str) -> Vec<String> {
        let markers = &self.report.forced_kill_lines;
        if markers.is_empty() {
            return Vec::new();
        }
        stderr
            .lines()
            .filter(|l| markers.iter().any(|m| l.contains(m.as_str())))
            .map(str::to_string)
            .collect()
    }

    /// Its own report, read from how it ended (`fate`: its exit code, or the signal that killed
    /// it) and what it wrote on stderr (warnings, and the record). `duration` says the run had
    /// a duration limit: a `duration_codes` code then means the duration ended it.
    pub fn report(&self, fate: Option<Fate>, stderr: &str, duration: bool) -> DesignReport {
        let (status, exit_code) = match fate {
            Some(Fate::Exited { code }) => (Some(Status::Code(code)), code),
            Some(Fate::Killed { signal }) => (Some(Status::Signal(signal)), 128 + signal),
            _ => (None, -1),
        };
        let warnings = self.force_kill_warnings(stderr);
        let r = &self.report;
        let reason = if !warnings.is_empty() {
            Reason::ForcedKill
        } else if !r.reports_reason {
            Reason::Unreported
        } else if r.interrupted_codes.contains(&exit_code) {
            Reason::Interrupted
        } else if duration && r.duration_codes.contains(&exit_code) {
            Reason::Duration
        } else {
            Reason::Exited
        };
        let raw: String = stderr.chars().take(2000).collect();
        DesignReport { reason, status, exit_code, warnings, raw }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_specs_parse_with_unique_names_and_labels_that_name_their_binary() {
        let all = all();
        assert_eq!(all.len(), BUNDLED.len());
        for (i, p) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|q| q.name != p.name), "{}", p.name);
            if let (Some(_), Some(path)) = (&p.install.debian, &p.install.path) {
                let file = Path::new(path).file_name().unwrap().to_string_lossy().replace('-', "_");
                assert_eq!(file, p.label(), "{}", p.name);
            }
        }
        assert_eq!(find("tini-static").map(Program::label), Some("tini_static".into()));
        assert_eq!(find("piano-0.14.0").map(Program::label), Some("piano".into()));
        assert_eq!(find("supervise").map(Program::label), Some("supervise".into()));
    }

    #[test]
    fn every_cell_names_a_case_and_a_program_and_parses() {
        for c in crate::conformance::CELLS {
            assert!(crate::conformance::find_case(c.case).is_some(), "{}", c.case);
            let program = find(c.program).unwrap_or_else(|| panic!("{}", c.program));
            let schedule = c.schedule_for(&program.label());
            let parsed = racelab_hooks::Schedule::parse(&schedule)
                .unwrap_or_else(|e| panic!("{} {}: {e}", c.case, c.program));
            assert!(!parsed.points().any(|p| p.hook().is_some()), "{} {}", c.case, c.program);
            if let crate::conformance::CellExpect::Run(crate::verdict::Expect::Reproduce(list)) =
                c.expect
            {
                let race = crate::conformance::find_race(c.case).unwrap();
                assert!(
                    list.iter().all(|i| race.invariants.contains(i)),
                    "{} {}",
                    c.case,
                    c.program
                );
            }
        }
    }

    #[test]
    fn the_debian_specs_written_as_a_user_would_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../programs/debian");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Program::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 4, "{n} specs in {}", dir.display());
    }

    #[test]
    fn command_lines_follow_each_programs_syntax() {
        let w = Path::new("/w");
        let a = vec!["__workload".to_string()];
        let opts = RunOptions { grace: Duration::from_millis(200), ..RunOptions::default() };
        let piano = find("piano-0.14.0").unwrap().args(&opts, w, &a);
        assert_eq!(piano, ["run", "--kill-timeout", "0.2", "--", "__workload"]);
        let d = RunOptions { duration: Some(Duration::from_millis(1500)), ..opts.clone() };
        let piano = find("piano-0.14.0").unwrap().args(&d, w, &a);
        assert_eq!(
            piano,
            ["run", "--duration", "1.5", "--kill-timeout", "0.2", "--", "__workload"]
        );
        let g = RunOptions { flags: vec!["-g".into()], ..RunOptions::default() };
        assert_eq!(find("tini").unwrap().args(&g, w, &a), ["-s", "-g", "--", "/w", "__workload"]);
        let g1 = RunOptions { pid1: true, ..g.clone() };
        assert_eq!(find("tini").unwrap().args(&g1, w, &a), ["-g", "--", "/w", "__workload"]);
        assert_eq!(
            find("timeout").unwrap().args(&opts, w, &a),
            ["--kill-after=0.2", "1000", "/w", "__workload"]
        );
        assert_eq!(
            find("timeout").unwrap().args(&RunOptions::default(), w, &a),
            ["1000", "/w", "__workload"]
        );
        assert_eq!(
            find("supervise").unwrap().args(&RunOptions::default(), w, &a),
            ["-k", "1ms", "--kill-wait", "200ms", "--subreaper", "--", "/w", "__workload"]
        );
        assert_eq!(
            find("supervise").unwrap().args(&RunOptions { pid1: true, ..d }, w, &a),
            [
                "--timeout",
                "1500ms",
                "-k",
                "200ms",
                "--kill-wait",
                "200ms",
                "--",
                "/w",
                "__workload"
            ]
        );
        assert_eq!(find("dumb-init").unwrap().args(&opts, w, &a), ["--", "/w", "__workload"]);
    }

    #[test]
    fn reports_are_read_as_the_spec_says() {
        let piano = find("piano-0.14.0").unwrap();
        let r = piano.report(Some(Fate::Exited { code: 0 }), "", true);
        assert_eq!(r.reason, Reason::Duration);
        let r =
            piano.report(Some(Fate::Exited { code: 130 }), "x did not respond to SIGTERM\n", false);
        assert_eq!((r.reason, r.warnings.len()), (Reason::ForcedKill, 1));
        let tini = find("tini").unwrap();
        assert_eq!(
            tini.report(Some(Fate::Exited { code: 130 }), "", false).reason,
            Reason::Unreported
        );
        let sup = find("supervise").unwrap();
        assert_eq!(sup.report(Some(Fate::Exited { code: 0 }), "", true).reason, Reason::Exited);
    }

    fn err(text: &str) -> SpecError {
        Program::parse(text, "x.toml").expect_err(text)
    }

    const MIN: &str = "name = \"p\"\nroles = [\"wrapper\"]\n[install]\npath = \"/bin/p\"\n";

    #[test]
    fn a_minimal_spec_appends_the_child() {
        let p = Program::parse(MIN, "x.toml").unwrap();
        assert_eq!(p.label(), "p");
        let a = p.args(&RunOptions::default(), Path::new("/w"), &["x".into()]);
        assert_eq!(a, ["/w", "x"]);
    }

    #[test]
    fn malformed_specs_name_the_line_and_the_field() {
        let e = err(&format!("{MIN}colour = 3\n"));
        assert_eq!((e.line, e.file.as_str()), (5, "x.toml"), "{e}");
        assert!(e.message.contains("colour"), "{e}");
        let e = err("name = \"p\"\nroles = [\"nanny\"]\n[install]\npath = \"/bin/p\"\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("nanny") && e.message.contains("wrapper-timeout"), "{e}");
        let e = err(&format!("{MIN}[start]\nargv = [\"--\", \"{{kid}}\"]\n"));
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("{kid}"), "{e}");
        let e = err(&format!("{MIN}[start]\nargv = [\"-x\"]\n"));
        assert!(e.message.contains("place the child"), "{e}");
        let e = err(&format!("{MIN}[cases.Q9]\nflags = []\n"));
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("unknown case"), "{e}");
        let e = err("name = \"p\"\nroles = [\"init\"]\n[install]\ndebian = \"p\"\n");
        assert!(e.message.contains("install.path"), "{e}");
        let e = err(&format!("{MIN}[promises]\nforwards = [\"TREM\"]\n"));
        assert!(e.message.contains("TREM"), "{e}");
        let e = err(
            "name = \"p\"\nroles = [\"init\"]\n[install]\npath = \"/bin/p\"\n[start]\nargv = [\"{child}x\"]\n",
        );
        assert!(e.message.contains("element of its own"), "{e}");
    }

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let runner = Path::new("/nonexistent/target/release/racelab");
        let piano = find("piano-0.14.0").unwrap().binary(runner).unwrap_err();
        assert!(piano.contains("cargo install piano --version 0.14.0"), "{piano}");
        let mut p = find("tini").unwrap().clone();
        p.install.path = Some("/nonexistent/tini".into());
        let tini = p.binary(runner).unwrap_err();
        assert!(tini.contains("apt-get install tini"), "{tini}");
    }

    #[test]
    fn the_target_dir_is_found_from_a_test_binary_or_a_bin() {
        let t = tempfile_dir();
        std::fs::create_dir_all(t.join("debug/deps")).unwrap();
        std::fs::write(t.join("CACHEDIR.TAG"), "").unwrap();
        assert_eq!(target_dir(&t.join("debug/deps/races-abc")), Some(t.clone()));
        assert_eq!(target_dir(&t.join("debug/races-runner")), Some(t.clone()));
        std::fs::create_dir_all(t.join("x86_64-unknown-linux-gnu/dist")).unwrap();
        assert_eq!(target_dir(&t.join("x86_64-unknown-linux-gnu/dist/racelab")), Some(t.clone()));
        // An installed racelab is in no target directory.
        std::fs::create_dir_all(t.join("home/.cargo/bin")).unwrap();
        assert_eq!(target_dir(&t.join("home/.cargo/bin/racelab")), None);
        assert_eq!(
            programs_dir(&t.join("home/.cargo/bin/racelab")),
            t.join("home/.cargo/bin/../lib/racelab/programs")
        );
        let _ = std::fs::remove_dir_all(&t);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("racelab-programs-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
