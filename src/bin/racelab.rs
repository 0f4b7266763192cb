//! racelab: the lab's command line.
//!
//! `racelab` (no arguments) replays the whole catalog against every design and prints the
//! verdict matrix. `racelab doctor` prints what this machine allows. `racelab list` lists the
//! races. The binary is also the lab's runner executable: the sandbox re-executes it with a
//! hidden first argument to run a scenario inside a fresh namespace.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use races::catalog::{self, DesignId};
use races::{Format, ReplayPlan};
use std::process::ExitCode;

#[path = "../report.rs"]
mod report;

#[derive(Parser)]
#[command(name = "racelab", version, about = "Deterministic replays of process-lifecycle races")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the capabilities this machine offers the lab, and what each missing one skips.
    Doctor,
    /// List the catalogued races with their origin and the designs they run against.
    List,
    /// Replay races against designs and print the verdict matrix.
    Replay(ReplayArgs),
    /// Turn criterion's results (`cargo bench -p racelab-benches`, and the replay bench
    /// `cargo bench -p races --bench replay`) into docs/benchmarks.md and docs/benchmarks.svg.
    Report {
        /// criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        criterion: std::path::PathBuf,
        /// The Markdown report to write.
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: std::path::PathBuf,
        /// The SVG chart to write.
        #[arg(long, default_value = "docs/benchmarks.svg")]
        svg: std::path::PathBuf,
    },
    /// Regenerate docs/races: one page per race, with timelines from real replays.
    Docs {
        /// The directory to write the pages to.
        #[arg(long, default_value = "docs/races")]
        out: std::path::PathBuf,
    },
}

#[derive(clap::Args, Default)]
struct ReplayArgs {
    /// Races to replay, by id or name (default: all).
    races: Vec<String>,
    /// Designs to replay against (default: every design the race applies to).
    #[arg(long = "design", value_name = "DESIGN")]
    designs: Vec<String>,
    /// Replace the race's schedule (hooks text form: `a < b; on c: action(arg)`).
    #[arg(long)]
    schedule: Option<String>,
    /// Replays per race and design.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

#[derive(Clone, Copy, ValueEnum, Default)]
enum OutputFormat {
    #[default]
    Text,
    Json,
    Mermaid,
}

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its runner; that path never returns.
    races::runner::dispatch_if_runner();

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
    match cli.command.unwrap_or(Command::Replay(ReplayArgs::default())) {
        Command::Doctor => {
            let runner = std::env::current_exe().context("cannot find this executable")?;
            print!("{}", racelab_sandbox::Capabilities::probe(&runner));
            Ok(ExitCode::SUCCESS)
        }
        Command::List => {
            for race in catalog::CATALOG {
                let designs: Vec<String> = race
                    .designs
                    .iter()
                    .map(|(d, e)| format!("{} ({})", d.name(), e.label()))
                    .collect();
                println!("{:4} {:34} {}", race.id, race.slug, race.title);
                println!("     origin: {}", race.origin);
                println!("     designs: {}", designs.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => replay(args),
        Command::Docs { out } => docs(&out),
        Command::Report { criterion, out, svg } => {
            report::write_report(&criterion, &out, &svg)
                .with_context(|| format!("cannot write the report from {}", criterion.display()))?;
            println!("wrote {} and {}", out.display(), svg.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn docs(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for race in catalog::CATALOG {
        let page = races::race_page(&runner, race);
        let path = out.join(races::docs::file_name(race));
        // Write a sibling file and rename it over the page: a reader never sees half a page.
        let tmp = path.with_extension("md.tmp");
        std::fs::write(&tmp, page).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut plan = ReplayPlan::default();
    for name in &args.races {
        let race = catalog::find(name).with_context(|| {
            format!("unknown race {name:?}; known races: {}", catalog::known_names())
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
        plan.schedule = Some(races::parse_schedule(text).context("malformed --schedule")?);
    }
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    plan.repeat = args.repeat;
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    let format = match args.format {
        OutputFormat::Text => Format::Text,
        OutputFormat::Json => Format::Json,
        OutputFormat::Mermaid => Format::Mermaid,
    };
    let report = races::run_plan(&runner, &plan);
    print!("{}", report.render(format));
    Ok(if report.all_as_expected() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
