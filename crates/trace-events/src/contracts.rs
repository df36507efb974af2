//! Contracts every event history must satisfy, checked on a live tracer or on a saved file.
//!
//! realizar checked three rules and stopped at the first id problem; this validator checks them
//! all, on the same [`TraceDocument`] whether it comes from memory or disk, and reports each
//! violation with the event id, the rule and what was found.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::schema::{EventType, Producer, Severity, TraceDocument, TraceEvent};
use super::step::TraceStep;
use crate::Error;

/// A rule of the event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// Ids are strictly increasing, from 1.
    IdsIncreasing,
    /// `elapsed_us` is present and never decreases, and timestamps are RFC 3339. (A realizar
    /// history has no `elapsed_us`; its wall-clock timestamps are only checked to be RFC 3339.)
    TimeOrder,
    /// Each exit (and each span failure) links through `previous_event_id` to an earlier entry
    /// of the same step that is still open. In a realizar history, kernel launches and brick
    /// profiles are exits without an entry, as realizar records them.
    ExitLinksEntry,
    /// An entry's `parent_event_id` names an entry open at that point.
    ParentOpen,
    /// No entry is left open at the end.
    NoOpenEntry,
    /// Every `ExecutionFailed` has a non-empty `cause`, and every error has a severity.
    FailureHasCause,
    /// `error_count` and `warning_count` match the events.
    CountsMatch,
    /// `has_nan`/`has_inf` agree with the counts; a realizar summary without a finite element
    /// has `has_nan` or `has_inf`.
    StatsConsistent,
}

impl Rule {
    /// The rule's name in reports: `ids-increasing`, `exit-links-entry`, ...
    pub fn name(self) -> &'static str {
        match self {
            Rule::IdsIncreasing => "ids-increasing",
            Rule::TimeOrder => "time-order",
            Rule::ExitLinksEntry => "exit-links-entry",
            Rule::ParentOpen => "parent-open",
            Rule::NoOpenEntry => "no-open-entry",
            Rule::FailureHasCause => "failure-has-cause",
            Rule::CountsMatch => "counts-match",
            Rule::StatsConsistent => "stats-consistent",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule: which event, which rule, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractViolation {
    /// The offending event; `None` for document-level rules (counts).
    pub event_id: Option<u64>,
    /// The rule broken.
    pub rule: Rule,
    /// What was found, and what was expected.
    pub found: String,
}

impl fmt::Display for ContractViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_id {
            Some(id) => write!(f, "event {id}: {}: {}", self.rule, self.found),
            None => write!(f, "document: {}: {}", self.rule, self.found),
        }
    }
}

/// Checks every rule on `doc`; an empty list means the history is valid.
pub fn validate(doc: &TraceDocument) -> Vec<ContractViolation> {
    let mut checker = Checker::new(doc.producer);
    for (index, e) in doc.events.iter().enumerate() {
        checker.order(e);
        checker.link(index, e);
        checker.failure(e);
        checker.stats(e);
    }
    checker.finish(doc)
}

/// The state of one pass over the events: what is open, what was seen, what was counted.
struct Checker {
    producer: Producer,
    out: Vec<ContractViolation>,
    /// Entries by id: (index in the event list, step, whether closed yet).
    entries: HashMap<u64, (usize, Option<TraceStep>, bool)>,
    kinds: HashMap<u64, EventType>,
    prev_id: u64,
    prev_elapsed: u64,
    errors: u64,
    warnings: u64,
}

impl Checker {
    fn new(producer: Producer) -> Self {
        Self {
            producer,
            out: Vec::new(),
            entries: HashMap::new(),
            kinds: HashMap::new(),
            prev_id: 0,
            prev_elapsed: 0,
            errors: 0,
            warnings: 0,
        }
    }

    fn report(&mut self, event_id: Option<u64>, rule: Rule, found: String) {
        self.out.push(ContractViolation {
            event_id,
            rule,
            found,
        });
    }

    /// [`Rule::IdsIncreasing`] and [`Rule::TimeOrder`].
    fn order(&mut self, e: &TraceEvent) {
        let id = Some(e.id);
        if e.id <= self.prev_id {
            let found = format!("id {} after id {}", e.id, self.prev_id);
            self.report(id, Rule::IdsIncreasing, found);
        }
        self.prev_id = self.prev_id.max(e.id);
        match e.elapsed_us {
            Some(elapsed) if elapsed < self.prev_elapsed => {
                let found = format!("elapsed_us {elapsed} after {}", self.prev_elapsed);
                self.report(id, Rule::TimeOrder, found);
            }
            Some(elapsed) => self.prev_elapsed = elapsed,
            None if self.producer == Producer::TensorTrace => {
                self.report(id, Rule::TimeOrder, "elapsed_us missing".to_owned())
            }
            None => {}
        }
        if humantime::parse_rfc3339(&e.timestamp).is_err() {
            let found = format!("timestamp {:?} is not RFC 3339", e.timestamp);
            self.report(id, Rule::TimeOrder, found);
        }
    }

