//! supervise: the reference supervisor as a drop-in for GNU `timeout` and for `tini`.
//!
//! `supervise [--timeout D] [--kill-after D] [--signal SIG] [--containment group|cgroup|pidns|none]
//! [--subreaper] [--preserve-status] [--report json] -- CMD ARGS...`
//!
//! Exit codes follow GNU timeout: 124 timed out (unless --preserve-status), 125 supervise
//! failed (or the child could not be killed), 126 cannot execute, 127 not found, 137 after
//! SIGKILL, 128+N killed by signal N, else the child's code. Usage errors exit 2. As PID 1 (in a
//! container) it reaps every orphan and forwards signals, like tini.
//!
//! No Rust runtime start-up (`#![no_main]`): this binary is measured by its start-up
//! (docs/benchmarks.md, whole_process: issue #24), and most of what that runtime does before
//! `main` is of no use here: it reads /proc/self/maps to find the main thread's stack and maps
//! an alternate signal stack for a stack-overflow message (about 15 syscalls and the page
//! faults of the code that makes them). The two parts a program relies on are done by hand,
//! right after the signals are blocked: fds 0-2 open (else a file opened later lands on them
//! and receives output, in this process or in the child that inherits them), and SIGPIPE
//! ignored (a closed stderr is an error, not a death; the child starts with SIG_DFL either
//! way). What is given up: std's message for a stack overflow (it is a plain SIGSEGV now) and
//! the thread's name in a panic message (`'<unnamed>'`, not `'main'`).
//! The arguments still come from `std::env::args_os`: glibc hands them to std's `.init_array`
//! hook, which runs either way. Only with glibc: other C libraries (musl) do not pass them to
//! that hook, so there the binary keeps Rust's `main` and its start-up.
#![cfg_attr(all(not(test), target_env = "gnu"), no_main)]
// `deny`, not `forbid`: the C entry point `main` below is the one exception.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use racelab_supervisor::{Config, Containment, Signal, StopReason, run};

