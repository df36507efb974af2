//! Contracts every event history must satisfy, checked on a live tracer or on a saved file.
//!
//! realizar checked three rules and stopped at the first id problem; this validator checks them
//! all, on the same [`TraceDocument`] whether it comes from memory or disk, and reports each
//! violation with the event id, the rule and what was found.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::schema::{EventType, Producer, Severity, TraceDocument};
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
    let mut out = Vec::new();
    let mut report = |event_id: Option<u64>, rule: Rule, found: String| {
        out.push(ContractViolation {
            event_id,
            rule,
            found,
        })
    };
    // Entries by id: (index in the event list, step, whether closed yet).
    let mut entries: HashMap<u64, (usize, Option<super::TraceStep>, bool)> = HashMap::new();
    let mut kinds: HashMap<u64, EventType> = HashMap::new();
    let mut prev_id = 0u64;
    let mut prev_elapsed = 0u64;
    let (mut errors, mut warnings) = (0u64, 0u64);

    for (index, e) in doc.events.iter().enumerate() {
        let id = Some(e.id);
        if e.id <= prev_id {
            report(
                id,
                Rule::IdsIncreasing,
                format!("id {} after id {prev_id}", e.id),
            );
        }
        prev_id = prev_id.max(e.id);
        match e.elapsed_us {
            Some(elapsed) if elapsed < prev_elapsed => report(
                id,
                Rule::TimeOrder,
                format!("elapsed_us {elapsed} after {prev_elapsed}"),
            ),
            Some(elapsed) => prev_elapsed = elapsed,
            None if doc.producer == Producer::TensorTrace => {
                report(id, Rule::TimeOrder, "elapsed_us missing".to_owned())
            }
            None => {}
        }
        if humantime::parse_rfc3339(&e.timestamp).is_err() {
            report(
                id,
                Rule::TimeOrder,
                format!("timestamp {:?} is not RFC 3339", e.timestamp),
            );
        }

        match e.event_type {
            EventType::TaskStateEntered => {
                if let Some(parent) = e.parent_event_id {
                    match entries.get(&parent) {
                        Some((_, _, false)) => {}
                        Some((_, _, true)) => report(
                            id,
                            Rule::ParentOpen,
                            format!("parent_event_id {parent} was already closed"),
                        ),
                        None => report(
                            id,
                            Rule::ParentOpen,
                            format!("parent_event_id {parent} is not an earlier entry"),
                        ),
                    }
                }
                entries.insert(e.id, (index, e.step, false));
            }
            EventType::TaskStateExited | EventType::ExecutionFailed => {
                let is_exit = e.event_type == EventType::TaskStateExited;
                let leaf = doc.producer == Producer::Realizar
                    && matches!(
                        e.step,
                        Some(TraceStep::KernelLaunch | TraceStep::BrickProfile)
                    );
                match e.previous_event_id {
                    None if is_exit && !leaf => report(
                        id,
                        Rule::ExitLinksEntry,
                        "TaskStateExited without previous_event_id".to_owned(),
                    ),
                    None => {}
                    Some(link) => match entries.get_mut(&link) {
                        None => {
                            let what = match kinds.get(&link) {
                                Some(kind) => format!("is a {kind}, not an entry"),
                                None => "names no earlier event".to_owned(),
                            };
                            report(
                                id,
                                Rule::ExitLinksEntry,
                                format!("previous_event_id {link} {what}"),
                            );
                        }
                        Some((_, _, true)) => report(
                            id,
                            Rule::ExitLinksEntry,
                            format!("entry {link} was already closed"),
                        ),
                        Some((_, step, closed)) => {
                            *closed = true;
                            if *step != e.step {
                                report(
                                    id,
                                    Rule::ExitLinksEntry,
                                    format!(
                                        "step {} closes entry {link} of step {}",
                                        step_name(e.step),
                                        step_name(*step)
                                    ),
                                );
                            }
                        }
                    },
                }
            }
        }
        kinds.insert(e.id, e.event_type);

        if e.event_type == EventType::ExecutionFailed
            && e.cause.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            report(
                id,
                Rule::FailureHasCause,
                "ExecutionFailed without a cause".to_owned(),
            );
        }
        match (&e.error, e.severity) {
            (Some(_), Some(Severity::Error)) => errors += 1,
            (Some(_), Some(Severity::Warning)) => warnings += 1,
            (Some(_), None) => report(
                id,
                Rule::FailureHasCause,
                "error without severity".to_owned(),
            ),
            (None, Some(_)) => report(
                id,
                Rule::FailureHasCause,
                "severity without error".to_owned(),
            ),
            (None, None) => {}
        }
        if let Some(s) = &e.stats {
            if s.has_nan != (s.nan_count > 0) || s.has_inf != (s.inf_count > 0) {
                report(
                    id,
                    Rule::StatsConsistent,
                    format!(
                        "has_nan={} nan_count={} has_inf={} inf_count={}",
                        s.has_nan, s.nan_count, s.has_inf, s.inf_count
                    ),
                );
            }
        }
        if let Some(s) = &e.summary {
            if s.min == Some(f64::INFINITY) && !s.has_nan && !s.has_inf {
                report(
                    id,
                    Rule::StatsConsistent,
                    "min is \"Infinity\" (no finite element) but has_nan and has_inf are false"
                        .to_owned(),
                );
            }
        }
    }

    let mut open: Vec<_> = entries
        .iter()
        .filter(|(_, (_, _, closed))| !closed)
        .map(|(&id, &(index, step, _))| (index, id, step))
        .collect();
    open.sort_unstable();
    for (_, id, step) in open {
        report(
            Some(id),
            Rule::NoOpenEntry,
            format!("entry of step {} is never exited", step_name(step)),
        );
    }
    if doc.error_count != errors {
        report(
            None,
            Rule::CountsMatch,
            format!(
                "error_count is {} but {errors} events are errors",
                doc.error_count
            ),
        );
    }
    if doc.warning_count != warnings {
        report(
            None,
            Rule::CountsMatch,
            format!(
                "warning_count is {} but {warnings} events are warnings",
                doc.warning_count
            ),
        );
    }
    out
}

fn step_name(step: Option<super::TraceStep>) -> &'static str {
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
