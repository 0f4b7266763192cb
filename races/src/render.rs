//! Choosing a rendering of a plan's report: the text and Mermaid forms of `matrix`, the
//! versioned JSON document of `schema`, the JUnit XML of `junit`. Above all three.

use crate::matrix::PlanReport;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The matrix, the timelines of the cells that were not as expected (of the only cell, in
    /// a run of one), and a one-line summary, as text.
    Text,
    /// The same with every cell's timeline (`--timelines`).
    TextTimelines,
    /// The versioned summary document of docs/json.md ([`crate::schema::ReplayDocument`]).
    Json,
    /// A JUnit XML report, one test case per cell ([`crate::junit`]).
    Junit,
    /// Each cell's timeline as a Mermaid sequence diagram.
    Mermaid,
}

impl PlanReport {
    /// Renders the report.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(false),
            Format::TextTimelines => self.text(true),
            Format::Json => {
                let doc = crate::schema::ReplayDocument::from_report(self);
                serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
            }
            Format::Junit => crate::junit::render(self),
            Format::Mermaid => self.mermaid(),
        }
    }
}
