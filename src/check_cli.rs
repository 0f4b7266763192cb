//! `racelab check`: check any program, described by a spec file (`--spec`), by name
//! (`--program`, the specs that ship with the lab), or on the command line (`--role ROLE --
//! PROGRAM ARGS...`). The engine is `races::check`; this is its front end: arguments, the
//! short form's spec, progress, reports, exit codes (0 every case held, 1 one did not, 2 usage).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;
use races::check::{self, CaseReport, CaseVerdict, CheckConfig, CheckReport};
use races::conformance::Case;
use races::programs::{ArgTemplate, Install, Program, Promises, Role, Start};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Cases to check, by id (default: every case that applies to the program's roles).
    #[arg(value_name = "CASE")]
    cases: Vec<String>,
    /// The program's spec file (TOML; see docs/check.md).
    #[arg(long, value_name = "FILE", conflicts_with = "program")]
    spec: Option<PathBuf>,
    /// A program whose spec ships with the lab (`racelab list --programs`).
    #[arg(long, value_name = "NAME")]
    program: Option<String>,
    /// Short form: the program's role (repeat for several): wrapper, wrapper-timeout, init,
    /// subreaper.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Short form: the signals it forwards (comma-separated names, or `none`; default: HUP,
    /// INT, QUIT, USR1, USR2, WINCH, TERM).
    #[arg(long, value_name = "SIGNALS", value_delimiter = ',')]
    forwards: Vec<String>,
    /// Most schedules explored per case.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    budget: u32,
    /// Replays a finding must break in, every one of them (N of N), to be printed as one.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    confirm: u32,
    /// Replay this schedule (`racelab replay`'s syntax) instead of exploring: one case only.
    #[arg(long)]
    schedule: Option<String>,
    /// With --schedule: replays.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Output: a report for people (text), the versioned document of docs/json.md (json), or
    /// a JUnit XML report with one test case per case (junit).
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,
    /// Write the report to this file (atomically) instead of standard output.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Print the timeline of every case's deciding replay, not only of findings.
    #[arg(long)]
    timelines: bool,
    /// Print every replayed schedule and its verdict to standard error.
    #[arg(long, short)]
    verbose: bool,
    /// Short form: the program and its arguments; `{child}` marks where the lab's child goes
    /// (default: appended).
    #[arg(last = true, value_name = "PROGRAM ARGS")]
    command: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
    Junit,
}

/// The program the arguments name, and how a replay command names it.
fn program(args: &CheckArgs) -> anyhow::Result<(Program, String)> {
    let forms = [args.spec.is_some(), args.program.is_some(), !args.command.is_empty()];
    anyhow::ensure!(
        forms.iter().filter(|f| **f).count() == 1,
        "name the program once: --spec FILE, --program NAME, or --role ROLE -- PROGRAM ARGS..."
    );
    if !args.command.is_empty() {
        anyhow::ensure!(
            !args.roles.is_empty(),
            "the short form needs its role: --role {} -- {}",
            Role::ALL.map(Role::name).join("|"),
            args.command.join(" ")
        );
    } else {
        anyhow::ensure!(
            args.roles.is_empty() && args.forwards.is_empty(),
            "--role and --forwards describe a program given after `--`"
        );
    }
    if let Some(path) = &args.spec {
        let p = Program::load(path)?;
        return Ok((p, format!("--spec {}", shell_quote(&path.display().to_string()))));
    }
    if let Some(name) = &args.program {
        let p = races::programs::find(name).with_context(|| {
            format!(
                "unknown program {name:?}; programs that ship with the lab: {} (or give --spec FILE)",
                races::programs::known_names()
            )
        })?;
        return Ok((p.clone(), format!("--program {name}")));
    }
    short_form(args)
}

