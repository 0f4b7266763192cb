//! The trace of a run: what each thread did at each point, in monotonic time. Renders as text
//! and as a Mermaid sequence diagram; serializes with serde so a child process can hand its
//! trace to the lab as JSON, where [`Trace::merge`] interleaves traces of several processes.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A thread arrived at a point.
    Arrive,
    /// It parked: an edge into this occurrence is not met yet (`detail` names the edge).
    Park,
    /// A parked thread's edge was met (`peer` is the actor of the edge's earlier point).
    Release,
    /// An edge could not be enforced: its earlier point's actor is bound to this same thread.
    Unrealizable,
    /// A lab action ran (successfully) here.
    Action,
    /// A lab action returned an error (`detail` has it).
    ActionFailed,
    /// The thread passed the point.
    Pass,
    /// The schedule was abandoned (stuck or finished): this point passed without enforcement.
    Abandoned,
    /// A wait's deadline passed here: the run is stuck.
    Stuck,
    /// A lab event added with [`note`](crate::note) (or by another process).
    Note,
}

impl EventKind {
    fn word(self) -> &'static str {
        match self {
            EventKind::Arrive => "arrive",
            EventKind::Park => "park",
            EventKind::Release => "release",
            EventKind::Unrealizable => "unrealizable",
            EventKind::Action => "action",
            EventKind::ActionFailed => "action-failed",
            EventKind::Pass => "pass",
            EventKind::Abandoned => "abandoned",
            EventKind::Stuck => "STUCK",
            EventKind::Note => "note",
        }
    }
}

/// One trace record: (monotonic time, actor/thread, point or action, detail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes of one boot.
    pub time_ns: u64,
    /// The process.
    pub pid: u32,
    /// The thread (kernel tid).
    pub tid: u32,
    /// The actor: the part of the point name before the dot, or the actor given to `note`.
    pub actor: String,
    /// What happened.
    pub kind: EventKind,
    /// The point occurrence (`main.reaped#2`), or the action for action events.
    pub subject: String,
    /// Free text: the edge waited for, the action's error, the note's text.
    #[serde(default)]
    pub detail: String,
    /// For edge events, the actor of the other end of the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// A trace: events in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The events, sorted by `time_ns` (ties keep recording order).
    pub events: Vec<Event>,
    /// Records lost because the trace ring was full (the oldest are overwritten).
    #[serde(default)]
    pub dropped: u64,
}

impl Trace {
    /// Sorts the events by time, keeping the recorded order of equal times.
    pub fn sort(&mut self) {
        self.events.sort_by_key(|e| e.time_ns);
    }

    /// Interleaves traces (for example of several processes) by time.
    pub fn merge(traces: impl IntoIterator<Item = Trace>) -> Trace {
        let mut all = Trace::default();
        for t in traces {
            all.events.extend(t.events);
            all.dropped += t.dropped;
        }
        all.sort();
        all
    }

    /// The events at or before `time_ns`.
    pub fn until(&self, time_ns: u64) -> Trace {
        Trace {
            events: self.events.iter().filter(|e| e.time_ns <= time_ns).cloned().collect(),
            dropped: self.dropped,
        }
    }

    /// The subjects of the events of `kind`, in order: for [`EventKind::Pass`], the point
    /// occurrences passed (`main.reaped`, `main.reaped#2`).
    pub fn subjects(&self, kind: EventKind) -> Vec<&str> {
        self.events.iter().filter(|e| e.kind == kind).map(|e| e.subject.as_str()).collect()
    }

