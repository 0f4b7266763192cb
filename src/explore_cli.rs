//! `racelab explore`: random schedules on real processes, shrunk to a minimal replay (the
//! engine is `races::explore`; this is its front end: arguments, progress, reports).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;
use races::catalog::{self, DesignId, Race};
use races::explore::{self, Exploration, ExploreConfig, SearchStrategy};
use races::verdict::Expect;

#[derive(clap::Args)]
pub struct ExploreArgs {
    /// Races to explore, by id or name (default: all).
    races: Vec<String>,
    /// Designs to explore (default: every design the race runs against).
    #[arg(long = "design", value_name = "DESIGN")]
    designs: Vec<String>,
    /// Schedules to draw per race, design and strategy.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    cases: u32,
    /// The proptest RNG's seed: the same seed draws the same schedules.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How schedules are drawn: uniformly at random, PCT-style priorities, or both in turn.
    #[arg(long, value_enum, default_value_t = StrategyArg::Random)]
    strategy: StrategyArg,
    /// PCT's bug depth d (d - 1 priority change points).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    depth: u32,
    /// Also replay the race with no schedule at all until the same violation appears (the
    /// brute-force column), at most --stress-cap times.
    #[arg(long)]
    stress: bool,
    /// Most replays of the brute-force column.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    stress_cap: u32,
    /// Most seconds the brute-force column may take per race and design.
    #[arg(long, value_name = "SECS")]
    stress_budget: Option<u64>,
    /// Replays of a shrunk schedule with `racelab replay`'s own patience.
    #[arg(long, default_value_t = 5)]
    confirm: u32,
    /// Most replays proptest spends shrinking a finding.
    #[arg(long, default_value_t = 256)]
    max_shrink_iters: u32,
    /// The directory of regression files (default: races/proptest-regressions/explore of
    /// this source tree).
    #[arg(long, value_name = "DIR")]
    regressions: Option<PathBuf>,
    /// Neither replay nor record regression files: explore from scratch.
    #[arg(long, conflicts_with = "regressions")]
    no_regressions: bool,
    /// Print every case's schedule and verdict to standard error.
    #[arg(long, short)]
    verbose: bool,
    /// Output: a summary per exploration (text) or the figures table (markdown).
    #[arg(long, value_enum, default_value_t = ExploreFormat::Text)]
    format: ExploreFormat,
    /// Explore a black-box program whose spec ships with the lab instead of a design: the
    /// engine of `racelab check` (the races are its cases; --cases is the budget per case,
    /// --confirm the replays a finding must break in, every one).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["designs", "spec"])]
    program: Option<String>,
    /// Explore the black-box program of this spec file (see --program).
    #[arg(long, value_name = "FILE", conflicts_with = "designs")]
    spec: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    Random,
    Pct,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExploreFormat {
    Text,
    Markdown,
}

/// The (race, design) cells of `args`, or a usage error.
fn cells(args: &ExploreArgs) -> anyhow::Result<Vec<(&'static Race, DesignId)>> {
    let mut races = Vec::new();
    for name in &args.races {
        races.push(catalog::find(name).with_context(|| {
            format!("unknown race {name:?}; known races: {}", catalog::known_names())
        })?);
    }
    let mut designs = Vec::new();
    for name in &args.designs {
        designs.push(DesignId::by_name(name).with_context(|| {
            let known: Vec<&str> = DesignId::ALL.iter().map(|d| d.name()).collect();
            format!("unknown design {name:?}; known designs: {}", known.join(", "))
        })?);
    }
    let explicit = !races.is_empty();
    if !explicit {
        races = catalog::CATALOG.iter().collect();
    }
    let mut cells = Vec::new();
    for race in races {
        let applies = |d: &DesignId| race.designs.iter().any(|(x, _)| x == d);
        if explicit && let Some(d) = designs.iter().find(|d| !applies(d)) {
            anyhow::bail!("{} does not run against {} (see `racelab list`)", race.id, d.name());
        }
        for &(design, _) in race.designs {
            if designs.is_empty() || designs.contains(&design) {
                cells.push((race, design));
            }
        }
    }
    anyhow::ensure!(!cells.is_empty(), "no race of the catalog runs against {:?}", args.designs);
    Ok(cells)
}

fn strategies(args: &ExploreArgs) -> Vec<SearchStrategy> {
    let pct = SearchStrategy::Pct { depth: args.depth };
    match args.strategy {
        StrategyArg::Random => vec![SearchStrategy::Random],
        StrategyArg::Pct => vec![pct],
        StrategyArg::Both => vec![SearchStrategy::Random, pct],
    }
}

fn bar(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cases  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

pub fn explore(args: ExploreArgs) -> anyhow::Result<ExitCode> {
    if args.program.is_some() || args.spec.is_some() {
        // A black box: `racelab check`'s exploration, with this command's budget words.
        return crate::check_cli::explore_program(crate::check_cli::BlackBox {
            program: args.program,
            spec: args.spec,
            cases: args.races,
            budget: args.cases,
            confirm: args.confirm,
            verbose: args.verbose,
        });
    }
    let cells = cells(&args)?;
    let runner = std::env::current_exe().context("cannot find this executable to run replays")?;
    let mut replayer = races::Replayer::new(&runner, races::RunAs::Caller);
    let regressions = if args.no_regressions {
        None
    } else {
        Some(args.regressions.clone().unwrap_or_else(explore::regressions::default_dir))
    };
    let mut results: Vec<Exploration> = Vec::new();
    let mut ok = true;
    for (race, design) in cells {
        for (i, search) in strategies(&args).into_iter().enumerate() {
            let config = ExploreConfig {
                search,
                cases: args.cases,
                seed: args.seed,
                max_shrink_iters: args.max_shrink_iters,
                confirm: args.confirm,
                regressions: regressions.clone(),
                record: true,
                // One brute-force column per cell, with the first strategy.
                stress: (args.stress && i == 0).then_some(args.stress_cap),
                stress_budget: args.stress_budget.map(std::time::Duration::from_secs),
            };
            let bar = bar(u64::from(args.cases));
            if let Some(b) = &bar {
                b.set_message(format!("{} against {} ({search})", race.id, design.name()));
            }
            let result = explore::explore(&mut replayer, race, design, &config, &mut |p| {
                if let (Some(b), false) = (&bar, p.shrinking) {
                    b.set_position(u64::from(p.case));
                }
                if args.verbose {
                    let why = match p.verdict {
                        races::verdict::Verdict::NotForced { why } => {
                            why.lines().next().unwrap_or("")
                        }
                        races::verdict::Verdict::LabError { message } => message,
                        _ => "",
                    };
                    let kind = if p.shrinking { "shrink" } else { "case" };
                    eprintln!(
                        "{kind} {:>4} {:<11} {}  {}",
                        p.case,
                        p.verdict.label(),
                        p.schedule,
                        why
                    );
                }
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let e = match result {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("racelab explore: {e}");
                    ok = false;
                    continue;
                }
            };
            ok &= e.as_expected();
            if args.format == ExploreFormat::Text {
                println!("{}", text(&e));
            }
            results.push(e);
        }
    }
    if args.format == ExploreFormat::Markdown {
        print!("{}", markdown(&results));
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn text(e: &Exploration) -> String {
    let mut s = String::new();
    if e.expect == Expect::Prevent && (e.found.is_some() || e.known_reproduced()) {
        s.push_str("!!! BUG FOUND IN A DESIGN THE CATALOG SAYS PREVENTS THIS RACE !!!\n");
    }
    s.push_str(&e.summary());
    if let Some(v) = &e.vocabulary {
        let _ = write!(
            s,
            "\n  probes: {} points, {} occurrences, {} threads; patience {:?} per wait, {:?} per replay",
            v.points.len(),
            v.occurrences(),
            v.thread_count(),
            v.patience.park,
            v.patience.replay
        );
    }
    if let Some(path) = &e.added_to {
        let _ = write!(s, "\n  kept in {}", path.display());
    }
    let _ = write!(
        s,
        "\n  as expected ({}): {}\n",
        e.expect.label(),
        if e.as_expected() { "yes" } else { "NO" }
    );
    s
}

fn ms(d: std::time::Duration) -> String {
    if d.as_secs() >= 10 {
        format!("{:.0} s", d.as_secs_f64())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The figures table of docs/exploration.md.
fn markdown(results: &[Exploration]) -> String {
    let mut s = String::from(
        "| race | design | expected | strategy | cases to first violation | time to it | shrunk schedule (confirmed) | catalogued schedule | stress: replays to the same violation (time) |\n\
         |---|---|---|---|---:|---:|---|---|---|\n",
    );
    for e in results {
        let (cases, after, shrunk) = match (&e.skipped, &e.found) {
            (Some(reason), _) => ("skipped".to_string(), String::new(), reason.clone()),
            (None, Some(f)) => (
                f.case.to_string(),
                ms(f.after),
                format!("`{}` ({}/{})", f.shrunk, f.confirmed, f.confirm_runs),
            ),
            (None, None) => (
                format!("none in {}", e.cases),
                ms(e.wall),
                format!(
                    "({} prevented, {} unrealizable, {} not forced, {} lab errors)",
                    e.counts.prevented,
                    e.counts.unrealizable,
                    e.counts.not_forced,
                    e.counts.lab_errors
                ),
            ),
        };
        let stress = match &e.stress {
            Some(st) if st.hit => format!("{} ({})", st.replays, ms(st.wall)),
            Some(st) => format!("none in {} ({})", st.replays, ms(st.wall)),
            None => String::new(),
        };
        let catalogued = e.race.schedule.lines().map(str::trim).collect::<Vec<_>>().join("; ");
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | `{}` | {} |",
            e.race.id,
            e.design.name(),
            e.expect.label(),
            e.search,
            cases,
            after,
            shrunk,
            catalogued,
            stress
        );
    }
    s
}
