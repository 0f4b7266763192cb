//! `racelab-legacy-wrapper MODE [options] -- program [args...]`: runs one legacy replica as
//! its own process (replicas own process-wide state). Modes: see `racelab_legacy::MODES`.

fn main() {
    let mut args = std::env::args_os().skip(1);
    let mode = args.next().map(|m| m.to_string_lossy().into_owned()).unwrap_or_default();
    racelab_legacy::wrapper_main(&mode, args)
}
