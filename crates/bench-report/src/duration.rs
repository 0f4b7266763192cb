//! How the page and the chart print a duration: three significant digits in the largest unit
//! that keeps the number at 1 or more.

/// "123 µs", "4.56 ms": three significant digits.
pub(crate) fn human(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_with_three_significant_digits() {
        assert_eq!(human(123_456.0), "123 µs");
        assert_eq!(human(4_560_000.0), "4.56 ms");
        assert_eq!(human(51_200_000.0), "51.2 ms");
        assert_eq!(human(950.0), "950 ns");
    }
}
