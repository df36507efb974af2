//! The live tracer: spans that cannot dangle, Jidoka checks at every exit.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::bridge;
use super::clock::{rfc3339, Clock, SystemClock};
use super::config::{Policy, TraceConfig};
use super::contracts::{validate, ContractViolation};
use super::jidoka::{first_non_finite, garbage_share, Origin, TraceError};
use super::render;
use super::schema::{
    EventStats, EventType, ModelInfo, Producer, Severity, TraceDetails, TraceDocument, TraceEvent,
};
use super::step::TraceStep;
use super::topk::{top_k_logits, top_k_probs};
use crate::version::{EVENTS_FORMAT_VERSION, REALIZAR_VERSION};
use trace_core::{fingerprint, Data, TensorView};

/// Where in the generation an event happened: iteration (0 = prefill, then one per decode step),
/// layer, and an optional free-form name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Site<'a> {
    /// 0 = prefill, then one per generated token.
    pub iteration: usize,
    /// Transformer layer, when inside one.
    pub layer: Option<usize>,
    /// Engine label such as `blk.3.attn`.
    pub name: Option<&'a str>,
}

impl<'a> Site<'a> {
    /// The prefill pass (iteration 0), outside any layer.
    #[inline]
    pub fn prefill() -> Self {
        Self::default()
    }

    /// Iteration `n` (0 = prefill), outside any layer.
    #[inline]
    pub fn iteration(n: usize) -> Self {
        Self {
            iteration: n,
            ..Self::default()
        }
    }

    /// The same site in layer `layer`.
    #[inline]
    pub fn layer(self, layer: usize) -> Self {
        Self {
            layer: Some(layer),
            ..self
        }
    }

    /// The same site with an engine label.
    #[inline]
    pub fn name(self, name: &'a str) -> Self {
        Self {
            name: Some(name),
            ..self
        }
    }
}

/// A GPU kernel launch, for [`Exit::kernel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel<'a> {
    /// Kernel name.
    pub name: &'a str,
    /// Grid dimensions `[x, y, z]`.
    pub grid: [u32; 3],
    /// Block dimensions `[x, y, z]`.
    pub block: [u32; 3],
    /// Dynamic shared memory in bytes.
    pub shared_mem_bytes: u32,
    /// Dispatch strategy, e.g. `grid_y`.
    pub dispatch: Option<&'a str>,
}

/// What a step produced, handed to [`Span::exit`]. Everything is borrowed, and nothing is
/// computed until the tracer knows it is recording, so building one when tracing is off costs a
/// few stores.
#[derive(Debug, Clone, Default)]
pub struct Exit<'a> {
    output: Option<TensorView<'a>>,
    input_shape: Option<&'a [usize]>,
    output_shape: Option<&'a [usize]>,
    expected_shape: Option<&'a [usize]>,
    logits: Option<&'a [f32]>,
    input_text: Option<&'a str>,
    tokens: Option<&'a [u32]>,
    sampled: Option<(u32, f32, usize)>,
    decoded: Option<(u32, &'a str)>,
    token_string: Option<&'a str>,
    unknown_token: Option<u32>,
    kernel: Option<Kernel<'a>>,
    details: Option<Box<TraceDetails>>,
}

impl<'a> Exit<'a> {
    /// Nothing produced yet.
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// The output tensor: its shape, stats and NaN/Inf checks.
    #[inline]
    pub fn output(mut self, view: TensorView<'a>) -> Self {
        self.output = Some(view);
        self
    }

    /// The input shape, when the entry did not capture the input tensor.
    #[inline]
    pub fn input_shape(mut self, shape: &'a [usize]) -> Self {
        self.input_shape = Some(shape);
        self
    }

    /// The output shape, when no output tensor is given.
    #[inline]
    pub fn output_shape(mut self, shape: &'a [usize]) -> Self {
        self.output_shape = Some(shape);
        self
    }

    /// The shape the output must have; a different one is a shape mismatch.
    #[inline]
    pub fn expect_shape(mut self, shape: &'a [usize]) -> Self {
        self.expected_shape = Some(shape);
        self
    }

