//! The runner executable of `cargo test -p races`: the sandbox re-executes it to run one
//! replay inside a fresh namespace. Not meant to be started by hand.
#![forbid(unsafe_code)]

fn main() {
    races::runner::dispatch_if_runner();
    eprintln!("races-runner: a racelab sandbox runner; start replays with `racelab replay`");
    std::process::exit(2);
}
