//! The parser of the schedule text form. Grammar (items end at `;` or a newline; spaces and
//! tabs are free between tokens; `#` starts a comment to the end of the line, except directly
//! after a point name, where it introduces an occurrence):
//!
//! ```text
//! schedule := item? ((';' | '\n') item?)*
//! item     := at ('<' at)+                      # a chain: a < b < c is a < b; b < c
//!           | 'on' at ':' action (',' action)*  # actions run in the written order
//! at       := point ('#' digits)?                # occurrence, default #1
//! point    := actor '.' ident                    # a hook point of the catalog
//!           | program '.' syscall ('(' sarg (',' sarg)* ')')? ('.' ('returned' | 'exit'))?
//!           | program '@' site                   # a code point, see crate::code_point
//! sarg     := '_' | '-'? digits | SIGNAL          # see crate::syscall_point
//! site     := '0x' hexdigits                     # an ELF virtual address of the executable
//!           | 'store' '(' word (',' word)? ')'   # the stores to a global (within functions)
//! word     := a run of characters but blanks, ',', '(', ')' and ';'
//! action   := ident ('(' (arg (',' arg)*)? ')')?
//! arg      := ident | '-'? digits | digits ('ns' | 'us' | 'ms' | 's') | at
//! ```

use std::time::Duration;

use crate::code_point::{self, CodePoint};
use crate::error::{HookError, ParseError};
use crate::points;
use crate::schedule::{Action, Arg, At, Edge, PointRef, Schedule, Step};
use crate::syscall_point::{self, ArgMatch, MAX_ARGS, Moment, SyscallPoint, Sysno};

// The parser sits above the schedule types: it knows them, they do not know it.
impl Schedule {
    /// Parses the text form (see the crate docs). Unknown point names are an
    /// [`HookError::UnknownPoint`] listing the known ones; syntax errors a [`HookError::Parse`].
    pub fn parse(text: &str) -> Result<Schedule, HookError> {
        parse(text)
    }
}

