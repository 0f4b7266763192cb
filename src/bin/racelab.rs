//! racelab: the lab's command line.
//!
//! `racelab` (no arguments) replays the whole catalog against every design and prints the
//! verdict matrix: it is `racelab replay` with every default, from the same clap definition.
//! `racelab doctor` prints what this machine allows. `racelab list` lists the races. The
//! binary is also the lab's runner executable: the sandbox re-executes it with a hidden first
//! argument to run a scenario inside a fresh namespace.
//!
//! Exit codes: 0 every cell as expected, 1 a cell was not, 2 a usage error (unknown race or
//! design, malformed schedule, bad option) or a failure of the lab's own setup.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use races::catalog::{self, DesignId};
use races::{Format, ReplayPlan};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[path = "../check_cli.rs"]
mod check_cli;
#[path = "../explore_cli.rs"]
mod explore_cli;

#[derive(Parser)]
#[command(
    name = "racelab",
    version,
    about = "Deterministic replays of process-lifecycle races",
    long_about = "Deterministic replays of process-lifecycle races.\n\nWith no subcommand, racelab \
                  replays the whole catalog against every design and prints the verdict matrix \
                  (the same as `racelab replay`; replay's options work here too).",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand: `racelab replay`'s arguments.
    #[command(flatten)]
    replay: ReplayArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print the capabilities this machine offers the lab, and what each missing one skips.
    Doctor {
        /// Output format.
        #[arg(long, value_enum, default_value_t = InfoFormat::Text)]
        format: InfoFormat,
    },
    /// List the catalogued races with their origin and the designs they run against.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = InfoFormat::Text)]
        format: InfoFormat,
        /// List the black-box programs instead (and whether each is installed here).
        #[arg(long)]
        programs: bool,
    },
    /// Replay races against designs and print the verdict matrix (the default command).
    Replay(ReplayArgs),
    /// Turn criterion's results (`cargo bench -p racelab-benches`, and the replay bench
    /// `cargo bench -p races --bench replay`) into docs/benchmarks.md and docs/benchmarks.svg.
    Report {
        /// criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        criterion: PathBuf,
        /// The Markdown report to write.
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// The SVG chart to write.
        #[arg(long, default_value = "docs/benchmarks.svg")]
        svg: PathBuf,
    },
    /// Draw random schedules over the points a design passes, replay them on real processes,
    /// and shrink the first that breaks an invariant to a minimal `racelab replay` command.
    /// Exit 0 when legacy designs broke and the reference did not, 1 otherwise.
    Explore(explore_cli::ExploreArgs),
    /// Check any program (a spec file, a bundled program, or `--role ROLE -- PROGRAM ARGS`):
    /// every case that applies to its roles, its windows found by exploring its own syscalls.
    /// Exit 0 when every case held, 1 when one broke (the finding printed with its replay
    /// command), 2 for a usage error.
    Check(check_cli::CheckArgs),
    /// Regenerate docs/races: one page per race, with timelines from real replays. With
    /// --peers, docs/peers.md instead: the conformance matrix of the black-box programs.
    Docs {
        /// The directory to write the race pages to.
        #[arg(long, default_value = "docs/races")]
        out: PathBuf,
        /// Write docs/peers.md (the black-box conformance matrix) instead of the race pages.
        #[arg(long)]
        peers: bool,
        /// With --peers: replays per cell.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// With --peers: the page to write.
        #[arg(long, default_value = "docs/peers.md")]
        peers_out: PathBuf,
        /// Write docs/check-heldout.md instead: `racelab check` on every bundled program from
        /// scratch, its verdicts beside the matrix's.
        #[arg(long, conflicts_with = "peers")]
        check: bool,
        /// With --check: findings are confirmed in this many replays each.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        confirm: u32,
        /// With --check: the page to write.
        #[arg(long, default_value = "docs/check-heldout.md")]
        check_out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Races to replay, by id or name (default: all).
    races: Vec<String>,
    /// Designs to replay against (default: every design the race applies to).
    #[arg(long = "design", value_name = "DESIGN")]
    designs: Vec<String>,
    /// Replay against this unmodified program instead, parked at its syscalls (see
    /// `racelab list --programs`).
    #[arg(long = "program", value_name = "PROGRAM", conflicts_with = "designs")]
    programs: Vec<String>,
    /// Replay the whole conformance matrix: every case against every program.
    #[arg(long = "programs", conflicts_with_all = ["designs", "programs"])]
    all_programs: bool,
    /// Replace the race's schedule (hooks text form: `a < b; on c: action(arg)`).
    #[arg(long)]
    schedule: Option<String>,
    /// Replays per race and design.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Output format: the matrix with timelines (text), the versioned summary of docs/json.md
    /// (json), a JUnit XML report with one test case per cell (junit), or Mermaid diagrams.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Write the report to this file (atomically: a reader never sees half a report) instead
    /// of standard output.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// With the text format: every cell's timeline, not only those of cells that were not as
    /// expected.
    #[arg(long)]
    timelines: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
    Junit,
    Mermaid,
}