    /// [`Rule::ParentOpen`] for an entry, [`Rule::ExitLinksEntry`] for an exit or failure.
    fn link(&mut self, index: usize, e: &TraceEvent) {
        match e.event_type {
            EventType::TaskStateEntered => {
                if let Some(parent) = e.parent_event_id {
                    self.parent(e.id, parent);
                }
                self.entries.insert(e.id, (index, e.step, false));
            }
            EventType::TaskStateExited | EventType::ExecutionFailed => self.exit(e),
        }
        self.kinds.insert(e.id, e.event_type);
    }

    fn parent(&mut self, id: u64, parent: u64) {
        let found = match self.entries.get(&parent) {
            Some((_, _, false)) => return,
            Some((_, _, true)) => format!("parent_event_id {parent} was already closed"),
            None => format!("parent_event_id {parent} is not an earlier entry"),
        };
        self.report(Some(id), Rule::ParentOpen, found);
    }

    fn exit(&mut self, e: &TraceEvent) {
        let is_exit = e.event_type == EventType::TaskStateExited;
        let leaf = self.producer == Producer::Realizar
            && matches!(
                e.step,
                Some(TraceStep::KernelLaunch | TraceStep::BrickProfile)
            );
        let Some(link) = e.previous_event_id else {
            if is_exit && !leaf {
                let found = "TaskStateExited without previous_event_id".to_owned();
                self.report(Some(e.id), Rule::ExitLinksEntry, found);
            }
            return;
        };
        let found = match self.entries.get_mut(&link) {
            None => {
                let what = match self.kinds.get(&link) {
                    Some(kind) => format!("is a {kind}, not an entry"),
                    None => "names no earlier event".to_owned(),
                };
                format!("previous_event_id {link} {what}")
            }
            Some((_, _, true)) => format!("entry {link} was already closed"),
            Some((_, step, closed)) => {
                *closed = true;
                if *step == e.step {
                    return;
                }
                format!(
                    "step {} closes entry {link} of step {}",
                    step_name(e.step),
                    step_name(*step)
                )
            }
        };
        self.report(Some(e.id), Rule::ExitLinksEntry, found);
    }

    /// [`Rule::FailureHasCause`], counting errors and warnings for [`Rule::CountsMatch`].
    fn failure(&mut self, e: &TraceEvent) {
        let id = Some(e.id);
        if e.event_type == EventType::ExecutionFailed
            && e.cause.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            let found = "ExecutionFailed without a cause".to_owned();
            self.report(id, Rule::FailureHasCause, found);
        }
        match (&e.error, e.severity) {
            (Some(_), Some(Severity::Error)) => self.errors += 1,
            (Some(_), Some(Severity::Warning)) => self.warnings += 1,
            (Some(_), None) => self.report(
                id,
                Rule::FailureHasCause,
                "error without severity".to_owned(),
            ),
            (None, Some(_)) => self.report(
                id,
                Rule::FailureHasCause,
                "severity without error".to_owned(),
            ),
            (None, None) => {}
        }
    }

    /// [`Rule::StatsConsistent`].
    fn stats(&mut self, e: &TraceEvent) {
        let id = Some(e.id);
        if let Some(s) = &e.stats {
            if s.has_nan != (s.nan_count > 0) || s.has_inf != (s.inf_count > 0) {
                let found = format!(
                    "has_nan={} nan_count={} has_inf={} inf_count={}",
                    s.has_nan, s.nan_count, s.has_inf, s.inf_count
                );
                self.report(id, Rule::StatsConsistent, found);
            }
        }
        if let Some(s) = &e.summary {
            if s.min == Some(f64::INFINITY) && !s.has_nan && !s.has_inf {
                let found =
                    "min is \"Infinity\" (no finite element) but has_nan and has_inf are false";
                self.report(id, Rule::StatsConsistent, found.to_owned());
            }
        }
    }

    /// [`Rule::NoOpenEntry`] and [`Rule::CountsMatch`], after the last event.
    fn finish(mut self, doc: &TraceDocument) -> Vec<ContractViolation> {
        let mut open: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, (_, _, closed))| !closed)
            .map(|(&id, &(index, step, _))| (index, id, step))
            .collect();
        open.sort_unstable();
        for (_, id, step) in open {
            let found = format!("entry of step {} is never exited", step_name(step));
            self.report(Some(id), Rule::NoOpenEntry, found);
        }
        if doc.error_count != self.errors {
            let found = format!(
                "error_count is {} but {} events are errors",
                doc.error_count, self.errors
            );
            self.report(None, Rule::CountsMatch, found);
        }
        if doc.warning_count != self.warnings {
            let found = format!(
                "warning_count is {} but {} events are warnings",
                doc.warning_count, self.warnings
            );
            self.report(None, Rule::CountsMatch, found);
        }
        self.out
    }
}