impl std::str::FromStr for Schedule {
    type Err = HookError;
    fn from_str(s: &str) -> Result<Schedule, HookError> {
        Schedule::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Schedule, D::Error> {
        let text = String::deserialize(d)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses the schedule text form.
fn parse(text: &str) -> Result<Schedule, HookError> {
    let mut p = Parser { src: text, pos: 0 };
    let mut steps = Vec::new();
    loop {
        p.skip_separators();
        if p.eof() {
            break;
        }
        p.item(&mut steps)?;
        p.skip_blank();
        match p.peek() {
            None | Some(';') | Some('\n') => {}
            _ => return Err(p.expected("`;`, a newline or `<`").into()),
        }
    }
    Ok(Schedule { steps })
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eof(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// Spaces, tabs and comments: what may sit between tokens of one item.
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' => self.bump(),
                '#' => self.skip_comment(),
                _ => break,
            }
        }
    }

    /// Blank space, comments, newlines and `;`: what may sit between items.
    fn skip_separators(&mut self) {
        loop {
            self.skip_blank();
            match self.peek() {
                Some(';') | Some('\n') => self.bump(),
                _ => break,
            }
        }
    }

    fn expected(&self, what: &str) -> ParseError {
        let before = &self.src[..self.pos];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let found = match self.peek() {
            None => "end of input".to_string(),
            Some('\n') => "a newline".to_string(),
            Some(_) => {
                let token: String =
                    self.rest().chars().take_while(|c| !c.is_whitespace()).take(24).collect();
                format!("`{token}`")
            }
        };
        ParseError { line, column, offset: self.pos, expected: what.to_string(), found }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn ident(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if is_ident_start(c) => self.bump(),
            _ => return Err(self.expected(what)),
        }
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
        Ok(&self.src[start..self.pos])
    }

    fn digits(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if start == self.pos {
            return Err(self.expected(what));
        }
        Ok(&self.src[start..self.pos])
    }

    fn item(&mut self, steps: &mut Vec<Step>) -> Result<(), HookError> {
        let start = self.pos;
        let first = self.ident("a point name or `on`")?;
        if first == "on" && !matches!(self.peek(), Some('.' | '@')) {
            return self.on_item(steps);
        }
        self.pos = start;
        let mut before = self.at()?;
        self.skip_blank();
        if self.peek() != Some('<') {
            return Err(self.expected("`<` after a point").into());
        }
        while self.eat('<') {
            self.skip_blank();
            let after = self.at()?;
            steps.push(Step::Edge(Edge { before, after }));
            before = after;
            self.skip_blank();
        }
        Ok(())
    }

    fn on_item(&mut self, steps: &mut Vec<Step>) -> Result<(), HookError> {
        self.skip_blank();
        let at = self.at()?;
        self.skip_blank();
        if !self.eat(':') {
            return Err(self.expected("`:` after the point of `on`").into());
        }
        loop {
            self.skip_blank();
            let action = self.action()?;
            steps.push(Step::On { at, action });
            self.skip_blank();
            if !self.eat(',') {
                return Ok(());
            }
        }
    }

    fn at(&mut self) -> Result<At, HookError> {
        let start = self.pos;
        let actor = self.ident("a point name `actor.window` or `program.syscall`")?;
        if self.eat('@') {
            let point = PointRef::Code(self.code_point(start, actor)?);
            return self.occurrence(point);
        }
        if !self.eat('.') {
            return Err(self.expected("`.` in a point name `actor.window`").into());
        }
        let window = self.ident("the window part of a point name `actor.window`")?;
        let point = if points::ALL.iter().any(|p| p.actor() == actor) {
            // An actor of the catalog: a hook point, which must exist.
            let src = self.src;
            let name = &src[start..self.pos];
            PointRef::Hook(points::by_name(name).ok_or_else(|| HookError::UnknownPoint {
                name: name.to_string(),
                known: points::ALL.iter().map(|p| p.name).collect(),
            })?)
        } else {
            PointRef::Syscall(self.syscall_point(start, actor, window)?)
        };
        self.occurrence(point)
    }

    /// An optional `#n` after a point.
    fn occurrence(&mut self, point: PointRef) -> Result<At, HookError> {
        let mut occurrence = 1;
        if self.eat('#') {
            let at = self.pos;
            let digits = self.digits("an occurrence number after `#`")?;
            occurrence = match digits.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.pos = at;
                    return Err(self.expected("an occurrence from 1 to 4294967295").into());
                }
            };
        }
        Ok(At { point, occurrence })
    }

    /// The rest of `program@`: `0x...` or `store(global[, within])`.
    fn code_point(&mut self, start: usize, program: &str) -> Result<CodePoint, HookError> {
        const WHAT: &str = "`0x` and hex digits, or store(global) or store(global, function)";
        let bad = |p: &Parser<'_>, reason: String| HookError::BadCodePoint {
            point: p.src[start..p.pos].to_string(),
            reason,
        };
        if self.rest().starts_with("0x") {
            self.pos += 2;
            let digits_at = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
            let digits = &self.src[digits_at..self.pos];
            if digits.is_empty() {
                return Err(self.expected("hex digits after `0x`").into());
            }
            if self.peek().is_some_and(is_ident_char) {
                return Err(self.expected("hex digits").into());
            }
            return u64::from_str_radix(digits, 16)
                .map(|a| CodePoint::address(program, a))
                .map_err(|_| bad(self, "the address does not fit in 64 bits".into()));
        }
        let word_at = self.pos;
        let kind = self.ident(WHAT).map_err(|_| {
            self.pos = word_at;
            self.expected(WHAT)
        })?;
        if kind != "store" {
            self.pos = word_at;
            return Err(bad(self, format!("unknown site `{kind}`: expected {WHAT}")));
        }
        if !self.eat('(') {
            return Err(self.expected("`(` after `store`").into());
        }
        self.skip_spaces();
        let global = self.word("the global's symbol (`crate::NAME`)")?;
        self.skip_spaces();
        let within = if self.eat(',') {
            self.skip_spaces();
            let w = self.word("text of the function's name")?;
            self.skip_spaces();
            Some(w)
        } else {
            None
        };
        if !self.eat(')') {
            return Err(self.expected("`,` or `)` in store(global, function)").into());
        }
        Ok(CodePoint::store(program, global, within))
    }

    /// Spaces and tabs only (no comments: inside `store(...)` a `#` is part of a name).
    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// A word of `store(...)`: see crate::code_point.
    fn word(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(code_point::is_word_char) {
            self.bump();
        }
        if start == self.pos {
            return Err(self.expected(what));
        }
        Ok(&self.src[start..self.pos])
    }

    /// The rest of `program.syscall`: argument matches and `.returned` or `.exit`.
    fn syscall_point(
        &mut self,
        start: usize,
        program: &str,
        syscall: &str,
    ) -> Result<SyscallPoint, HookError> {
        let Ok(sysno) = syscall.parse::<Sysno>() else {
            return Err(HookError::UnknownSyscall {
                point: self.src[start..self.pos].to_string(),
                syscall: syscall.to_string(),
            });
        };
        let mut point = SyscallPoint::new(program, sysno);
        if self.eat('(') {
            let mut position = 0;
            loop {
                self.skip_blank();
                let arg_start = self.pos;
                let m = self.syscall_arg()?;
                let index = match m {
                    ArgMatch::Signal(_) => syscall_point::signal_arg(sysno).ok_or_else(|| {
                        HookError::BadSyscallArgs {
                            point: self.src[start..self.pos].to_string(),
                            reason: format!("{syscall} takes no signal argument"),
                        }
                    })?,
                    _ => position,
                };
                if index >= MAX_ARGS || (m != ArgMatch::Any && point.args[index] != ArgMatch::Any) {
                    self.pos = arg_start;
                    return Err(HookError::BadSyscallArgs {
                        point: self.src[start..self.pos].to_string(),
                        reason: format!("argument {} given twice or out of range", index + 1),
                    });
                }
                if m != ArgMatch::Any {
                    point.args[index] = m;
                }
                position += 1;
                self.skip_blank();
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(self.expected("`,` or `)` in a syscall point's arguments").into());
                }
            }
        }
        for (suffix, moment) in [(".returned", Moment::Returned), (".exit", Moment::Exit)] {
            let rest = self.rest();
            if rest.starts_with(suffix) && !rest[suffix.len()..].starts_with(is_ident_char) {
                self.pos += suffix.len();
                point.moment = moment;
                break;
            }
        }
        Ok(point)
    }

    fn syscall_arg(&mut self) -> Result<ArgMatch, ParseError> {
        const WHAT: &str = "`_`, an integer or a signal name like SIGKILL";
        match self.peek() {
            Some(c) if is_ident_start(c) => {
                let at = self.pos;
                let word = self.ident(WHAT)?;
                if word == "_" {
                    return Ok(ArgMatch::Any);
                }
                match syscall_point::signal_number(word) {
                    Some(n) => Ok(ArgMatch::Signal(n)),
                    None => {
                        self.pos = at;
                        Err(self.expected(WHAT))
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let at = self.pos;
                let negative = self.eat('-');
                let digits = self.digits("digits")?;
                let text = if negative { format!("-{digits}") } else { digits.to_string() };
                text.parse::<i64>().map(ArgMatch::Value).map_err(|_| {
                    self.pos = at;
                    self.expected("an integer that fits in 64 bits")
                })
            }
            _ => Err(self.expected(WHAT)),
        }
    }

    fn action(&mut self) -> Result<Action, HookError> {
        let name = self.ident("an action name")?.to_string();
        let mut args = Vec::new();
        self.skip_blank();
        if self.eat('(') {
            self.skip_blank();
            if !self.eat(')') {
                loop {
                    self.skip_blank();
                    args.push(self.arg()?);
                    self.skip_blank();
                    if self.eat(')') {
                        break;
                    }
                    if !self.eat(',') {
                        return Err(self.expected("`,` or `)` in an action's arguments").into());
                    }
                }
            }
        }
        Ok(Action { name, args })
    }

    fn arg(&mut self) -> Result<Arg, HookError> {
        const WHAT: &str = "an argument (identifier, integer, duration like 10ms, or point)";
        match self.peek() {
            Some(c) if is_ident_start(c) => {
                let start = self.pos;
                let word = self.ident(WHAT)?;
                if matches!(self.peek(), Some('.' | '@')) {
                    // `actor.window`, `program.syscall...` or `program@site`: a point argument.
                    self.pos = start;
                    return Ok(Arg::Point(self.at()?));
                }
                Ok(Arg::Ident(word.to_string()))
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.pos;
                let negative = self.eat('-');
                let digits = self.digits("digits")?;
                let unit_start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                    self.bump();
                }
                let src = self.src;
                let unit = &src[unit_start..self.pos];
                let number = &src[start..unit_start];
                if unit.is_empty() {
                    return number.parse::<i64>().map(Arg::Int).map_err(|_| {
                        self.pos = start;
                        self.expected("an integer that fits in 64 bits").into()
                    });
                }
                let scale: u64 = match unit {
                    "ns" => 1,
                    "us" => 1_000,
                    "ms" => 1_000_000,
                    "s" => 1_000_000_000,
                    _ => {
                        self.pos = unit_start;
                        return Err(self.expected("a duration unit: ns, us, ms or s").into());
                    }
                };
                let nanos = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(scale));
                match nanos {
                    Some(n) if !negative => Ok(Arg::Duration(Duration::from_nanos(n))),
                    _ => {
                        self.pos = start;
                        Err(self
                            .expected("a non-negative duration that fits in 64-bit nanoseconds")
                            .into())
                    }
                }
            }
            _ => Err(self.expected(WHAT).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use crate::error::HookError;
    use crate::points::{self, escalation, main};
    use crate::schedule::{Action, Arg, At, Schedule, Step};

    #[test]
    fn a_hand_written_schedule_parses() {
        let text = "
            # Q1: the escalation holds a PID that main has already reaped.
            escalation.pid_loaded < main.reaped   # the window opens
            on main.reaped: recycle(child), freeze(10ms)
            main.reaped#2 < escalation.before_kill; on escalation.kill_sent#3: note(-1, x_2)
        ";
        let s = Schedule::parse(text).unwrap();
        assert_eq!(s.steps.len(), 5);
        assert_eq!(
            s.steps[0],
            Step::Edge(crate::schedule::Edge {
                before: At::first(&escalation::pid_loaded),
                after: At::first(&main::reaped)
            })
        );
        assert_eq!(
            s.steps[2],
            Step::On {
                at: At::first(&main::reaped),
                action: Action::new("freeze", vec![Arg::Duration(Duration::from_millis(10))])
            }
        );
        assert_eq!(
            s.to_string(),
            "escalation.pid_loaded < main.reaped; on main.reaped: recycle(child); \
             on main.reaped: freeze(10ms); main.reaped#2 < escalation.before_kill; \
             on escalation.kill_sent#3: note(-1, x_2)"
        );
    }

    #[test]
    fn a_chain_expands_into_consecutive_edges() {
        let s = Schedule::parse("main.spawned < main.pid_stored < main.reaped").unwrap();
        let edges: Vec<String> = s.edges().map(ToString::to_string).collect();
        assert_eq!(edges, ["main.spawned < main.pid_stored", "main.pid_stored < main.reaped"]);
    }

    #[test]
    fn an_action_without_parentheses_is_allowed() {
        let s = Schedule::parse("on main.spawned: freeze").unwrap();
        assert_eq!(s.to_string(), "on main.spawned: freeze()");
    }

    #[test]
    fn an_unknown_point_is_an_error_listing_known_points() {
        let err = Schedule::parse("main.spwaned < main.reaped").unwrap_err();
        match &err {
            HookError::UnknownPoint { name, known } => {
                assert_eq!(name, "main.spwaned");
                assert_eq!(known.len(), points::ALL.len());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("main.spawned"));
    }

    #[test]
    fn syntax_errors_name_the_position_and_what_was_expected() {
        let cases = [
            ("main.spawned", 1, 13, "`<`"),
            ("main.spawned <\n", 1, 15, "point name"),
            ("\n  main.spawned < main.reaped#0", 2, 30, "occurrence"),
            ("on main.spawned recycle()", 1, 17, "`:`"),
            ("on main.spawned: freeze(10 ms)", 1, 28, "`,` or `)`"),
            ("on main.spawned: freeze(10h)", 1, 27, "duration unit"),
            ("main < main.reaped", 1, 5, "`.`"),
            ("main.spawned < main.reaped x", 1, 28, "`;`"),
        ];
        for (text, line, column, expected) in cases {
            match Schedule::parse(text) {
                Err(HookError::Parse(e)) => {
                    assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
                    assert!(e.expected.contains(expected), "{text:?}: {e}");
                }
                other => panic!("{text:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn syscall_points_parse_with_arguments_returned_and_occurrences() {
        let s = Schedule::parse(
            "on piano.kill(SIGKILL): exit(child); piano.kill(SIGKILL).returned < piano.exit_group\n\
             on tini.setpgid: interrupt(target), await(tini.kill(SIGTERM).returned)\n\
             dumb_init.kill(-3, SIGTERM)#2 < tini.clone",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "on piano.kill(_, SIGKILL): exit(child); \
             piano.kill(_, SIGKILL).returned < piano.exit_group; \
             on tini.setpgid: interrupt(target); \
             on tini.setpgid: await(tini.kill(_, SIGTERM).returned); \
             dumb_init.kill(-3, SIGTERM)#2 < tini.clone"
        );
        assert!(s.has_syscall_points());
        let first = s.points().next().unwrap();
        assert_eq!(first.actor(), "piano");
        let sp = first.syscall().unwrap();
        assert!(sp.args_match(&[7, 9, 0, 0, 0, 0]) && !sp.args_match(&[7, 15, 0, 0, 0, 0]));
        assert!(!Schedule::parse("main.spawned < main.reaped").unwrap().has_syscall_points());
    }

    #[test]
    fn bad_syscall_points_are_errors_naming_the_point() {
        let err = Schedule::parse("tini.setpgdi < tini.execve").unwrap_err();
        assert!(matches!(&err, HookError::UnknownSyscall { syscall, .. } if syscall == "setpgdi"));
        let err = Schedule::parse("tini.wait4(SIGKILL) < tini.execve").unwrap_err();
        assert!(err.to_string().contains("wait4 takes no signal argument"), "{err}");
        let err = Schedule::parse("tini.kill(9, 9, 9, 9, 9, 9, 9) < tini.execve").unwrap_err();
        assert!(matches!(err, HookError::BadSyscallArgs { .. }), "{err}");
        assert!(matches!(
            Schedule::parse("tini.kill(SIGBOGUS) < tini.execve"),
            Err(HookError::Parse(_))
        ));
    }

    #[test]
    fn held_exits_parse_and_are_not_confused_with_exit_syscalls() {
        let s = Schedule::parse(
            "on timeout.clone.exit: terminate(target)\n\
             piano.exit_group < tini.exit.exit; tini.wait4(-1).exit#2 < tini.exit",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "on timeout.clone.exit: terminate(target); piano.exit_group < tini.exit.exit; \
             tini.wait4(-1).exit#2 < tini.exit"
        );
        let points: Vec<crate::SyscallPoint> = s.points().map(|p| *p.syscall().unwrap()).collect();
        assert!(points[0].is_exit() && points[0].syscall.name() == "clone");
        assert!(!points[1].is_exit() && points[1].syscall.name() == "exit_group");
        assert!(points[2].is_exit() && points[2].syscall.name() == "exit");
        assert!(!points[4].is_exit() && points[4].syscall.name() == "exit");
        assert!(s.needs_ptrace());
        assert!(!Schedule::parse("tini.kill.returned < tini.exit").unwrap().needs_ptrace());
    }

    #[test]
    fn code_points_parse_by_address_and_by_located_store() {
        let s = Schedule::parse(
            "on piano@store(piano::FORCE_KILLED, run_child::{{closure}}): \
               await(piano.rt_sigaction(SIGINT)#4)\n\
             piano@0x19319C#2 < piano.exit_group   # a comment\n\
             on@store( on::X ) < on@0x0; on on@0x10: ready(child)",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "on piano@store(piano::FORCE_KILLED, run_child::{{closure}}): \
             await(piano.rt_sigaction(SIGINT)#4); \
             piano@0x19319c#2 < piano.exit_group; on@store(on::X) < on@0x0; \
             on on@0x10: ready(child)"
        );
        let first = s.points().next().unwrap();
        assert_eq!(first.actor(), "piano");
        assert_eq!(
            first.code().unwrap().site,
            crate::CodeSite::Store {
                global: "piano::FORCE_KILLED",
                within: Some("run_child::{{closure}}")
            }
        );
        assert!(s.has_syscall_points() && s.needs_ptrace());
        // An awaited code point needs ptrace too.
        assert!(Schedule::parse("on a.kill: await(a@0x10)").unwrap().needs_ptrace());
    }

    #[test]
    fn malformed_code_points_are_errors_naming_what_was_expected() {
        let parse_errors = [
            ("piano@ < a.kill", "`0x` and hex digits"),
            ("piano@0x < a.kill", "hex digits after `0x`"),
            ("piano@0x12zz < a.kill", "hex digits"),
            ("piano@store < a.kill", "`(` after `store`"),
            ("piano@store() < a.kill", "the global's symbol"),
            ("piano@store(a b) < a.kill", "`,` or `)`"),
            ("piano@store(a, ) < a.kill", "text of the function's name"),
            ("piano@store(a, b", "`,` or `)`"),
        ];
        for (text, expected) in parse_errors {
            match Schedule::parse(text) {
                Err(HookError::Parse(e)) => assert!(e.expected.contains(expected), "{text:?}: {e}"),
                other => panic!("{text:?}: unexpected {other:?}"),
            }
        }
        let err = Schedule::parse("piano@load(x) < a.kill").unwrap_err();
        assert!(
            matches!(&err, HookError::BadCodePoint { reason, .. } if reason.contains("unknown site `load`")),
            "{err}"
        );
        let err = Schedule::parse("piano@0x10000000000000000 < a.kill").unwrap_err();
        assert!(err.to_string().contains("does not fit in 64 bits"), "{err}");
    }

    #[test]
    fn empty_text_and_comments_are_the_empty_schedule() {
        assert_eq!(Schedule::parse("").unwrap(), Schedule::new());
        assert_eq!(Schedule::parse(" ;\n# nothing\n;;").unwrap(), Schedule::new());
    }

    fn syscall_point() -> impl Strategy<Value = crate::SyscallPoint> {
        let names = ["kill", "tgkill", "clone", "wait4", "setpgid", "rt_sigaction", "exit_group"];
        let arg =
            prop_oneof![Just(crate::ArgMatch::Any), any::<i64>().prop_map(crate::ArgMatch::Value),];
        (
            prop_oneof![Just("tini"), Just("dumb_init"), Just("piano")],
            proptest::sample::select(names.to_vec()),
            proptest::collection::vec(arg, 6),
            prop_oneof![
                Just(crate::Moment::Entry),
                Just(crate::Moment::Exit),
                Just(crate::Moment::Returned)
            ],
            1i32..32,
        )
            .prop_map(|(program, name, args, moment, sig)| {
                let sysno: crate::Sysno = name.parse().unwrap();
                let mut p = crate::SyscallPoint::new(program, sysno);
                p.args.copy_from_slice(&args);
                if let Some(i) = crate::syscall_point::signal_arg(sysno) {
                    p.args[i] = crate::ArgMatch::Signal(sig);
                }
                p.moment = moment;
                p
            })
    }

    fn code_point() -> impl Strategy<Value = crate::CodePoint> {
        let word = "[a-zA-Z0-9_:{}<>#.$&*-]{1,12}";
        prop_oneof![
            (prop_oneof![Just("piano"), Just("on")], any::<u64>())
                .prop_map(|(program, a)| crate::CodePoint::address(program, a)),
            (word, proptest::option::of(word)).prop_map(|(global, within)| {
                crate::CodePoint::store("piano", &global, within.as_deref())
            }),
        ]
    }

    fn at() -> impl Strategy<Value = At> {
        let point = prop_oneof![
            (0..points::ALL.len()).prop_map(|i| crate::PointRef::Hook(points::ALL[i])),
            syscall_point().prop_map(crate::PointRef::Syscall),
            code_point().prop_map(crate::PointRef::Code),
        ];
        (point, prop_oneof![Just(1u32), 1u32..5, Just(u32::MAX)])
            .prop_map(|(point, occurrence)| At { point, occurrence })
    }

    fn arg() -> impl Strategy<Value = Arg> {
        prop_oneof![
            at().prop_map(Arg::Point),
            "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_map(Arg::Ident),
            any::<i64>().prop_map(Arg::Int),
            any::<u64>().prop_map(|n| Arg::Duration(Duration::from_nanos(n))),
            (0u64..100_000).prop_map(|n| Arg::Duration(Duration::from_millis(n))),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (at(), at())
                .prop_map(|(before, after)| Step::Edge(crate::schedule::Edge { before, after })),
            (at(), "[a-z_][a-z0-9_]{0,8}", proptest::collection::vec(arg(), 0..4))
                .prop_map(|(at, name, args)| Step::On { at, action: Action { name, args } }),
        ]
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_back_the_same_schedule(
            steps in proptest::collection::vec(step(), 0..8)
        ) {
            let s = Schedule { steps };
            let text = s.to_string();
            prop_assert_eq!(Schedule::parse(&text).unwrap(), s.clone());
            // Newline-separated text is the same schedule too.
            prop_assert_eq!(Schedule::parse(&text.replace("; ", "\n")).unwrap(), s);
        }
    }
}