    /// The logits (LM head, sample): top-k logits are kept, and they are the output tensor
    /// unless [`output`](Self::output) says otherwise.
    #[inline]
    pub fn logits(mut self, logits: &'a [f32]) -> Self {
        self.logits = Some(logits);
        self
    }

    /// Tokenization: the input text and the ids produced (checked against the vocabulary).
    #[inline]
    pub fn tokens(mut self, input_text: &'a str, ids: &'a [u32]) -> Self {
        self.input_text = Some(input_text);
        self.tokens = Some(ids);
        self
    }

    /// Sampling: the token chosen, the temperature and the top-k parameter. With
    /// [`logits`](Self::logits), the top-k probabilities under that temperature are kept.
    #[inline]
    pub fn sampled(mut self, token: u32, temperature: f32, top_k: usize) -> Self {
        self.sampled = Some((token, temperature, top_k));
        self
    }

    /// Decoding: the token id and the text it decoded to (checked for garbage).
    #[inline]
    pub fn decoded(mut self, token: u32, text: &'a str) -> Self {
        self.decoded = Some((token, text));
        self
    }

    /// The token's vocabulary string.
    #[inline]
    pub fn token_string(mut self, s: &'a str) -> Self {
        self.token_string = Some(s);
        self
    }

    /// The tokenizer could not map this id (reported as an unknown token).
    #[inline]
    pub fn unknown_token(mut self, id: u32) -> Self {
        self.unknown_token = Some(id);
        self
    }

    /// A GPU kernel launch.
    #[inline]
    pub fn kernel(mut self, kernel: Kernel<'a>) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Any other details (brick profiles, vocabulary entries); fields set by the other methods
    /// take precedence.
    #[inline]
    pub fn details(mut self, details: TraceDetails) -> Self {
        self.details = Some(Box::new(details));
        self
    }
}

/// An entry still waiting for its exit.
#[derive(Debug)]
struct Open {
    id: u64,
    step: TraceStep,
    layer: Option<u64>,
    input_shape: Vec<usize>,
    input_finite: Option<bool>,
}

#[derive(Debug, Default)]
struct State {
    model: ModelInfo,
    events: Vec<TraceEvent>,
    next_id: u64,
    last_elapsed_us: u64,
    error_count: u64,
    warning_count: u64,
    /// Entries not yet closed, in entry order (the last one is the innermost).
    open: Vec<Open>,
    /// The first exit whose tensor held NaN or Inf: later violations point back at it.
    first_non_finite: Option<u64>,
}

/// Records the inference history: spans per step, Jidoka checks, model info, counts.
///
/// Shared by reference (`&self` everywhere, a mutex inside), so nested spans and several threads
/// work. Off, every call is one branch on a plain `bool` and nothing is locked or allocated.
///
/// Nesting (`parent_event_id`) follows entry order: an entry's parent is the innermost span of
/// this tracer still open. With several threads entering spans on one tracer at once, give each
/// thread its own tracer if the parent links matter.
pub struct InferenceTracer {
    config: TraceConfig,
    clock: Box<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for InferenceTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceTracer")
            .field("config", &self.config)
            .field("state", &self.lock())
            .finish_non_exhaustive()
    }
}

