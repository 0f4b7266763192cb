//! Passes the target triple to the benches: the whole-process bench looks for the static
//! `supervise` under `<target dir>/<triple>/dist/`, where
//! `cargo build --profile dist --target <triple>` puts it.

fn main() {
    if let Ok(triple) = std::env::var("TARGET") {
        println!("cargo:rustc-env=RACELAB_TARGET_TRIPLE={triple}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