/// The spec of `--role ROLE -- PROGRAM ARGS...`.
fn short_form(args: &CheckArgs) -> anyhow::Result<(Program, String)> {
    let mut roles = Vec::new();
    for r in &args.roles {
        let role = Role::by_name(r).with_context(|| {
            format!("unknown role {r:?}; roles: {}", Role::ALL.map(Role::name).join(", "))
        })?;
        roles.push(role);
    }
    let forwards: Vec<String> = match args.forwards.as_slice() {
        [] => ["HUP", "INT", "QUIT", "USR1", "USR2", "WINCH", "TERM"].map(String::from).to_vec(),
        [none] if none == "none" => Vec::new(),
        list => list.iter().map(|s| s.trim().trim_start_matches("SIG").to_string()).collect(),
    };
    for s in &forwards {
        anyhow::ensure!(
            races::programs::signal_number(s).is_some(),
            "--forwards: unknown signal {s:?} (write HUP, TERM, ...)"
        );
    }
    let (cmd, rest) = args.command.split_first().context("no program after `--`")?;
    let path = which(cmd).with_context(|| {
        format!("program {cmd:?} not found (not a file, and not on PATH): install it first")
    })?;
    // The label is the file name the kernel shows for the running image (a symlink resolved).
    let real = std::fs::canonicalize(&path).unwrap_or(path);
    let mut argv: Vec<ArgTemplate> = rest.iter().cloned().map(ArgTemplate::One).collect();
    if !rest.iter().any(|a| a.contains("{child")) {
        argv.push(ArgTemplate::One("{child}".into()));
    }
    let name =
        Path::new(cmd).file_name().map_or_else(|| cmd.clone(), |f| f.to_string_lossy().into());
    let text = toml_of_short_form(&name, &roles, &real, &argv, &forwards);
    let p = Program::parse(&text, "<command line>")?;
    let mut again = format!("--role {}", args.roles.join(" --role "));
    if !args.forwards.is_empty() {
        again.push_str(&format!(" --forwards {}", args.forwards.join(",")));
    }
    again.push_str(" --");
    for a in &args.command {
        again.push(' ');
        again.push_str(&shell_quote(a));
    }
    Ok((p, again))
}

/// The short form as a spec's text, read by the same parser as a file (one set of checks).
fn toml_of_short_form(
    name: &str,
    roles: &[Role],
    path: &Path,
    argv: &[ArgTemplate],
    forwards: &[String],
) -> String {
    let p = Program {
        name: name.replace(char::is_whitespace, "_"),
        about: format!("{} (from the command line)", path.display()),
        label: None,
        roles: roles.to_vec(),
        install: Install { path: Some(path.display().to_string()), ..Install::default() },
        start: Start { argv: argv.to_vec(), ..Start::default() },
        promises: Promises { forwards: forwards.to_vec(), ..Promises::default() },
        report: Default::default(),
        cases: Default::default(),
    };
    p.to_toml()
}

