//! Writes docs/benchmarks.md and docs/benchmarks.svg from criterion's output, with the same
//! code as `racelab report` (src/report.rs of the root package):
//! `cargo run -p racelab-benches --example report -- <criterion dir> <out.md> <out.svg>`.
#[path = "../../src/report.rs"]
mod report;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, md, svg] = args.as_slice() else {
        eprintln!("usage: report <criterion dir> <out.md> <out.svg>");
        std::process::exit(2);
    };
    if let Err(e) = report::write_report(dir.as_ref(), md.as_ref(), svg.as_ref()) {
        eprintln!("report: {e}");
        std::process::exit(1);
    }
    println!("wrote {md} and {svg}");
}