    /// One line per event: time relative to the first event, pid/tid, actor, kind, subject,
    /// detail.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let t0 = self.events.first().map_or(0, |e| e.time_ns);
        if self.dropped > 0 {
            let _ =
                writeln!(out, "({} older records dropped: the trace ring was full)", self.dropped);
        }
        for e in &self.events {
            let us = e.time_ns.saturating_sub(t0) as f64 / 1_000.0;
            let _ = write!(
                out,
                "{us:>12.3}us  {:>7}/{:<7} {:<12} {:<13} {}",
                e.pid,
                e.tid,
                e.actor,
                e.kind.word(),
                e.subject
            );
            if !e.detail.is_empty() {
                let _ = write!(out, "  {}", e.detail);
            }
            out.push('\n');
        }
        out
    }

    /// A Mermaid `sequenceDiagram`: one participant per actor, a note per pass, action and
    /// stuck event, and an arrow from the earlier actor to the released one per met edge.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("sequenceDiagram\n");
        let mut seen = BTreeSet::new();
        for e in &self.events {
            for actor in std::iter::once(&e.actor).chain(e.peer.as_ref()) {
                if seen.insert(actor.clone()) {
                    let _ = writeln!(out, "    participant {}", mermaid_id(actor));
                }
            }
        }
        for e in &self.events {
            let actor = mermaid_id(&e.actor);
            let text = match e.kind {
                EventKind::Arrive => continue,
                EventKind::Release => {
                    let from = mermaid_id(e.peer.as_deref().unwrap_or(&e.actor));
                    let _ = writeln!(out, "    {from}->>{actor}: {}", mermaid_text(&e.detail));
                    continue;
                }
                EventKind::Pass => e.subject.clone(),
                EventKind::Park => format!("{} parked: {}", e.subject, e.detail),
                EventKind::Action => format!("action {} at {}", e.subject, e.detail),
                EventKind::ActionFailed => format!("action {} failed: {}", e.subject, e.detail),
                EventKind::Unrealizable => format!("{} unrealizable on this thread", e.detail),
                EventKind::Abandoned => format!("{} passed, schedule abandoned", e.subject),
                EventKind::Stuck => format!("STUCK at {}: {}", e.subject, e.detail),
                EventKind::Note => e.detail.clone(),
            };
            let _ = writeln!(out, "    Note over {actor}: {}", mermaid_text(&text));
        }
        out
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A participant id: Mermaid ids are words, so anything else becomes `_`.
fn mermaid_id(actor: &str) -> String {
    actor.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Message text: `#` and `;` are syntax in Mermaid, so they become entity codes; newlines
/// become spaces.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(time_ns: u64, pid: u32, actor: &str, kind: EventKind, subject: &str) -> Event {
        Event {
            time_ns,
            pid,
            tid: pid,
            actor: actor.into(),
            kind,
            subject: subject.into(),
            detail: String::new(),
            peer: None,
        }
    }

    #[test]
    fn merge_interleaves_processes_by_time() {
        let a = Trace {
            events: vec![
                ev(1, 1, "main", EventKind::Pass, "main.spawned"),
                ev(5, 1, "main", EventKind::Pass, "main.reaped"),
            ],
            dropped: 0,
        };
        let b = Trace { events: vec![ev(3, 2, "lab", EventKind::Note, "note")], dropped: 2 };
        let m = Trace::merge([a, b]);
        let times: Vec<u64> = m.events.iter().map(|e| e.time_ns).collect();
        assert_eq!(times, [1, 3, 5]);
        assert_eq!(m.dropped, 2);
    }

    #[test]
    fn mermaid_has_one_participant_per_actor_and_an_arrow_per_release() {
        let mut release = ev(2, 1, "main", EventKind::Release, "main.reaped");
        release.peer = Some("escalation".into());
        release.detail = "escalation.pid_loaded < main.reaped#2".into();
        let t = Trace {
            events: vec![ev(1, 1, "escalation", EventKind::Pass, "escalation.pid_loaded"), release],
            dropped: 0,
        };
        let m = t.to_mermaid();
        assert!(m.starts_with("sequenceDiagram\n"), "{m}");
        assert_eq!(m.matches("participant").count(), 2, "{m}");
        assert!(m.contains("escalation->>main: escalation.pid_loaded < main.reaped#35;2"), "{m}");
        assert!(m.contains("Note over escalation: escalation.pid_loaded"), "{m}");
    }

    #[test]
    fn json_round_trips() {
        let t =
            Trace { events: vec![ev(7, 3, "main", EventKind::Stuck, "main.reaped")], dropped: 1 };
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("\"kind\":\"stuck\""), "{json}");
        assert_eq!(serde_json::from_str::<Trace>(&json).unwrap(), t);
    }

    #[test]
    fn text_names_time_thread_actor_kind_and_subject() {
        let t = Trace {
            events: vec![
                ev(1_000, 9, "main", EventKind::Pass, "main.spawned"),
                ev(3_500, 9, "main", EventKind::Pass, "main.reaped"),
            ],
            dropped: 0,
        };
        let text = t.to_text();
        assert!(text.lines().nth(1).unwrap().contains("2.500us"), "{text}");
        assert!(text.contains("main.reaped"), "{text}");
    }
}
