//! The chart (docs/benchmarks.svg): a horizontal bar per benchmark, its median, with a tick at
//! its p99, one block per group, every group on one log scale so that groups compare at a
//! glance. Floors are grey, the reference supervisor blue, the legacy designs orange.
//!
//! Plain SVG written by hand: no script, no external font or style, so that it renders the
//! same in a browser, on a forge's file view and in an image viewer.

use std::fmt::Write as _;

use crate::criterion::Bench;
use crate::duration::human;
use crate::groups::is_floor;

/// Width of the picture.
const W: f64 = 960.0;
/// Width of the labels column, left of the bars.
const LABEL: f64 = 330.0;
/// Room right of the longest bar for its value.
const RIGHT: f64 = 90.0;
/// Height of one benchmark's row.
const ROW: f64 = 18.0;
/// Height of a group's heading.
const HEAD: f64 = 24.0;

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Bar colour: the floor, the reference (library and `supervise`), a legacy design, the rest.
fn color(b: &Bench) -> &'static str {
    if is_floor(b) {
        "#7a7a7a"
    } else if b.name.starts_with("reference") || b.name.starts_with("supervise") {
        "#2b6cb0"
    } else if b.name.starts_with("legacy") {
        "#c05621"
    } else {
        "#9ab5d6"
    }
}

/// The chart of `benches` (in page order).
pub(crate) fn chart(benches: &[Bench]) -> String {
    // The scale: whole decades from the smallest figure to the largest, at least one.
    let lo = benches.iter().map(|b| b.median.min(b.p99)).fold(f64::INFINITY, f64::min);
    let hi = benches.iter().map(|b| b.median.max(b.p99)).fold(0.0, f64::max);
    let lo_exp = lo.max(1.0).log10().floor() as i32;
    let hi_exp = (hi.max(10.0).log10().ceil() as i32).max(lo_exp + 1);
    let plot_w = W - LABEL - RIGHT;
    let x = |ns: f64| {
        let f = (ns.max(1.0).log10() - lo_exp as f64) / (hi_exp - lo_exp) as f64;
        LABEL + f.clamp(0.0, 1.0) * plot_w
    };
    let mut groups: Vec<&str> = benches.iter().map(|b| b.group.as_str()).collect();
    groups.dedup();
    let height = 40.0 + groups.len() as f64 * HEAD + benches.len() as f64 * ROW + 30.0;
    // `write!` to a String cannot fail: its results are ignored throughout.
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14" font-weight="bold">racelab benchmarks: median per iteration (bar), p99 (tick); log scale</text>"#
    );
    let mut exp = lo_exp;
    while exp <= hi_exp {
        let gx = x(10f64.powi(exp));
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="28" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            height - 22.0,
            height - 8.0,
            human(10f64.powi(exp))
        );
        exp += 1;
    }
    let mut y = 40.0;
    for group in groups {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
            y + 14.0,
            xml_escape(group)
        );
        y += HEAD;
        for b in benches.iter().filter(|b| b.group == group) {
            let bar = x(b.median) - LABEL;
            let tick = x(b.p99);
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LABEL}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{}"/><line x1="{tick:.1}" y1="{:.1}" x2="{tick:.1}" y2="{:.1}" stroke="#000"/><text x="{:.1}" y="{:.1}" fill="#333">{}</text>"##,
                LABEL - 6.0,
                y + 12.0,
                xml_escape(&b.name),
                y + 3.0,
                ROW - 6.0,
                color(b),
                y + 1.0,
                y + ROW - 1.0,
                x(b.median.max(b.p99)) + 4.0,
                y + 12.0,
                human(b.median)
            );
            y += ROW;
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(group: &str, name: &str, median: f64, p99: f64) -> Bench {
        Bench { group: group.into(), name: name.into(), median, p99, samples: 1 }
    }

    #[test]
    fn the_scale_spans_whole_decades_around_every_figure() {
        let svg = chart(&[
            bench("reap_latency", "floor_blocking_waitid", 80e3, 95e3),
            bench("reap_latency", "sleep_poll_100ms", 41e6, 120e6),
        ]);
        // 80 µs .. 120 ms: grid lines from 10 µs to 1 s, none outside.
        for label in ["10.0 µs", "100 µs", "1.00 ms", "10.0 ms", "100 ms", "1.00 s"] {
            assert!(svg.contains(&format!(">{label}</text>")), "no {label} line: {svg}");
        }
        assert!(!svg.contains(">1.00 µs</text>") && !svg.contains(">10.0 s</text>"), "{svg}");
    }

    #[test]
    fn names_are_escaped_and_rows_coloured_by_kind() {
        let svg = chart(&[
            bench("replay", "floor: exec runner", 2e6, 3e6),
            bench("replay", "Q1 <piano> & \"tini\"", 9e6, 9e6),
            bench("reap_latency", "legacy_global_atomics", 4e5, 6e5),
            bench("whole_process", "supervise_true", 3e6, 4e6),
        ]);
        assert!(svg.contains(">Q1 &lt;piano&gt; &amp; &quot;tini&quot;</text>"), "{svg}");
        let fill_after = |name: &str| {
            let at = svg.find(&format!(">{name}</text>")).expect(name);
            let fill = &svg[at..][svg[at..].find("fill=\"").expect("fill") + 6..];
            fill[..7].to_string()
        };
        assert_eq!(fill_after("floor: exec runner"), "#7a7a7a");
        assert_eq!(fill_after("legacy_global_atomics"), "#c05621");
        assert_eq!(fill_after("supervise_true"), "#2b6cb0");
    }
}
