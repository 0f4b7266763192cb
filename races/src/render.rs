//! Choosing a rendering of a plan's report: the text and Mermaid forms of `matrix`, the
//! versioned JSON document of `schema`, the JUnit XML of `junit`. Above all three.

use crate::matrix::PlanReport;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The matrix and each cell's timeline, as text.
    Text,
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
            Format::Text => self.text(),
            Format::Json => {
                let doc = crate::schema::ReplayDocument::from_report(self);
                serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
            }
            Format::Junit => crate::junit::render(self),
            Format::Mermaid => self.mermaid(),
        }
    }
}
