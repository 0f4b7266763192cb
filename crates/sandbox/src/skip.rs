//! How a test that lacks a capability says so.

/// Decides whether a test that needs `capability` must skip, and says so.
///
/// Returns `true` when the test should return early. The message names the capability and why
/// it is missing. With `RACELAB_STRICT=1` in the environment a skip is a failure: this panics.
pub fn skip_unless(available: bool, capability: &str, why: &str) -> bool {
    if available {
        return false;
    }
    let msg = format!("SKIP: needs {capability}: {why}");
    if std::env::var_os("RACELAB_STRICT").is_some_and(|v| v == "1") {
        panic!("{msg} (RACELAB_STRICT=1 turns skips into failures)");
    }
    eprintln!("{msg}");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_available_capability_never_skips() {
        assert!(!skip_unless(true, "anything", "unused"));
    }
}