/// A fresh event for `step`, with the fields that differ by kind left empty.
fn blank(event_type: EventType, step: Option<TraceStep>, site: &Site<'_>) -> TraceEvent {
    TraceEvent {
        id: 0,
        timestamp: String::new(),
        event_type,
        previous_event_id: None,
        parent_event_id: None,
        step,
        name: site.name.map(str::to_owned),
        iteration: site.iteration as u64,
        layer: site.layer.map(|l| l as u64),
        input_shape: Vec::new(),
        output_shape: Vec::new(),
        elapsed_us: Some(0),
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

fn stats_of(data: Data<'_>) -> EventStats {
    let fp = fingerprint(data);
    let mut stats = EventStats::from_fingerprint(&fp);
    if !stats.is_finite() {
        (stats.first_nan_index, stats.first_inf_index) = first_non_finite(data);
    }
    stats
}

impl InferenceTracer {
    /// A tracer with the real clock.
    pub fn new(config: TraceConfig) -> Self {
        Self::with_clock(config, SystemClock::new())
    }

    /// A tracer reading time from `clock` (a [`TickClock`](super::TickClock) makes output
    /// deterministic).
    pub fn with_clock(config: TraceConfig, clock: impl Clock + 'static) -> Self {
        Self {
            config,
            clock: Box::new(clock),
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
        }
    }

    /// A tracer that records nothing.
    pub fn disabled() -> Self {
        Self::new(TraceConfig::default())
    }

    /// A tracer configured from `TENSOR_TRACE_STEPS` and friends (see
    /// [`TraceConfig::from_env`]).
    pub fn from_env() -> Result<Self, crate::Error> {
        Ok(Self::new(TraceConfig::from_env()?))
    }

    /// The configuration.
    pub fn config(&self) -> &TraceConfig {
        &self.config
    }

    /// Whether anything is recorded.
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// Whether the text view shows every layer.
    pub fn is_verbose(&self) -> bool {
        self.config.enabled && self.config.verbose
    }

    /// Whether events of `step` are recorded.
    #[inline]
    pub fn should_trace(&self, step: TraceStep) -> bool {
        self.config.should_trace(step)
    }

    /// Attaches the model description to the run (also used for the vocab check).
    pub fn set_model_info(&self, info: ModelInfo) {
        if self.config.enabled {
            self.lock().model = info;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic inside a span must not hide the history: recover from poisoning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Assigns id, timestamp and elapsed time (never earlier than the previous event's) and
    /// appends. Returns the id.
    fn push(&self, state: &mut State, mut event: TraceEvent, elapsed_us: u64) -> u64 {
        let elapsed_us = elapsed_us.max(state.last_elapsed_us);
        state.last_elapsed_us = elapsed_us;
        event.id = state.next_id;
        state.next_id += 1;
        event.elapsed_us = Some(elapsed_us);
        event.timestamp = rfc3339(self.clock.start() + Duration::from_micros(elapsed_us));
        if let Some(severity) = event.severity {
            match severity {
                Severity::Error => state.error_count += 1,
                Severity::Warning => state.warning_count += 1,
            }
        }
        let id = event.id;
        state.events.push(event);
        id
    }

    /// Enters `step`: records `TaskStateEntered` and returns the span to exit.
    ///
    /// Dropping the span without [`Span::exit`] (an early `?`, a panic) records
    /// `ExecutionFailed`.
    #[inline]
    pub fn enter(&self, step: TraceStep, site: Site<'_>) -> Span<'_> {
        if !self.config.enabled {
            return Span::idle(self);
        }
        self.enter_slow(step, site, None)
    }

    /// [`enter`](Self::enter), also recording the input tensor's shape and stats: a later
    /// NaN/Inf then says whether this step produced it or received it.
    #[inline]
    pub fn enter_with_input(
        &self,
        step: TraceStep,
        site: Site<'_>,
        input: TensorView<'_>,
    ) -> Span<'_> {
        if !self.config.enabled {
            return Span::idle(self);
        }
        self.enter_slow(step, site, Some(input))
    }

    #[cold]
    #[inline(never)]
    fn enter_slow(
        &self,
        step: TraceStep,
        site: Site<'_>,
        input: Option<TensorView<'_>>,
    ) -> Span<'_> {
        if !self.config.should_trace(step) {
            return Span::idle(self);
        }
        let mut event = blank(EventType::TaskStateEntered, Some(step), &site);
        if let Some(view) = input {
            event.input_shape = view.shape().to_vec();
            event.stats = Some(stats_of(view.data()));
        }
        let input_finite = event.stats.as_ref().map(EventStats::is_finite);
        let layer = event.layer;
        let input_shape = event.input_shape.clone();
        let mut state = self.lock();
        event.parent_event_id = state.open.last().map(|o| o.id);
        let elapsed = self.now_us();
        let id = self.push(&mut state, event, elapsed);
        state.open.push(Open {
            id,
            step,
            layer,
            input_shape,
            input_finite,
        });
        drop(state);
        Span {
            tracer: self,
            open: Some(OpenSpan {
                id,
                step,
                site_iteration: site.iteration,
                site_layer: site.layer,
                start_us: elapsed,
                bridge: bridge::enter(step, site.iteration, site.layer, id),
            }),
        }
    }

    /// Records a step that the engine timed itself (a GPU kernel measured with device events):
    /// an entry and an exit `duration` apart, with `details.timed_by_engine` set.
    pub fn record_completed(
        &self,
        step: TraceStep,
        site: Site<'_>,
        duration: Duration,
        exit: Exit<'_>,
    ) -> Result<(), TraceError> {
        if !self.config.enabled {
            return Ok(());
        }
        let span = self.enter_slow(step, site, None);
        let Some(open) = span.into_open() else {
            return Ok(());
        };
        let end = open.start_us + u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.finish(open, exit, end, true)
    }

    /// Records an `ExecutionFailed` of the whole run (missing config, bad model file). Counted as
    /// an error; its `step` is `null`.
    pub fn record_execution_failed(&self, error: &str, cause: &str) {
        if !self.config.enabled {
            return;
        }
        let failure = TraceError::ExecutionFailed {
            step: None,
            layer: None,
            error: error.to_owned(),
            cause: cause.to_owned(),
        };
        let mut event = blank(EventType::ExecutionFailed, None, &Site::default());
        set_error(&mut event, &failure);
        let elapsed = self.now_us();
        let mut state = self.lock();
        event.parent_event_id = state.open.last().map(|o| o.id);
        let id = self.push(&mut state, event, elapsed);
        drop(state);
        bridge::violation(&failure, id);
    }

    /// Closes `open` with an exit built from `exit`, running the Jidoka checks.
    fn finish(
        &self,
        open: OpenSpan,
        exit: Exit<'_>,
        end_us: u64,
        timed_by_engine: bool,
    ) -> Result<(), TraceError> {
        let step = open.step;
        let site = Site {
            iteration: open.site_iteration,
            layer: open.site_layer,
            name: None,
        };
        let mut event = blank(EventType::TaskStateExited, Some(step), &site);
        event.previous_event_id = Some(open.id);
        event.duration_us = end_us.saturating_sub(open.start_us);

        let output = exit
            .output
            .map(|v| (v.shape().to_vec(), v.data()))
            .or_else(|| exit.logits.map(|l| (vec![l.len()], Data::F32(l))));
        if let Some((shape, data)) = &output {
            event.output_shape = shape.clone();
            event.stats = Some(stats_of(*data));
        }
        if let Some(shape) = exit.output_shape {
            event.output_shape = shape.to_vec();
        }
        if let Some(shape) = exit.input_shape {
            event.input_shape = shape.to_vec();
        }
        event.details = self.details(&exit, timed_by_engine);

        let mut state = self.lock();
        let Some(pos) = state.open.iter().position(|o| o.id == open.id) else {
            unreachable!("a span is closed exactly once");
        };
        let entry = state.open.remove(pos);
        if event.input_shape.is_empty() {
            event.input_shape.clone_from(&entry.input_shape);
        }
        let violation = self.check(&state, &entry, &exit, &event);
        if let Some(v) = &violation {
            set_error(&mut event, v);
        }
        let non_finite = event.stats.as_ref().is_some_and(|s| !s.is_finite());
        let id = self.push(&mut state, event, end_us);
        if non_finite && state.first_non_finite.is_none() {
            state.first_non_finite = Some(id);
        }
        drop(state);
        bridge::exit(open.bridge);
        match violation {
            Some(v) => {
                bridge::violation(&v, id);
                match self.config.policy {
                    Policy::Stop if v.severity() == Severity::Error => Err(v),
                    _ => Ok(()),
                }
            }
            None => Ok(()),
        }
    }

    fn details(&self, exit: &Exit<'_>, timed_by_engine: bool) -> TraceDetails {
        let mut d = exit.details.as_deref().cloned().unwrap_or_default();
        if let Some(text) = exit.input_text {
            d.input_text = Some(text.to_owned());
        }
        if let Some(ids) = exit.tokens {
            d.output_tokens = Some(ids.to_vec());
        }
        if let Some(logits) = exit.logits {
            let top = top_k_logits(logits, self.config.top_k);
            if let Some((token, temperature, top_k)) = exit.sampled {
                d.top_k_probs = Some(top_k_probs(logits, &top, temperature));
                d.sampled_token = Some(token);
                d.temperature = Some(temperature);
                d.top_k = Some(top_k);
            }
            d.top_k_logits = Some(top);
        } else if let Some((token, temperature, top_k)) = exit.sampled {
            d.sampled_token = Some(token);
            d.temperature = Some(temperature);
            d.top_k = Some(top_k);
        }
        if let Some((token, text)) = exit.decoded {
            d.sampled_token = Some(token);
            d.decoded_text = Some(text.to_owned());
        }
        if let Some(s) = exit.token_string {
            d.token_string = Some(s.to_owned());
        }
        if let Some(k) = exit.kernel {
            d.kernel_name = Some(k.name.to_owned());
            d.grid_dims = Some(k.grid);
            d.block_dims = Some(k.block);
            d.shared_mem_bytes = Some(k.shared_mem_bytes);
            d.dispatch_strategy = k.dispatch.map(str::to_owned);
        }
        d.timed_by_engine |= timed_by_engine;
        d
    }

    /// The first violation in causal order: shape, NaN, Inf, vocab, unknown token, garbage.
    fn check(
        &self,
        state: &State,
        entry: &Open,
        exit: &Exit<'_>,
        event: &TraceEvent,
    ) -> Option<TraceError> {
        let step = entry.step;
        let layer = entry.layer;
        if let Some(expected) = exit.expected_shape {
            if expected != event.output_shape.as_slice() {
                return Some(TraceError::ShapeMismatch {
                    step,
                    layer,
                    expected: expected.to_vec(),
                    actual: event.output_shape.clone(),
                });
            }
        }
        if let Some(stats) = &event.stats {
            let origin = match entry.input_finite {
                Some(true) => Origin::ThisStep,
                Some(false) => Origin::Upstream,
                None => Origin::Unknown,
            };
            let earlier_event = state.first_non_finite;
            if let Some(index) = stats.first_nan_index {
                return Some(TraceError::NanDetected {
                    step,
                    layer,
                    index,
                    count: stats.nan_count,
                    origin,
                    earlier_event,
                });
            }
            if let Some(index) = stats.first_inf_index {
                return Some(TraceError::InfDetected {
                    step,
                    layer,
                    index,
                    count: stats.inf_count,
                    origin,
                    earlier_event,
                });
            }
        }
        let produced = exit
            .tokens
            .unwrap_or(&[])
            .iter()
            .copied()
            .chain(exit.sampled.map(|s| s.0))
            .chain(exit.decoded.map(|d| d.0));
        let vocab_size = state.model.vocab_size;
        for (position, token_id) in produced.clone().enumerate() {
            if vocab_size > 0 && token_id as usize >= vocab_size {
                return Some(TraceError::VocabOverflow {
                    step,
                    token_id,
                    position,
                    vocab_size,
                });
            }
        }
        let unk = state.model.unk_token_id;
        if let Some(token_id) = exit
            .unknown_token
            .or_else(|| unk.and_then(|u| produced.clone().find(|&t| t == u)))
        {
            return Some(TraceError::UnknownToken { step, token_id });
        }
        if let Some((_, text)) = exit.decoded {
            let share = garbage_share(text);
            if share > self.config.garbage_threshold {
                return Some(TraceError::GarbageOutput {
                    step,
                    sample: text.chars().take(20).collect(),
                    share,
                    threshold: self.config.garbage_threshold,
                });
            }
        }
        None
    }

    /// Closes `open` with `ExecutionFailed`.
    fn fail_open(&self, open: OpenSpan, error: &str, cause: String) {
        let end_us = self.now_us();
        let site = Site {
            iteration: open.site_iteration,
            layer: open.site_layer,
            name: None,
        };
        let failure = TraceError::ExecutionFailed {
            step: Some(open.step),
            layer: open.site_layer.map(|l| l as u64),
            error: error.to_owned(),
            cause,
        };
        let mut event = blank(EventType::ExecutionFailed, Some(open.step), &site);
        event.previous_event_id = Some(open.id);
        event.duration_us = end_us.saturating_sub(open.start_us);
        set_error(&mut event, &failure);
        let mut state = self.lock();
        state.open.retain(|o| o.id != open.id);
        let id = self.push(&mut state, event, end_us);
        drop(state);
        bridge::exit(open.bridge);
        bridge::violation(&failure, id);
    }

    /// A copy of the history so far, as it would be saved.
    pub fn document(&self) -> TraceDocument {
        let state = self.lock();
        TraceDocument {
            version: REALIZAR_VERSION.to_owned(),
            format_version: EVENTS_FORMAT_VERSION,
            producer: Producer::TensorTrace,
            timestamp: rfc3339(self.clock.start()),
            model: state.model.clone(),
            events: state.events.clone(),
            error_count: state.error_count,
            warning_count: state.warning_count,
        }
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.lock().events.clone()
    }

    /// Number of error-severity violations and failures so far.
    pub fn error_count(&self) -> u64 {
        self.lock().error_count
    }

    /// Number of warning-severity violations so far.
    pub fn warning_count(&self) -> u64 {
        self.lock().warning_count
    }

    /// Checks the history against the contracts (see [`validate`]). Spans still open are
    /// reported as such, so call it when the run is over.
    pub fn validate_contracts(&self) -> Vec<ContractViolation> {
        validate(&self.document())
    }

    /// The JSON history (see [`TraceDocument::to_json`]).
    pub fn to_json(&self) -> String {
        self.document().to_json()
    }

    /// The human text view (see [`render::text`]).
    pub fn format_text(&self) -> String {
        render::text(&self.document(), self.config.verbose)
    }

    /// The Chrome trace event JSON (see [`render::chrome`]).
    pub fn to_chrome_trace(&self) -> String {
        render::chrome(&self.document())
    }

    /// Writes the JSON history to [`TraceConfig::output`], or the text view to stderr when no
    /// output is set. Does nothing when disabled.
    pub fn write_output(&self) -> std::io::Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        match &self.config.output {
            Some(path) => std::fs::write(path, self.to_json()),
            None => {
                eprint!("{}", self.format_text());
                Ok(())
            }
        }
    }
}

fn set_error(event: &mut TraceEvent, error: &TraceError) {
    event.error = Some(error.to_string());
    event.error_kind = Some(error.kind().to_owned());
    event.severity = Some(error.severity());
    event.cause = Some(error.cause());
    event.hint = Some(error.hint());
}

/// The live part of a recording span.
#[derive(Debug)]
struct OpenSpan {
    id: u64,
    step: TraceStep,
    site_iteration: usize,
    site_layer: Option<usize>,
    start_us: u64,
    bridge: bridge::Handle,
}

/// A step in progress. Close it with [`exit`](Self::exit) (or [`fail`](Self::fail)); dropped
/// without either, it records `ExecutionFailed` with the reason (early return or panic).
#[must_use = "a span dropped without exit() records ExecutionFailed"]
#[derive(Debug)]
pub struct Span<'t> {
    tracer: &'t InferenceTracer,
    open: Option<OpenSpan>,
}

impl<'t> Span<'t> {
    fn idle(tracer: &'t InferenceTracer) -> Self {
        Self { tracer, open: None }
    }

    fn into_open(mut self) -> Option<OpenSpan> {
        self.open.take()
    }

    /// Whether this span records anything (false when tracing or this step is off): skip
    /// building expensive exit payloads when it does not.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.open.is_some()
    }

    /// The id of the `TaskStateEntered` event, when recording.
    pub fn id(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.id)
    }

    /// Records `TaskStateExited` with what the step produced and runs the Jidoka checks. Under
    /// [`Policy::Stop`] the first error-severity violation is returned; under
    /// [`Policy::Warn`] it is only recorded and counted.
    #[inline]
    pub fn exit(mut self, exit: Exit<'_>) -> Result<(), TraceError> {
        match self.open.take() {
            None => Ok(()),
            Some(open) => {
                let end = self.tracer.now_us();
                self.tracer.finish(open, exit, end, false)
            }
        }
    }

    /// Records `ExecutionFailed` for this step with an error and its cause.
    pub fn fail(mut self, error: &str, cause: &str) {
        if let Some(open) = self.open.take() {
            self.tracer.fail_open(open, error, cause.to_owned());
        }
    }
}

