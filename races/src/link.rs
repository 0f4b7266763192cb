//! The link between the design process and the lab's init: the design's hook actions become
//! requests that init carries out (init owns the victims, the workload's pipes and the freezer),
//! and the design's report goes back the same way.
//!
//! One line per message over a Unix socket pair: `req <action>` answered by `ok` or
//! `err <why>`, and finally `report <json>` from the design process (or, from a design that
//! never returned, `hooks <json>`: its trace, which the lab asked for before ending it).

use crate::design_report::DesignReport;
use racelab_hooks::{Action, Actions, Point, RunReport};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

/// How long a design thread waits for init to carry out one action.
pub const ACTION_TIMEOUT: Duration = Duration::from_millis(1500);

/// What the design process sends when it is done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Final {
    /// The design's own report.
    pub report: DesignReport,
    /// The hooks controller's report: the trace, stuck threads, unmet edges, failed actions.
    pub hooks: RunReport,
}

/// The design process's end: runs actions by asking init.
pub struct LabActions {
    stream: Mutex<(UnixStream, BufReader<UnixStream>)>,
}

impl LabActions {
    /// Wraps the design's end of the socket pair.
    pub fn new(stream: UnixStream) -> std::io::Result<LabActions> {
        stream.set_read_timeout(Some(ACTION_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(LabActions { stream: Mutex::new((stream, reader)) })
    }

    /// Sends only the hooks report of a design that never returned (`hooks <json>`): the lab
    /// asked for it once the design overran its bound, and ends the design right after.
    pub fn send_hooks(&self, hooks: &RunReport) -> std::io::Result<()> {
        let json = serde_json::to_string(hooks).map_err(std::io::Error::other)?;
        let mut guard = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.write_all(format!("hooks {json}\n").as_bytes())
    }

    /// Sends the final report. Called once, after the design returned.
    pub fn send_final(&self, fin: &Final) -> std::io::Result<()> {
        let json = serde_json::to_string(fin).map_err(std::io::Error::other)?;
        let mut guard = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.write_all(format!("report {json}\n").as_bytes())
    }
}

impl Actions for LabActions {
    fn run(&self, action: &Action, _at: &'static Point) -> Result<(), String> {
        let mut guard = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let (w, r) = &mut *guard;
        w.write_all(format!("req {action}\n").as_bytes()).map_err(|e| format!("to init: {e}"))?;
        let mut line = String::new();
        loop {
            match r.read_line(&mut line) {
                Ok(0) => return Err("init closed the link".into()),
                Ok(_) => break,
                // A signal the lab sent to this process (the interrupt itself) cut the read short.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(format!("no answer from init within {ACTION_TIMEOUT:?}: {e}"));
                }
            }
        }
        match line.trim_end().strip_prefix("err ") {
            Some(why) => Err(why.to_string()),
            None if line.trim_end() == "ok" => Ok(()),
            None => Err(format!("unexpected answer from init: {line:?}")),
        }
    }
}
