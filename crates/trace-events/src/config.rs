//! What to trace and what to do when a Jidoka check fails.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::step::{parse_steps, TraceStep};
use crate::Error;

/// Environment variable holding the step list (`tokenize,sample`, `all`); setting it enables
/// event tracing.
pub const STEPS_ENV: &str = "TENSOR_TRACE_STEPS";
/// Environment variable holding the Jidoka policy (`warn` or `stop`).
pub const POLICY_ENV: &str = "TENSOR_TRACE_POLICY";
/// Environment variable holding the path the JSON history is written to by
/// [`InferenceTracer::write_output`](super::InferenceTracer::write_output).
pub const OUTPUT_ENV: &str = "TENSOR_TRACE_EVENTS";

/// Default share of suspicious characters above which decoded text counts as garbage (the
/// seed's 30%).
pub const DEFAULT_GARBAGE_THRESHOLD: f64 = 0.30;

/// Default number of top logits and probabilities kept on LM head and sample events.
pub const DEFAULT_TOP_K: usize = 5;

/// What a tracer does when a Jidoka check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Record the violation, count it, and let the caller continue.
    #[default]
    Warn,
    /// Record the violation, count it, and return it to the caller (stop the line). Only
    /// error-severity violations found at an exit are returned; a span dropped without exit
    /// cannot return anything, so its failure is recorded and counted only.
    Stop,
}

impl Policy {
    /// `warn` or `stop`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Warn => "warn",
            Policy::Stop => "stop",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = Error;

    /// Parses `warn` or `stop`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Policy::Warn, Policy::Stop]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::Config {
                setting: "policy",
                value: s.to_owned(),
                problem: "expected warn or stop".to_owned(),
            })
    }
}

/// Event tracing configuration: the seed's four fields plus the Jidoka settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// Whether tracing is on. Off, every tracer call is one branch.
    pub enabled: bool,
    /// Steps to trace; empty means all.
    pub steps: HashSet<TraceStep>,
    /// Show every layer in the text view (otherwise the first three per step and iteration).
    pub verbose: bool,
    /// Where [`InferenceTracer::write_output`](super::InferenceTracer::write_output) writes the
    /// JSON history; `None` prints the text view to stderr.
    pub output: Option<PathBuf>,
    /// What a failed Jidoka check does.
    pub policy: Policy,
    /// Share (0..=1) of U+FFFD, private-use and unassigned characters above which decoded text
    /// is garbage.
    pub garbage_threshold: f64,
    /// How many top logits and probabilities to keep on LM head and sample events.
    pub top_k: usize,
}

impl Default for TraceConfig {
    /// Disabled, all steps, `warn`, 30% garbage threshold, top 5.
    fn default() -> Self {
        Self {
            enabled: false,
            steps: HashSet::new(),
            verbose: false,
            output: None,
            policy: Policy::Warn,
            garbage_threshold: DEFAULT_GARBAGE_THRESHOLD,
            top_k: DEFAULT_TOP_K,
        }
    }
}

impl TraceConfig {
    /// A configuration with tracing on for every step.
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// Whether events of `step` are recorded.
    pub fn should_trace(&self, step: TraceStep) -> bool {
        self.enabled && (self.steps.is_empty() || self.steps.contains(&step))
    }

    /// Parses a step list such as `tokenize,sample` (the seed's `parse_steps`, but an unknown
    /// name is an error instead of being dropped). Empty or `all` means every step.
    pub fn parse_steps(list: &str) -> Result<HashSet<TraceStep>, Error> {
        parse_steps(list)
    }

    /// Sets the steps from a list such as `tokenize,sample` (see
    /// [`parse_steps`](super::parse_steps)); unknown names are an error listing the valid ones.
    pub fn with_steps(mut self, list: &str) -> Result<Self, Error> {
        self.steps = parse_steps(list).map_err(|e| Error::Config {
            setting: "--trace",
            value: list.to_owned(),
            problem: e.to_string(),
        })?;
        Ok(self)
    }

    /// Reads [`STEPS_ENV`], [`POLICY_ENV`] and [`OUTPUT_ENV`]. Tracing is enabled when
    /// `TENSOR_TRACE_STEPS` is set (to a list, or `all`).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables looked up through `var` (for tests and
    /// for engines that keep settings elsewhere).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut config = TraceConfig::default();
        if let Some(list) = var(STEPS_ENV) {
            config.enabled = true;
            config.steps = parse_steps(&list).map_err(|e| Error::Config {
                setting: STEPS_ENV,
                value: list.clone(),
                problem: e.to_string(),
            })?;
        }
        if let Some(policy) = var(POLICY_ENV) {
            config.policy = policy.parse().map_err(|e| match e {
                Error::Config { value, problem, .. } => Error::Config {
                    setting: POLICY_ENV,
                    value,
                    problem,
                },
                other => other,
            })?;
        }
        if let Some(path) = var(OUTPUT_ENV).filter(|p| !p.is_empty()) {
            config.output = Some(PathBuf::from(path));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn env_enables_and_selects() {
        let c = TraceConfig::from_vars(vars(&[])).unwrap();
        assert!(!c.enabled && !c.should_trace(TraceStep::Sample));

        let c = TraceConfig::from_vars(vars(&[(STEPS_ENV, "tokenize,sample")])).unwrap();
        assert!(c.should_trace(TraceStep::Sample) && !c.should_trace(TraceStep::Embed));

        let c = TraceConfig::from_vars(vars(&[(STEPS_ENV, "all"), (POLICY_ENV, "STOP")])).unwrap();
        assert!(c.should_trace(TraceStep::Embed));
        assert_eq!(c.policy, Policy::Stop);
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = TraceConfig::from_vars(vars(&[(STEPS_ENV, "tokenise")])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("invalid TENSOR_TRACE_STEPS=\"tokenise\": unknown trace step"));
        assert!(msg.contains("tokenize (encode)"), "{msg}");

        let e = TraceConfig::from_vars(vars(&[(POLICY_ENV, "halt")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid TENSOR_TRACE_POLICY=\"halt\": expected warn or stop"
        );
    }

    #[test]
    fn disabled_traces_nothing() {
        let c = TraceConfig {
            steps: [TraceStep::Sample].into_iter().collect(),
            ..TraceConfig::default()
        };
        assert!(!c.should_trace(TraceStep::Sample));
        assert!(TraceConfig::enabled().with_steps("bogus").is_err());
    }
}