impl Drop for Span<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            self.tracer.drop_open(open);
        }
    }
}

impl InferenceTracer {
    /// Records the failure of a span dropped without exit.
    #[cold]
    #[inline(never)]
    fn drop_open(&self, open: OpenSpan) {
        let at = super::jidoka::at(open.step, open.site_layer.map(|l| l as u64));
        let cause = if std::thread::panicking() {
            format!("panic inside {at} (iteration {})", open.site_iteration)
        } else {
            format!(
                "{at} (iteration {}) was left without exit: an early return such as `?`",
                open.site_iteration
            )
        };
        self.fail_open(open, "span dropped without exit", cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TickClock;

    fn tracer(config: TraceConfig) -> InferenceTracer {
        InferenceTracer::with_clock(config, TickClock::fixed())
    }

    #[test]
    fn disabled_records_nothing() {
        let t = InferenceTracer::disabled();
        let s = t.enter(TraceStep::Embed, Site::prefill());
        assert!(!s.is_recording());
        drop(s);
        t.record_execution_failed("x", "y");
        assert!(t.events().is_empty());
    }

    #[test]
    fn nested_spans_link_and_measure() {
        let t = tracer(TraceConfig::enabled());
        let block = t.enter(TraceStep::TransformerBlock, Site::iteration(1).layer(0));
        let attn = t.enter(TraceStep::Attention, Site::iteration(1).layer(0));
        attn.exit(Exit::new()).unwrap();
        block.exit(Exit::new()).unwrap();
        let e = t.events();
        let ids: Vec<_> = e
            .iter()
            .map(|e| (e.id, e.previous_event_id, e.parent_event_id))
            .collect();
        assert_eq!(
            ids,
            [
                (1, None, None),
                (2, None, Some(1)),
                (3, Some(2), None),
                (4, Some(1), None)
            ]
        );
        assert_eq!((e[2].duration_us, e[3].duration_us), (10, 30));
        assert!(t.validate_contracts().is_empty());
    }

    #[test]
    fn dropped_span_fails_with_cause() {
        let t = tracer(TraceConfig::enabled());
        let run = || -> Result<(), String> {
            let _s = t.enter(TraceStep::Ffn, Site::prefill().layer(2));
            Err("oom".to_owned())?;
            Ok(())
        };
        assert!(run().is_err());
        let e = t.events();
        assert_eq!(e[1].event_type, EventType::ExecutionFailed);
        assert_eq!(e[1].previous_event_id, Some(1));
        assert!(e[1].cause.as_deref().unwrap().contains("layer 2 FFN"));
        assert_eq!(t.error_count(), 1);
    }

    #[test]
    fn stop_policy_returns_the_violation() {
        let config = TraceConfig {
            policy: Policy::Stop,
            ..TraceConfig::enabled()
        };
        let t = tracer(config);
        let input = [1.0f32, 2.0];
        let output = [1.0f32, f32::NAN];
        let view = TensorView::new(&[2], &input[..]).unwrap();
        let s = t.enter_with_input(TraceStep::Attention, Site::prefill().layer(3), view);
        let err = s
            .exit(Exit::new().output(TensorView::new(&[2], &output[..]).unwrap()))
            .unwrap_err();
        assert!(matches!(
            err,
            TraceError::NanDetected {
                index: 1,
                origin: Origin::ThisStep,
                ..
            }
        ));
        assert!(err.hint().contains("softmax"));
    }

    #[test]
    fn vocab_and_garbage_checks() {
        let t = tracer(TraceConfig::enabled());
        t.set_model_info(ModelInfo {
            vocab_size: 10,
            ..ModelInfo::default()
        });
        t.enter(TraceStep::Tokenize, Site::prefill())
            .exit(Exit::new().tokens("hi", &[1, 12]))
            .unwrap();
        t.enter(TraceStep::Decode, Site::iteration(1))
            .exit(Exit::new().decoded(3, "\u{FFFD}\u{FFFD}a"))
            .unwrap();
        let e = t.events();
        assert_eq!(e[1].error_kind.as_deref(), Some("vocab_overflow"));
        assert_eq!(e[3].error_kind.as_deref(), Some("garbage_output"));
        assert_eq!((t.error_count(), t.warning_count()), (2, 0));
    }
}