#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "supervise",
    version,
    about = "Run a command with a timeout, forward signals, stop its whole tree"
)]
struct Cli {
    /// Send the stop signal after this long ("10" = seconds, "1.5s", "100ms", "2m", "1h", "1d").
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Grace period between the stop signal and SIGKILL (GNU timeout's -k). Always bounded.
    #[arg(long = "kill-after", short = 'k', value_parser = parse_duration, default_value = "10s")]
    kill_after: Duration,
    /// Signal sent when the timeout expires: TERM, SIGTERM or 15.
    #[arg(long, short = 's', value_parser = parse_signal, default_value = "TERM")]
    signal: Signal,
    /// How the child's tree is contained.
    #[arg(long, value_enum, default_value = "group")]
    containment: ContainmentArg,
    /// Become a child subreaper and reap every orphan (implied when running as PID 1).
    #[arg(long)]
    subreaper: bool,
    /// On timeout exit with the child's status instead of 124.
    #[arg(long)]
    preserve_status: bool,
    /// Bounded wait after SIGKILL (and after cgroup.kill) before reporting "unkillable".
    #[arg(long = "kill-wait", value_parser = parse_duration, default_value = "1s")]
    kill_wait: Duration,
    /// Print a machine-readable report as the last line on stderr.
    #[arg(long, value_enum)]
    report: Option<ReportFormat>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
enum ContainmentArg {
    Group,
    Cgroup,
    Pidns,
    None,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
enum ReportFormat {
    Json,
}

impl Cli {
    /// The command line `supervise -- CMD ARGS...`, every option at its default: what clap
    /// gives for it (a unit test compares the two), without building clap's parser. That form
    /// is how supervise runs as a container's PID 1, where its start-up is the cost that
    /// counts, and building the parser faults in clap's code and heap pages on every start.
    /// `None` for any other command line, which clap parses (help, errors, options).
    fn only_a_command(mut args: impl Iterator<Item = OsString>) -> Option<Cli> {
        let _program = args.next()?;
        if args.next()? != "--" {
            return None;
        }
        let command: Vec<OsString> = args.collect();
        if command.is_empty() {
            return None;
        }
        Some(Cli {
            timeout: None,
            kill_after: Duration::from_secs(10),
            signal: Signal::SIGTERM,
            containment: ContainmentArg::Group,
            subreaper: false,
            preserve_status: false,
            kill_wait: Duration::from_secs(1),
            report: None,
            command,
        })
    }
}

/// GNU timeout durations: a decimal number with an optional unit (s, m, h, d; plus ms).
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let value: f64 = num.parse().with_context(|| format!("invalid duration {text:?}"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => bail!("invalid duration unit {unit:?} in {text:?} (use s, ms, m, h or d)"),
    };
    Duration::try_from_secs_f64(value * scale)
        .with_context(|| format!("duration {text:?} out of range"))
}

fn parse_signal(text: &str) -> anyhow::Result<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("unknown signal number {n}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().with_context(|| format!("unknown signal {text:?}"))
}

/// The process's entry point, called by the C runtime (`__libc_start_main`) in place of Rust's
/// `lang_start`. Exits through `std::process::exit`, which flushes stdout (clap's `--help`) as a
/// return from Rust's `main` would; a panic gives exit code 101, as it would from Rust's
/// `main`, after unwinding (so a live session's Drop still kills the child's tree).
#[cfg(all(not(test), target_env = "gnu"))]
// SAFETY: `no_mangle` makes this the program's one `main` symbol, which nothing else defines:
// the crate is `no_main`, so rustc emits no `main` of its own, and no library of this binary
// defines one. Its signature is the one the C runtime calls (`int main(int, char **)`, the
// third argument of glibc's call ignored, as C allows). It unwinds nothing into the C caller:
// every panic is caught inside.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let code = std::panic::catch_unwind(rust_main).unwrap_or(101);
    std::process::exit(code)
}

/// Without glibc, Rust's `main`: std's start-up is where the arguments come from (crate docs).
#[cfg(all(not(test), not(target_env = "gnu")))]
fn main() {
    std::process::exit(rust_main())
}

/// Everything `main` does, with std's usual footing under it.
// Unit tests link libtest's `main`, not the C entry point above: nothing calls this there.
#[cfg_attr(test, allow(dead_code))]
fn rust_main() -> i32 {
    // First thing: a SIGTERM that arrives while we parse arguments must wait for the signalfd,
    // not kill us (a signal right after start is the case where supervisors break).
    if let Err(e) = racelab_supervisor::block_signals(&racelab_supervisor::DEFAULT_FORWARD) {
        eprintln!("supervise: {e}");
        return 125;
    }
    // What Rust's runtime start-up would have done (see the crate docs). An fd 0-2 that cannot
    // be opened on /dev/null made std abort: it is a failure of ours here.
    if let Err(e) = racelab_sys::stdio::open_closed_std_fds() {
        eprintln!("supervise: cannot open /dev/null on a closed standard fd: {e}");
        return 125;
    }
    if let Err(e) = racelab_sys::stdio::ignore_sigpipe() {
        eprintln!("supervise: ignore SIGPIPE: {e}");
        return 125;
    }
    let cli = Cli::only_a_command(std::env::args_os()).unwrap_or_else(Cli::parse);
    match supervise(&cli) {
        Ok(code) => u8::try_from(code).map_or(125, i32::from),
        Err(e) => {
            eprintln!("supervise: {e:#}");
            125
        }
    }
}

fn supervise(cli: &Cli) -> anyhow::Result<i32> {
    let config = Config {
        timeout: cli.timeout,
        grace: cli.kill_after,
        stop_signal: cli.signal,
        containment: match cli.containment {
            ContainmentArg::Group => Containment::Group,
            ContainmentArg::Cgroup => Containment::Cgroup,
            ContainmentArg::Pidns => Containment::PidNamespace,
            ContainmentArg::None => Containment::None,
        },
        subreaper: cli.subreaper,
        kill_wait: cli.kill_wait,
        ..Config::default()
    };
    let (program, args) = cli.command.split_first().context("no command given")?;
    let report = run(&config, program, args)?;
    let cmd = program.to_string_lossy();
    match report.reason {
        StopReason::ForcedKill if report.signals.first().is_some_and(|s| s.signo != 9) => {
            let first = report.signals.first().map_or("SIGTERM", |s| s.name.as_str());
            eprintln!(
                "supervise: {cmd} did not exit after {first}; sent SIGKILL after {:?}",
                cli.kill_after
            );
        }
        StopReason::Unkillable => {
            let names: Vec<String> = report
                .survivors
                .iter()
                .map(|s| format!("{} ({}) state {}", s.pid, s.name, s.state))
                .collect();
            eprintln!("supervise: {cmd} could not be killed; still alive: {}", names.join(", "));
        }
        StopReason::NotFound | StopReason::ExecFailed => {
            let err = report.exec_error.as_deref().unwrap_or("unknown error");
            eprintln!("supervise: failed to run command '{cmd}': {err}");
        }
        _ => {}
    }
    if let Some(ReportFormat::Json) = cli.report {
        eprintln!("{}", serde_json::to_string(&report)?);
    }
    Ok(report.exit_code(cli.preserve_status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_gnu_timeout() {
        assert_eq!(parse_duration("10").ok(), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("100ms").ok(), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_bare_command_line_is_what_clap_makes_of_it() {
        for line in [
            &["supervise", "--", "/bin/true"][..],
            &["supervise", "--", "sh", "-c", "exit 3", "--timeout", "1"],
            &["supervise", "--", "--", "-k", "--help"],
        ] {
            let args = || line.iter().map(OsString::from);
            let fast = Cli::only_a_command(args()).expect("the fast path takes it");
            let clap = Cli::try_parse_from(args()).expect("clap parses it");
            assert_eq!(fast, clap, "{line:?}");
        }
        // Anything else is clap's: options, no command, no `--` first.
        for line in [
            &["supervise", "--timeout", "1", "--", "true"][..],
            &["supervise", "--"],
            &["supervise", "true"],
            &["supervise"],
            &["supervise", "--help"],
        ] {
            assert_eq!(Cli::only_a_command(line.iter().map(OsString::from)), None, "{line:?}");
        }
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").ok(), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("sigkill").ok(), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("2").ok(), Some(Signal::SIGINT));
        assert!(parse_signal("NOPE").is_err());
    }
}