fn which(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Path::new(cmd).is_file().then(|| PathBuf::from(cmd));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file())
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%{}".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn cases(args: &CheckArgs) -> anyhow::Result<Vec<&'static Case>> {
    if args.cases.is_empty() {
        return Ok(check::cases().collect());
    }
    let mut out = Vec::new();
    for name in &args.cases {
        let case = races::conformance::find_case(name).with_context(|| {
            let known: Vec<&str> = check::cases().map(|c| c.race).collect();
            format!("unknown case {name:?}; cases: {}", known.join(", "))
        })?;
        out.push(case);
    }
    Ok(out)
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (program, naming) = program(&args)?;
    let cases = cases(&args)?;
    if let Some(path) = &args.output {
        crate::ensure_output_dir(path)?;
    }
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    let binary = match program.binary(&runner) {
        Ok(b) => b,
        // A program that is not there is a setup error with the way to install it: exit 2.
        Err(missing) => anyhow::bail!("{missing}"),
    };
    if let Some(text) = &args.schedule {
        return replay_schedule(&args, &program, &naming, &cases, text, &runner);
    }
    let cfg = CheckConfig { budget: args.budget, confirm: args.confirm, ..CheckConfig::default() };
    let mut replayer = races::Replayer::new(&runner, races::RunAs::Caller);
    let live = std::io::stderr().is_terminal();
    let mut reports: Vec<CaseReport> = Vec::new();
    for case in &cases {
        let mut n = 0u32;
        let verbose = args.verbose;
        let mut progress = |schedule: &str, out: &races::ReplayOutput| {
            n += 1;
            if verbose {
                let schedule = if schedule.is_empty() { "(none)" } else { schedule };
                eprintln!(
                    "{} {} #{n}: {} <- {schedule}",
                    program.name,
                    case.race,
                    out.verdict.label()
                );
            } else if live {
                eprint!("\r{} {:4}: {n} replays", program.name, case.race);
            }
        };
        let r = check::check_case(&mut replayer, case, &program, &cfg, &mut progress);
        if live {
            eprint!("\r\x1b[K");
        }
        reports.push(r);
    }
    let report = CheckReport {
        schema: check::SCHEMA.to_string(),
        version: check::VERSION,
        program: program.name.clone(),
        label: program.label(),
        binary: Some(binary.display().to_string()),
        cases: reports,
        budget: cfg.budget,
        confirm: cfg.confirm,
    };
    let strict = std::env::var_os("RACELAB_STRICT").is_some_and(|v| v == "1");
    let text = match args.format {
        CheckFormat::Text => text(&report, &naming, args.timelines, strict),
        CheckFormat::Json => serde_json::to_string_pretty(&report).context("serialize")? + "\n",
        CheckFormat::Junit => junit(&report, &naming),
    };
    match &args.output {
        Some(path) => crate::write_atomically(path, &text)?,
        None => print!("{text}"),
    }
    Ok(if report.passed(strict) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `--schedule`: one schedule, `--repeat` times, each replay's verdict and the count.
fn replay_schedule(
    args: &CheckArgs,
    program: &Program,
    naming: &str,
    cases: &[&'static Case],
    text: &str,
    runner: &Path,
) -> anyhow::Result<ExitCode> {
    let [case] = cases else {
        anyhow::bail!(
            "--schedule replays one case: name exactly one (e.g. `racelab check E1 {naming} --schedule ...`)"
        )
    };
    let schedule = races::parse_schedule(text).context("malformed --schedule")?;
    if let Some(p) = schedule.points().find(|p| p.syscall().is_none()) {
        anyhow::bail!(
            "--schedule names `{p}`, a hook point: a program passes syscall points only ({}.<syscall>)",
            program.label()
        );
    }
    if let Err(why) = check::applies(case, program) {
        anyhow::bail!("{} does not apply to {}: {why}", case.race, program.name);
    }
    let mut replayer = races::Replayer::new(runner, races::RunAs::Caller);
    let mut broke = 0;
    let mut last = None;
    for _ in 0..args.repeat {
        let out = replayer.replay_program(case, program, Some(&schedule.to_string()));
        if matches!(out.verdict, races::verdict::Verdict::Reproduced { .. }) {
            broke += 1;
        }
        last = Some(out);
    }
    if let Some(out) = &last {
        println!("{}", out.trace.to_text());
        println!("verdict of the last replay: {}", out.verdict.summary());
    }
    println!(
        "{} against {}: broke {broke} of {} replays of `{}`",
        case.race, program.name, args.repeat, schedule
    );
    Ok(if broke == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn replay_command(case: &str, naming: &str, schedule: &str) -> String {
    format!("racelab check {case} {naming} --schedule {} --repeat 20", shell_quote(schedule))
}

fn text(r: &CheckReport, naming: &str, timelines: bool, strict: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "racelab check: {} ({}), points as `{}.<syscall>`; budget {} schedules per case, findings confirmed {} of {}",
        r.program,
        r.binary.as_deref().unwrap_or("?"),
        r.label,
        r.budget,
        r.confirm,
        r.confirm
    );
    let _ = writeln!(s);
    for c in &r.cases {
        let _ = writeln!(
            s,
            "{:4} {:14} {:>6.1} s {:>4} schedules  {}",
            c.case,
            c.verdict.label(),
            c.seconds,
            c.schedules,
            c.title
        );
        match &c.verdict {
            CaseVerdict::Broke { finding, .. } | CaseVerdict::Flaky { finding } => {
                for e in &finding.evidence {
                    let _ = writeln!(s, "     {e}");
                }
                let shown = match finding.schedule.as_str() {
                    "" => "none: the case's own setup breaks it",
                    s => s,
                };
                let _ = writeln!(s, "     schedule: {}", shown.replace('\n', "; "));
                if let Some(pair) = &finding.racing_pair {
                    let _ = writeln!(s, "     racing pair: {pair}");
                }
                if let CaseVerdict::Broke { known: Some(why), .. } = &c.verdict {
                    let _ = writeln!(s, "     known (the spec accepts it): {why}");
                }
                if matches!(c.verdict, CaseVerdict::Broke { .. }) {
                    let _ = writeln!(
                        s,
                        "     replay:   {}",
                        replay_command(&c.case, naming, &finding.schedule)
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "     timing-dependent: broke in {} of {} replays (not a replay to paste)",
                        finding.reproduced, finding.of
                    );
                }
                let _ = writeln!(s);
                for line in finding.found_by.trace.to_text().lines() {
                    let _ = writeln!(s, "     | {line}");
                }
            }
            CaseVerdict::NotApplicable { reason }
            | CaseVerdict::NotExplored { reason, .. }
            | CaseVerdict::Skipped { reason } => {
                let _ = writeln!(s, "     {reason}");
                if matches!(c.verdict, CaseVerdict::NotExplored { .. }) {
                    for line in &c.probe {
                        let _ = writeln!(s, "     probe: {line}");
                    }
                }
            }
            CaseVerdict::LabError { message } => {
                let _ = writeln!(s, "     {message}");
            }
            CaseVerdict::Held => {
                let _ = writeln!(
                    s,
                    "     {} lifecycle points reached, {} of {} schedules not forced",
                    c.points_reached, c.not_forced, c.schedules
                );
                if timelines {
                    for line in &c.probe {
                        let _ = writeln!(s, "     probe: {line}");
                    }
                }
            }
        }
    }
    let count = |f: &dyn Fn(&CaseVerdict) -> bool| r.cases.iter().filter(|c| f(&c.verdict)).count();
    let broke = count(&|v| matches!(v, CaseVerdict::Broke { .. }));
    let flaky = count(&|v| matches!(v, CaseVerdict::Flaky { .. }));
    let held = count(&|v| matches!(v, CaseVerdict::Held));
    let na = count(&|v| matches!(v, CaseVerdict::NotApplicable { .. }));
    let other = r.cases.len() - broke - flaky - held - na;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{}: {} of {} cases held, {broke} broke, {flaky} flaky, {na} n/a, {other} not explored, skipped or lab error{}",
        r.program,
        held,
        r.cases.len(),
        if r.passed(strict) { " (exit 0)" } else { " (exit 1)" }
    );
    s
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
        .chars()
        .filter(|c| (*c as u32) >= 0x20 || matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

fn junit(r: &CheckReport, naming: &str) -> String {
    let failures = r.cases.iter().filter(|c| c.verdict.fails()).count();
    let skipped = r
        .cases
        .iter()
        .filter(|c| {
            matches!(c.verdict, CaseVerdict::Skipped { .. } | CaseVerdict::NotApplicable { .. })
        })
        .count();
    let time: f64 = r.cases.iter().map(|c| c.seconds).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuite name=\"racelab check {}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        esc(&r.program),
        r.cases.len()
    );
    for c in &r.cases {
        let _ = write!(
            s,
            "  <testcase classname=\"racelab.check.{}\" name=\"{} {}\" time=\"{:.3}\"",
            esc(&r.program),
            esc(&c.case),
            esc(&c.title),
            c.seconds
        );
        match &c.verdict {
            CaseVerdict::Held => s.push_str("/>\n"),
            CaseVerdict::Broke { finding, known: Some(why) } => {
                let out = format!("broke, known: {why}\nschedule: {}", finding.schedule);
                let _ = writeln!(s, ">\n    <system-out>{}</system-out>\n  </testcase>", esc(&out));
            }
            CaseVerdict::NotApplicable { reason } | CaseVerdict::Skipped { reason } => {
                let _ = writeln!(s, ">\n    <skipped message=\"{}\"/>\n  </testcase>", esc(reason));
            }
            CaseVerdict::Broke { finding, known: None } | CaseVerdict::Flaky { finding } => {
                let body = format!(
                    "{}\nschedule: {}\nracing pair: {}\nreplay: {}\n\n{}",
                    finding.evidence.join("\n"),
                    finding.schedule,
                    finding.racing_pair.as_deref().unwrap_or("none"),
                    replay_command(&c.case, naming, &finding.schedule),
                    finding.found_by.trace.to_text()
                );
                let _ = writeln!(
                    s,
                    ">\n    <failure message=\"{} ({} of {})\">{}</failure>\n  </testcase>",
                    esc(&c.verdict.label()),
                    finding.reproduced,
                    finding.of,
                    esc(&body)
                );
            }
            CaseVerdict::NotExplored { lab_limit: true, reason } => {
                let _ = writeln!(s, ">\n    <skipped message=\"{}\"/>\n  </testcase>", esc(reason));
            }
            CaseVerdict::NotExplored { reason, .. } | CaseVerdict::LabError { message: reason } => {
                let _ = writeln!(
                    s,
                    ">\n    <error message=\"{}\">{}</error>\n  </testcase>",
                    esc(&c.verdict.label()),
                    esc(reason)
                );
            }
        }
    }
    s.push_str("</testsuite>\n");
    s
}

/// `racelab docs --check`: every bundled program checked from scratch, written to `out`.
pub fn heldout(out: &Path, confirm: u32) -> anyhow::Result<ExitCode> {
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    let cfg = CheckConfig { confirm, ..CheckConfig::default() };
    let mut replayer = races::Replayer::new(&runner, races::RunAs::Caller);
    let mut reports = Vec::new();
    for program in races::programs::all() {
        let binary = program.binary(&runner).ok();
        let mut cases = Vec::new();
        for case in check::cases() {
            eprintln!("{} {}", program.name, case.race);
            cases.push(check::check_case(&mut replayer, case, program, &cfg, &mut |_, _| {}));
        }
        reports.push(CheckReport {
            schema: check::SCHEMA.to_string(),
            version: check::VERSION,
            program: program.name.clone(),
            label: program.label(),
            binary: binary.map(|b| b.display().to_string()),
            cases,
            budget: cfg.budget,
            confirm: cfg.confirm,
        });
    }
    let command = if confirm == 20 {
        "racelab docs --check".to_string()
    } else {
        format!("racelab docs --check --confirm {confirm}")
    };
    crate::write_atomically(out, &check::heldout_page(&reports, &command))?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `racelab explore --program NAME | --spec FILE`: what `racelab check` does, named by explore's
/// options.
pub struct BlackBox {
    pub program: Option<String>,
    pub spec: Option<PathBuf>,
    pub cases: Vec<String>,
    pub budget: u32,
    pub confirm: u32,
    pub verbose: bool,
}

/// Explores a black-box program: `racelab check` with `b`'s settings.
pub fn explore_program(b: BlackBox) -> anyhow::Result<ExitCode> {
    check(CheckArgs {
        cases: b.cases,
        spec: b.spec,
        program: b.program,
        roles: Vec::new(),
        forwards: Vec::new(),
        budget: b.budget,
        confirm: b.confirm,
        schedule: None,
        repeat: 1,
        format: CheckFormat::Text,
        output: None,
        timelines: false,
        verbose: b.verbose,
        command: Vec::new(),
    })
}
