//! The tiny command-line parser shared by the wrapper entry points:
//! `[--name value]... -- program [args...]`, plus exit-code helpers.
//!
//! Hand-written on purpose: the wrapper binary must stay small, and clap would become a
//! dependency of the library that the lab links.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use crate::error::LegacyError;

/// Parsed `--name value` options and the command after `--`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    options: Vec<(String, OsString)>,
    command: Vec<OsString>,
}

impl Args {
    /// Parses `args` (without the program name and mode). Every option takes one value and
    /// must be one of `known`; the command starts after `--` (or at the first non-option).
    pub fn parse(
        args: impl IntoIterator<Item = OsString>,
        known: &[&str],
    ) -> Result<Self, LegacyError> {
        let mut it = args.into_iter();
        let mut options = Vec::new();
        let mut command = Vec::new();
        while let Some(arg) = it.next() {
            if arg == "--" {
                command.extend(it.by_ref());
                break;
            }
            match arg.to_str().and_then(|a| a.strip_prefix("--")) {
                Some(name) if known.contains(&name) => {
                    let value = it
                        .next()
                        .ok_or_else(|| LegacyError::Usage(format!("--{name} needs a value")))?;
                    options.push((name.to_owned(), value));
                }
                Some(name) => {
                    return Err(LegacyError::Usage(format!(
                        "unknown option --{name} (known: {})",
                        known.join(", ")
                    )));
                }
                None => {
                    command.push(arg);
                    command.extend(it.by_ref());
                    break;
                }
            }
        }
        Ok(Self { options, command })
    }

    /// The last value given for `--name`.
    pub fn value(&self, name: &str) -> Option<&OsStr> {
        self.options.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_os_str())
    }

    /// `--name` as a number of milliseconds.
    pub fn millis(&self, name: &str) -> Result<Option<Duration>, LegacyError> {
        self.value(name)
            .map(|v| {
                v.to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        LegacyError::Usage(format!("--{name} wants milliseconds, got {v:?}"))
                    })
            })
            .transpose()
    }

    /// The program and its arguments; an error when there is none.
    pub fn command(&self) -> Result<(OsString, Vec<OsString>), LegacyError> {
        match self.command.split_first() {
            Some((program, args)) => Ok((program.clone(), args.to_vec())),
            None => Err(LegacyError::Usage("missing -- PROGRAM [ARGS...]".into())),
        }
    }
}

/// The shell's view of a wait status: the exit code, or 128 + N when killed by signal N.
pub fn shell_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// The front end most replicas share: parses `[--name value]... -- program args` (options from
/// `known`), runs `run` with the options, the program and its arguments, and turns its outcome
/// into the exit code with `code_of` (which may print the replica's own report line). An error
/// is printed under `design` and gives `failure`.
pub fn main_with<T>(
    design: &str,
    args: impl IntoIterator<Item = OsString>,
    known: &[&str],
    failure: i32,
    run: impl FnOnce(&Args, &OsStr, &[OsString]) -> Result<T, LegacyError>,
    code_of: impl FnOnce(T) -> i32,
) -> i32 {
    let result = Args::parse(args, known).and_then(|a| {
        let (program, rest) = a.command()?;
        run(&a, &program, &rest)
    });
    match result {
        Ok(outcome) => code_of(outcome),
        Err(e) => report(design, &e, failure),
    }
}

/// Prints `error` as `racelab-legacy <design>: ...` and returns `code`.
pub fn report(design: &str, error: &LegacyError, code: i32) -> i32 {
    eprintln!("racelab-legacy {design}: {error}");
    code
}

/// Prints `error` as `racelab-legacy <design>: ...` and exits with `code`.
pub fn die(design: &str, error: &LegacyError, code: i32) -> ! {
    std::process::exit(report(design, error, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parse_splits_options_from_the_command() {
        let args = Args::parse(os(&["--duration-ms", "200", "--", "sleep", "1"]), &["duration-ms"])
            .expect("parse");
        assert_eq!(args.millis("duration-ms").expect("ms"), Some(Duration::from_millis(200)));
        assert_eq!(args.command().expect("cmd"), ("sleep".into(), os(&["1"])));
    }

    #[test]
    fn parse_rejects_unknown_options_and_missing_values() {
        assert!(Args::parse(os(&["--nope", "1"]), &["x"]).is_err());
        assert!(Args::parse(os(&["--x"]), &["x"]).is_err());
        let no_cmd = Args::parse(os(&["--x", "1"]), &["x"]).expect("parse");
        assert!(no_cmd.command().is_err());
    }

    #[test]
    fn shell_code_maps_signals_to_128_plus_n() {
        assert_eq!(shell_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(shell_code(ExitStatus::from_raw(9)), 137);
    }
}