#[derive(Clone, Copy, ValueEnum)]
enum InfoFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its runner; that path never returns.
    races::runner::dispatch_if_runner();
    // SIGINT, SIGTERM, SIGHUP: end every replay in flight, clean up, then exit.
    races::end_replays_on_interrupt();

    // clap prints usage errors itself and exits 2.
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("racelab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => replay(cli.replay),
        Some(Command::Replay(args)) => replay(args),
        Some(Command::Doctor { format }) => {
            let runner = std::env::current_exe().context("cannot find this executable")?;
            let caps = racelab_sandbox::Capabilities::probe(&runner);
            match format {
                InfoFormat::Text => print!("{caps}"),
                InfoFormat::Json => {
                    println!("{}", to_json(&races::schema::DoctorDocument::from_probe(&caps))?)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::List { format, programs: true }) => {
            let runner = std::env::current_exe().context("cannot find this executable")?;
            let doc = races::schema::ProgramsDocument::probe(&runner);
            match format {
                InfoFormat::Text => {
                    for p in &doc.programs {
                        let state = p.binary.as_deref().unwrap_or(&p.missing);
                        println!("{:14} {}", p.name, p.about);
                        println!("               points as `{}.<syscall>`; {state}", p.label);
                    }
                }
                InfoFormat::Json => println!("{}", to_json(&doc)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::List { format, programs: false }) => {
            match format {
                InfoFormat::Text => list_text(),
                InfoFormat::Json => {
                    println!("{}", to_json(&races::schema::ListDocument::catalog())?)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Docs { peers: true, repeat, peers_out, .. }) => peers(&peers_out, repeat),
        Some(Command::Docs { check: true, confirm, check_out, .. }) => {
            check_cli::heldout(&check_out, confirm)
        }
        Some(Command::Docs { out, .. }) => docs(&out),
        Some(Command::Explore(args)) => explore_cli::explore(args),
        Some(Command::Check(args)) => check_cli::check(args),
        Some(Command::Report { criterion, out, svg }) => {
            racelab_bench_report::write_report(&criterion, &out, &svg)
                .with_context(|| format!("cannot write the report from {}", criterion.display()))?;
            println!("wrote {} and {}", out.display(), svg.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn to_json(doc: &impl serde::Serialize) -> anyhow::Result<String> {
    serde_json::to_string_pretty(doc).context("cannot serialize the document")
}

fn list_text() {
    for race in catalog::CATALOG {
        let designs: Vec<String> =
            race.designs.iter().map(|(d, e)| format!("{} ({})", d.name(), e.label())).collect();
        println!("{:4} {:34} {}", race.id, race.slug, race.title);
        println!("     origin: {}", race.origin);
        println!("     designs: {}", designs.join(", "));
    }
}

/// Writes `text` to `path` through a sibling file renamed over it: a reader never sees half.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().context("the output path has no file name")?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot replace {}", path.display())
    })
}

fn docs(out: &Path) -> anyhow::Result<ExitCode> {
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for race in catalog::CATALOG {
        let page = races::race_page(&runner, race);
        let path = out.join(races::docs::file_name(race));
        // Pids, times and the order of unrelated events vary between replays: a page is only
        // rewritten when what it asserts changed, so the pages are byte-stable.
        if std::fs::read_to_string(&path).is_ok_and(|old| races::docs::same_page(&old, &page)) {
            println!("unchanged {}", path.display());
            continue;
        }
        write_atomically(&path, &page)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn peers(out: &Path, repeat: u32) -> anyhow::Result<ExitCode> {
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    let programs = ReplayPlan {
        repeat,
        programs: races::programs::all().iter().collect(),
        ..ReplayPlan::default()
    };
    let replica = ReplayPlan {
        repeat,
        races: ["Q1", "Q3", "Q4", "Q4b"].iter().filter_map(|r| catalog::find(r)).collect(),
        designs: vec![DesignId::GlobalAtomics],
        ..ReplayPlan::default()
    };
    let bar = progress_bar(&programs);
    let mut tick = |_: &races::matrix::Cell, _: &races::ReplayOutput| {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let a = races::run_plan_with(&runner, &programs, &mut tick);
    let b = races::run_plan_with(&runner, &replica, &mut tick);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let command = if repeat == 1 {
        "racelab docs --peers".to_string()
    } else {
        format!("racelab docs --peers --repeat {repeat}")
    };
    write_atomically(out, &races::docs::peers_page(&a, &b, &command))?;
    println!("wrote {}", out.display());
    let ok = a.all_as_expected() && b.all_as_expected();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The plan of `args`, or a usage error naming what was wrong.
fn plan(args: &ReplayArgs) -> anyhow::Result<ReplayPlan> {
    let mut plan = ReplayPlan { repeat: args.repeat, ..ReplayPlan::default() };
    for name in &args.programs {
        let program = races::programs::find(name).with_context(|| {
            format!("unknown program {name:?}; known programs: {}", races::programs::known_names())
        })?;
        plan.programs.push(program);
    }
    if args.all_programs {
        plan.programs = races::programs::all().iter().collect();
    }
    for name in &args.races {
        let race = if plan.programs.is_empty() {
            catalog::find(name)
        } else {
            races::conformance::find_race(name)
        };
        let race = race.with_context(|| {
            let cases: Vec<&str> = races::conformance::CASES.iter().map(|c| c.race).collect();
            format!(
                "unknown race {name:?}; known races: {}; black-box cases (with --program): {}",
                catalog::known_names(),
                cases.join(", ")
            )
        })?;
        plan.races.push(race);
    }
    for name in &args.designs {
        let design = DesignId::by_name(name).with_context(|| {
            let known: Vec<&str> = DesignId::ALL.iter().map(|d| d.name()).collect();
            format!("unknown design {name:?}; known designs: {}", known.join(", "))
        })?;
        plan.designs.push(design);
    }
    if let Some(text) = &args.schedule {
        let schedule = races::parse_schedule(text).context("malformed --schedule")?;
        // Hook points live in designs built with the lab's points, syscall points in programs
        // run unmodified: a schedule cannot mix the two, and must fit what it replays against.
        let black_box = !plan.programs.is_empty();
        if let Some(p) = schedule.points().find(|p| p.syscall().is_some() != black_box) {
            anyhow::bail!(
                "--schedule names `{p}`, a {} point, but replays against {}: {}",
                if black_box { "hook" } else { "syscall" },
                if black_box { "a program (--program)" } else { "a design" },
                if black_box {
                    "a program passes syscall points only (program.syscall, see `racelab list --programs`)"
                } else {
                    "syscall points (program.syscall) need --program"
                }
            );
        }
        plan.schedule = Some(schedule);
    }
    anyhow::ensure!(
        !races::plan_cells(&plan).is_empty() || !races::program_cells(&plan).is_empty(),
        "no race of {:?} runs against {:?}{:?} (the conformance matrix has no such cell)",
        args.races,
        args.designs,
        args.programs
    );
    if let Some(path) = &args.output {
        ensure_output_dir(path)?;
    }
    Ok(plan)
}

/// A usage error unless the directory `--output PATH` is to be written in exists: checked
/// before anything runs, so a long run never ends in a report it cannot write.
fn ensure_output_dir(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    anyhow::ensure!(dir.is_dir(), "--output {}: no directory {}", path.display(), dir.display());
    Ok(())
}

/// A progress bar on the terminal for long runs; nothing when stdout is not a terminal.
fn progress_bar(plan: &ReplayPlan) -> Option<indicatif::ProgressBar> {
    if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    let runnable = races::program_cells(plan)
        .iter()
        .filter(|(_, c)| matches!(c.expect, races::conformance::CellExpect::Run(_)))
        .count();
    let total = (races::plan_cells(plan).len() + runnable) as u64 * u64::from(plan.repeat);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} replays, eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    let format = match args.format {
        OutputFormat::Text if args.timelines => Format::TextTimelines,
        OutputFormat::Text => Format::Text,
        OutputFormat::Json => Format::Json,
        OutputFormat::Junit => Format::Junit,
        OutputFormat::Mermaid => Format::Mermaid,
    };
    let bar = progress_bar(&plan);
    let mut unexpected = 0u64;
    let report = races::run_plan_with(&runner, &plan, &mut |cell, out| {
        if let Some(bar) = &bar {
            if cell.expect.check(&out.verdict).is_err() {
                unexpected += 1;
            }
            bar.set_message(format!(
                "{} against {}{}",
                cell.race.id,
                cell.design.name(),
                if unexpected > 0 {
                    format!(", {unexpected} not as expected")
                } else {
                    String::new()
                }
            ));
            bar.inc(1);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let text = report.render(format);
    match &args.output {
        Some(path) => write_atomically(path, &text)?,
        None => print!("{text}"),
    }
    Ok(if report.all_as_expected() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
