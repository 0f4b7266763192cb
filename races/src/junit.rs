//! `racelab replay --format junit`: the verdict matrix as a JUnit XML report, one test case per
//! cell, for CI dashboards (GitLab, Jenkins, GitHub test reporters).
//!
//! A cell that met its expectation passes; a cell whose every replay was skipped is `skipped`
//! (with the missing capability); a cell with a lab error is an `error`; any other cell is a
//! `failure` whose message is the first replay that did not meet the expectation and whose body
//! holds up to three such replays and the command that replays the cell.

use crate::matrix::{Cell, PlanReport};
use crate::schema::verdict_key;
use crate::verdict::Verdict;
use std::fmt::Write;

/// Escapes text for an XML attribute or element.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows tab, newline and carriage return among the control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

enum Outcome {
    Passed,
    Skipped(String),
    Error(String),
    Failed(String),
}

fn outcome(cell: &Cell) -> Outcome {
    if let Some(why) = cell.not_applicable {
        return Outcome::Skipped(format!("not applicable: {why}"));
    }
    if cell.as_expected() {
        return Outcome::Passed;
    }
    if cell.runs.iter().all(|r| matches!(r.verdict, Verdict::Skipped { .. }))
        && let Some(Verdict::Skipped { reason }) = cell.runs.first().map(|r| &r.verdict)
    {
        return Outcome::Skipped(reason.clone());
    }
    let first = cell.failures().next().map(|(i, _, why)| format!("replay #{i}: {why}"));
    let first = first.unwrap_or_else(|| "no replay ran".to_string());
    if cell.runs.iter().any(|r| matches!(r.verdict, Verdict::LabError { .. })) {
        Outcome::Error(first)
    } else {
        Outcome::Failed(first)
    }
}

/// Renders `report` as one JUnit `<testsuites>` document.
pub fn render(report: &PlanReport) -> String {
    let outcomes: Vec<Outcome> = report.cells.iter().map(outcome).collect();
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let failures = count(|o| matches!(o, Outcome::Failed(_)));
    let errors = count(|o| matches!(o, Outcome::Error(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let seconds = |c: &Cell| c.runs.iter().map(|r| r.wall_ns).sum::<u64>() as f64 / 1e9;
    let total: f64 = report.cells.iter().map(seconds).sum();
    let tests = report.cells.len();

    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"racelab\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total:.6}\">"
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"racelab replay\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total:.6}\">"
    );
    for (cell, outcome) in report.cells.iter().zip(&outcomes) {
        let name = format!(
            "{} {} against {} ({})",
            cell.race.id,
            cell.race.slug,
            cell.design.name(),
            cell.expect.label()
        );
        let _ = write!(
            s,
            "    <testcase classname=\"racelab.{}\" name=\"{}\" time=\"{:.6}\"",
            esc(cell.race.id),
            esc(&name),
            seconds(cell)
        );
        let counts: Vec<String> = cell
            .runs
            .iter()
            .fold(std::collections::BTreeMap::<&str, usize>::new(), |mut m, r| {
                *m.entry(verdict_key(&r.verdict)).or_insert(0) += 1;
                m
            })
            .into_iter()
            .map(|(k, n)| format!("{k} {n}/{}", cell.runs.len()))
            .collect();
        let out = format!(
            "{}\nmedian {} us\nreplay it: {}",
            counts.join(", "),
            cell.median_us(),
            cell.replay_command()
        );
        match outcome {
            Outcome::Passed => {
                let _ =
                    writeln!(s, ">\n      <system-out>{}</system-out>\n    </testcase>", esc(&out));
            }
            Outcome::Skipped(reason) => {
                let _ = writeln!(
                    s,
                    ">\n      <skipped message=\"{}\"/>\n      <system-out>{}</system-out>\n    </testcase>",
                    esc(reason),
                    esc(&out)
                );
            }
            Outcome::Error(first) | Outcome::Failed(first) => {
                let tag = if matches!(outcome, Outcome::Error(_)) { "error" } else { "failure" };
                let mut body = String::new();
                for (i, _, why) in cell.failures().take(3) {
                    let _ = writeln!(body, "replay #{i}: {why}");
                }
                let _ = write!(body, "replay it: {}", cell.replay_command());
                let _ = writeln!(
                    s,
                    ">\n      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n      <system-out>{}</system-out>\n    </testcase>",
                    esc(first.lines().next().unwrap_or_default()),
                    if tag == "error" { "lab_error" } else { "not_as_expected" },
                    esc(&body),
                    esc(&out)
                );
            }
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(esc("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
        assert_eq!(esc("bell\u{7}"), "bell\\u{7}");
    }
}