fn step_name(step: Option<TraceStep>) -> &'static str {
    step.map_or("null", |s| s.name())
}

/// Parses a JSON history and validates it.
pub fn validate_json(text: &str) -> Result<Vec<ContractViolation>, Error> {
    Ok(validate(&TraceDocument::from_json(text)?))
}

/// Reads a JSON history file and validates it.
pub fn validate_file(path: &Path) -> Result<Vec<ContractViolation>, Error> {
    Ok(validate(&TraceDocument::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventStats, ModelInfo, TraceDetails, TraceEvent, TraceStep};

    fn event(id: u64, event_type: EventType, step: TraceStep, link: Option<u64>) -> TraceEvent {
        TraceEvent {
            id,
            timestamp: "2024-01-01T00:00:00Z".into(),
            event_type,
            previous_event_id: link,
            parent_event_id: None,
            step: Some(step),
            name: None,
            iteration: 0,
            layer: None,
            input_shape: vec![],
            output_shape: vec![],
            elapsed_us: Some(id),
            duration_us: 0,
            stats: None,
            summary: None,
            error: None,
            error_kind: None,
            severity: None,
            cause: None,
            hint: None,
            details: TraceDetails::default(),
        }
    }

    fn check(events: Vec<TraceEvent>, expected: &[&str]) {
        let doc = TraceDocument {
            version: "1.0".into(),
            format_version: 1,
            producer: Producer::TensorTrace,
            timestamp: "2024-01-01T00:00:00Z".into(),
            model: ModelInfo::default(),
            events,
            error_count: 0,
            warning_count: 0,
        };
        let got: Vec<String> = validate(&doc).iter().map(ToString::to_string).collect();
        assert_eq!(got, expected);
    }

    use EventType::*;
    use TraceStep::*;

    #[test]
    fn valid_pair() {
        check(
            vec![
                event(1, TaskStateEntered, Embed, None),
                event(2, TaskStateExited, Embed, Some(1)),
            ],
            &[],
        );
    }

    #[test]
    fn each_rule() {
        check(
            vec![
                event(1, TaskStateEntered, Embed, None),
                event(1, TaskStateExited, Embed, Some(1)),
            ],
            &["event 1: ids-increasing: id 1 after id 1"],
        );
        check(
            vec![
                event(1, TaskStateEntered, Embed, None),
                event(2, TaskStateExited, Sample, Some(1)),
            ],
            &["event 2: exit-links-entry: step SAMPLE closes entry 1 of step EMBED"],
        );
        check(
            vec![event(1, TaskStateEntered, Embed, None)],
            &["event 1: no-open-entry: entry of step EMBED is never exited"],
        );
        check(
            vec![
                event(1, TaskStateEntered, Embed, None),
                event(2, TaskStateExited, Embed, Some(1)),
                event(3, TaskStateExited, Embed, Some(2)),
            ],
            &["event 3: exit-links-entry: previous_event_id 2 is a TaskStateExited, not an entry"],
        );
        let mut failed = event(1, ExecutionFailed, Embed, None);
        failed.error = Some("boom".into());
        failed.severity = Some(Severity::Error);
        check(
            vec![failed],
            &[
                "event 1: failure-has-cause: ExecutionFailed without a cause",
                "document: counts-match: error_count is 0 but 1 events are errors",
            ],
        );
        let mut bad_stats = event(1, TaskStateEntered, Embed, None);
        bad_stats.stats = Some(EventStats {
            min: None,
            max: None,
            mean: None,
            std: None,
            has_nan: false,
            has_inf: false,
            nan_count: 2,
            inf_count: 0,
            num_elements: 2,
            rms: None,
            blake3: String::new(),
            first_nan_index: Some(0),
            first_inf_index: None,
        });
        let exit = event(2, TaskStateExited, Embed, Some(1));
        check(
            vec![bad_stats, exit],
            &["event 1: stats-consistent: has_nan=false nan_count=2 has_inf=false inf_count=0"],
        );
    }
}
