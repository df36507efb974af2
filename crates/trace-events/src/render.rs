//! Human and Chrome-trace views of an event history. (The JSON view is
//! [`TraceDocument::to_json`].)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::schema::{EventType, Producer, Severity, TraceDetails, TraceDocument, TraceEvent};
use super::step::TraceStep;

/// Layers shown per step and iteration in the text view unless verbose (errors always show).
const LAYERS_SHOWN: usize = 3;

/// The text view: per iteration, per step (pipeline order) and layer, one line per finished
/// step with its duration, output and status; then a summary of every error with its cause and
/// hint.
pub fn text(doc: &TraceDocument, verbose: bool) -> String {
    let mut out = String::new();
    let m = &doc.model;
    out.push_str("=== tensor-trace inference events ===\n");
    if !m.name.is_empty() {
        let _ = write!(
            out,
            "Model: {} ({} layers, hidden={}, vocab={}, heads={})",
            m.name, m.num_layers, m.hidden_dim, m.vocab_size, m.num_heads
        );
        if let Some(q) = &m.quant_type {
            let _ = write!(out, " {q}");
        }
        out.push('\n');
    }
    match doc.producer {
        Producer::TensorTrace => {
            let _ = writeln!(out, "Started: {}", doc.timestamp);
        }
        Producer::Realizar => {
            let _ = writeln!(out, "Written: {} (by realizar)", doc.timestamp);
        }
    }

    let entries: HashMap<u64, &TraceEvent> = doc
        .events
        .iter()
        .filter(|e| e.event_type == EventType::TaskStateEntered)
        .map(|e| (e.id, e))
        .collect();
    let closed: HashSet<u64> = doc
        .events
        .iter()
        .filter_map(|e| e.previous_event_id)
        .collect();

    // Finished steps grouped by iteration, then step, then (layer, id).
    let mut groups: BTreeMap<u64, BTreeMap<TraceStep, Vec<&TraceEvent>>> = BTreeMap::new();
    let mut run_failures = Vec::new();
    for e in &doc.events {
        match (e.event_type, e.step) {
            (EventType::TaskStateEntered, _) => {}
            (_, None) => run_failures.push(e),
            (_, Some(step)) => groups
                .entry(e.iteration)
                .or_default()
                .entry(step)
                .or_default()
                .push(e),
        }
    }
    for (iteration, steps) in &groups {
        let label = if *iteration == 0 { " (prefill)" } else { "" };
        let _ = writeln!(out, "\n--- iteration {iteration}{label} ---");
        for (step, events) in steps {
            let mut events = events.clone();
            events.sort_by_key(|e| (e.layer, e.id));
            let _ = writeln!(out, "[{}/8] {}", step.step_number(), step.name());
            let mut hidden = 0usize;
            for (n, e) in events.iter().enumerate() {
                if verbose || e.layer.is_none() || n < LAYERS_SHOWN || e.error.is_some() {
                    event_lines(&mut out, e);
                } else {
                    hidden += 1;
                }
            }
            if hidden > 0 {
                let _ = writeln!(out, "  ... {hidden} more layers OK (--verbose shows them)");
            }
        }
    }
    for e in &run_failures {
        out.push_str("\n--- run ---\n");
        event_lines(&mut out, e);
    }
    let mut open: Vec<&&TraceEvent> = entries
        .iter()
        .filter(|(id, _)| !closed.contains(id))
        .map(|(_, e)| e)
        .collect();
    if !open.is_empty() {
        open.sort_by_key(|e| e.id);
        out.push_str("\n--- still open ---\n");
        for e in open {
            let _ = writeln!(
                out,
                "  #{} {}{} entered, never exited",
                e.id,
                step_label(e.step),
                layer_label(e.layer)
            );
        }
    }

    let _ = write!(out, "\n=== ");
    if doc.error_count == 0 && doc.warning_count == 0 {
        out.push_str("trace complete: no errors ===\n");
        return out;
    }
    let _ = writeln!(
        out,
        "summary: {} errors, {} warnings ===",
        doc.error_count, doc.warning_count
    );
    for e in doc.events.iter().filter(|e| e.error.is_some()) {
        out.push_str(&violation(e));
    }
    out
}

/// One recorded violation: `error at event 7 (ATTENTION layer 3, iteration 0): ...`, then its
/// cause and hint on their own lines. Empty for an event without an error.
pub fn violation(e: &TraceEvent) -> String {
    let Some(error) = &e.error else {
        return String::new();
    };
    let severity = match e.severity {
        Some(Severity::Warning) => "warning",
        _ => "error",
    };
    let mut out = format!(
        "{severity} at event {} ({}{}, iteration {}): {}\n",
        e.id,
        step_label(e.step),
        layer_label(e.layer),
        e.iteration,
        printable(error),
    );
    if let Some(cause) = &e.cause {
        let _ = writeln!(out, "  cause: {}", printable(cause));
    }
    if let Some(hint) = &e.hint {
        let _ = writeln!(out, "  hint:  {}", printable(hint));
    }
    out
}

/// `s` with control characters escaped (`\u{1b}`), so a message read from a file (realizar's
/// causes may hold terminal escapes) cannot drive the terminal it is printed to.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

fn step_label(step: Option<TraceStep>) -> &'static str {
    step.map_or("RUN", TraceStep::name)
}

fn layer_label(layer: Option<u64>) -> String {
    layer.map(|l| format!(" layer {l}")).unwrap_or_default()
}

fn pairs(list: &[(u32, f32)], digits: usize) -> String {
    list.iter()
        .map(|(id, v)| format!("{id}={v:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn event_lines(out: &mut String, e: &TraceEvent) {
    let where_ = match e.layer {
        Some(l) => format!("layer {l:>2} "),
        None => String::new(),
    };
    let _ = write!(out, "  {where_}#{} {}us", e.id, e.duration_us);
    if !e.input_shape.is_empty() {
        let _ = write!(out, " in {:?}", e.input_shape);
    }
    if !e.output_shape.is_empty() {
        let _ = write!(out, " out {:?}", e.output_shape);
    }
    if let Some(s) = &e.stats {
        match (s.min, s.max, s.mean) {
            (Some(min), Some(max), Some(mean)) => {
                let _ = write!(out, " range [{min:.3}, {max:.3}] mean {mean:.4}");
            }
            _ => out.push_str(" no finite values"),
        }
        if !s.is_finite() {
            let _ = write!(out, " nan={} inf={}", s.nan_count, s.inf_count);
        }
    }
    if let Some(s) = &e.summary {
        match (s.has_finite(), s.min, s.max) {
            (true, Some(min), Some(max)) => {
                let _ = write!(out, " range [{min:.3}, {max:.3}] mean ");
                match s.mean {
                    Some(mean) => {
                        let _ = write!(out, "{mean:.4}");
                    }
                    None => out.push_str("NaN"),
                }
            }
            _ => out.push_str(" no finite values"),
        }
        if s.has_nan || s.has_inf {
            let _ = write!(out, " has_nan={} has_inf={}", s.has_nan, s.has_inf);
        }
    }
    match (e.event_type, e.severity) {
        (EventType::ExecutionFailed, _) => out.push_str("  FAILED\n"),
        (_, Some(Severity::Error)) => out.push_str("  ERROR\n"),
        (_, Some(Severity::Warning)) => out.push_str("  WARNING\n"),
        _ => out.push_str("  OK\n"),
    }
    detail_lines(out, &e.details);
    if let Some(err) = &e.error {
        let _ = writeln!(out, "    {}", printable(err));
    }
}

fn detail_lines(out: &mut String, d: &TraceDetails) {
    if let Some(text) = &d.input_text {
        let shown: String = text.chars().take(50).collect();
        let more = if text.chars().count() > 50 { "..." } else { "" };
        let _ = writeln!(out, "    input:   {shown:?}{more}");
    }
    if let Some(tokens) = &d.output_tokens {
        let more = if tokens.len() > 10 { "..." } else { "" };
        let _ = writeln!(
            out,
            "    tokens:  {:?}{more} ({} tokens)",
            &tokens[..tokens.len().min(10)],
            tokens.len()
        );
    }
    if let Some(top) = &d.top_k_logits {
        let _ = writeln!(out, "    top-k:   {}", pairs(top, 2));
    }
    if let Some(top) = &d.top_k_probs {
        let _ = writeln!(out, "    probs:   {}", pairs(top, 3));
    }
    if let (Some(t), Some(k)) = (d.temperature, d.top_k) {
        let _ = writeln!(out, "    params:  temperature={t} top_k={k}");
    }
    if let Some(token) = d.sampled_token {
        let _ = write!(out, "    token:   {token}");
        if let Some(s) = &d.token_string {
            let _ = write!(out, " {s:?}");
        }
        out.push('\n');
    }
    if let Some(text) = &d.decoded_text {
        let _ = writeln!(out, "    decoded: {text:?}");
    }
    if let Some(name) = &d.kernel_name {
        let _ = write!(out, "    kernel:  {name}");
        if let (Some(g), Some(b)) = (d.grid_dims, d.block_dims) {
            let _ = write!(out, " grid {g:?} block {b:?}");
        }
        if let Some(smem) = d.shared_mem_bytes {
            let _ = write!(out, " smem {smem}B");
        }
        if let Some(s) = &d.dispatch_strategy {
            let _ = write!(out, " dispatch {s}");
        }
        out.push('\n');
    }
    for (name, ns) in d.brick_categories.iter().flatten() {
        let _ = writeln!(out, "    {name:<12} {:.3}ms", *ns as f64 / 1e6);
    }
    for (name, ns, count) in d.brick_timings.iter().flatten() {
        let _ = writeln!(out, "    {name:<20} {:.3}ms (x{count})", *ns as f64 / 1e6);
    }
}

/// Process id used in the Chrome trace.
const PID: u64 = 1;
/// Thread lane for pipeline steps (nested spans stack by time containment).
const TID_STEPS: u64 = 1;
/// Thread lane for engine-timed kernel launches and brick profiles, which may overlap.
const TID_DEVICE: u64 = 2;

/// The Chrome trace event format (JSON object form), loadable in Perfetto and chrome://tracing.
///
/// Each finished or failed span is a complete (`"ph": "X"`) event from its entry's `elapsed_us`
/// (in a realizar history, which has none: its timestamp minus the first event's, at realizar's
/// millisecond precision) lasting `duration_us`, on one thread so that a transformer block's attention and FFN nest
/// under it; the name carries step and layer (`ATTENTION L3`). Kernel launches and brick profiles
/// go to a second lane. Violations and run-level failures are instant events; spans never
/// exited are drawn to the end of the trace with `"status": "open"`.
pub fn chrome(doc: &TraceDocument) -> String {
    let process = if doc.model.name.is_empty() {
        "tensor-trace".to_owned()
    } else {
        format!("tensor-trace: {}", doc.model.name)
    };
    let mut events = vec![
        json!({"name": "process_name", "ph": "M", "pid": PID, "tid": TID_STEPS, "args": {"name": process}}),
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": TID_STEPS, "args": {"name": "pipeline"}}),
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": TID_DEVICE, "args": {"name": "device"}}),
    ];
    let offsets = offsets(doc);
    let end = offsets.iter().copied().max().unwrap_or(0);
    let closers: HashMap<u64, &TraceEvent> = doc
        .events
        .iter()
        .filter_map(|e| e.previous_event_id.map(|id| (id, e)))
        .collect();
    for (e, &ts) in doc.events.iter().zip(&offsets) {
        match e.event_type {
            EventType::TaskStateEntered => {
                let closer = closers.get(&e.id).copied();
                events.push(span_event(e, ts, closer, end));
            }
            _ => {
                if e.event_type == EventType::TaskStateExited && e.previous_event_id.is_none() {
                    events.push(leaf_event(e, ts));
                }
                if e.error.is_some() {
                    let mut args = json!({"event_id": e.id, "message": e.error, "cause": e.cause, "hint": e.hint});
                    if let Some(layer) = e.layer {
                        args["layer"] = json!(layer);
                    }
                    events.push(json!({
                        "name": e.error_kind.as_deref().unwrap_or("error"),
                        "cat": "jidoka",
                        "ph": "i",
                        "s": if e.step.is_some() { "t" } else { "g" },
                        "ts": ts,
                        "pid": PID,
                        "tid": lane(e.step),
                        "args": args,
                    }));
                }
            }
        }
    }
    let doc_json = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "format": "tensor-trace events",
            "format_version": doc.format_version,
            "timestamp": doc.timestamp,
            "model": doc.model.name,
            "error_count": doc.error_count,
            "warning_count": doc.warning_count,
        },
    });
    let mut s = serde_json::to_string_pretty(&doc_json).expect("chrome traces always serialize");
    s.push('\n');
    s
}

/// Each event's time in µs since the history started: `elapsed_us`, or where there is none (a
/// realizar history) the wall-clock timestamp minus the first event's; an unreadable timestamp
/// takes the previous event's time (the contracts report it).
fn offsets(doc: &TraceDocument) -> Vec<u64> {
    let parsed: Vec<Option<std::time::SystemTime>> = doc
        .events
        .iter()
        .map(|e| humantime::parse_rfc3339(&e.timestamp).ok())
        .collect();
    let base = parsed.iter().flatten().next().copied();
    let mut last = 0;
    doc.events
        .iter()
        .zip(parsed)
        .map(|(e, time)| {
            let wall = time.zip(base).map(|(t, b)| {
                let since = t.duration_since(b).unwrap_or_default().as_micros();
                u64::try_from(since).unwrap_or(u64::MAX)
            });
            last = e.elapsed_us.or(wall).unwrap_or(last);
            last
        })
        .collect()
}

fn lane(step: Option<TraceStep>) -> u64 {
    match step {
        Some(TraceStep::KernelLaunch | TraceStep::BrickProfile) => TID_DEVICE,
        _ => TID_STEPS,
    }
}

/// An exit without an entry (realizar records kernel launches so): a complete event ending at
/// the exit and lasting its `duration_us`.
fn leaf_event(exit: &TraceEvent, ts: u64) -> Value {
    let step = step_label(exit.step);
    let name = match exit.layer {
        Some(l) => format!("{step} L{l}"),
        None => step.to_owned(),
    };
    let mut args = json!({
        "exit_id": exit.id,
        "iteration": exit.iteration,
        "status": if exit.error.is_some() { "error" } else { "ok" },
    });
    if let Some(l) = exit.layer {
        args["layer"] = json!(l);
    }
    if let Some(k) = &exit.details.kernel_name {
        args["kernel"] = json!(k);
    }
    json!({
        "name": name,
        "cat": step.to_ascii_lowercase(),
        "ph": "X",
        "ts": ts.saturating_sub(exit.duration_us),
        "dur": exit.duration_us,
        "pid": PID,
        "tid": lane(exit.step),
        "args": args,
    })
}

fn span_event(entry: &TraceEvent, ts: u64, closer: Option<&TraceEvent>, end: u64) -> Value {
    let step = step_label(entry.step);
    // realizar's entries know neither layer nor iteration; its exits do.
    let layer = entry.layer.or(closer.and_then(|c| c.layer));
    let iteration = closer.map_or(entry.iteration, |c| c.iteration);
    let name = match layer {
        Some(l) => format!("{step} L{l}"),
        None => step.to_owned(),
    };
    let (dur, status) = match closer {
        Some(c) if c.event_type == EventType::ExecutionFailed => (c.duration_us, "failed"),
        Some(c) if c.severity == Some(Severity::Error) => (c.duration_us, "error"),
        Some(c) if c.severity == Some(Severity::Warning) => (c.duration_us, "warning"),
        Some(c) => (c.duration_us, "ok"),
        None => (end.saturating_sub(ts), "open"),
    };
    let mut args = json!({
        "entry_id": entry.id,
        "iteration": iteration,
        "status": status,
    });
    if let Some(l) = layer {
        args["layer"] = json!(l);
    }
    if let Some(n) = &entry.name {
        args["name"] = json!(n);
    }
    if let Some(c) = closer {
        args["exit_id"] = json!(c.id);
        args["input_shape"] = json!(c.input_shape);
        args["output_shape"] = json!(c.output_shape);
        if let Some(s) = &c.stats {
            args["stats"] = json!({"min": s.min, "max": s.max, "mean": s.mean, "nan_count": s.nan_count, "inf_count": s.inf_count});
        }
        if let Some(s) = &c.summary {
            args["stats"] = serde_json::to_value(s).expect("summaries always serialize");
        }
        if let Some(err) = &c.error {
            args["error"] = json!(err);
        }
        if let Some(k) = &c.details.kernel_name {
            args["kernel"] = json!(k);
        }
    }
    json!({
        "name": name,
        "cat": step.to_ascii_lowercase(),
        "ph": "X",
        "ts": ts,
        "dur": dur,
        "pid": PID,
        "tid": lane(entry.step),
        "args": args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Exit, InferenceTracer, Site, TickClock, TraceConfig};

    #[test]
    fn layers_beyond_three_are_folded_unless_verbose() {
        let t = InferenceTracer::with_clock(TraceConfig::enabled(), TickClock::fixed());
        for layer in 0..5 {
            t.enter(TraceStep::Attention, Site::prefill().layer(layer))
                .exit(Exit::new())
                .unwrap();
        }
        let doc = t.document();
        assert!(text(&doc, false).contains("... 2 more layers OK"));
        assert!(!text(&doc, true).contains("more layers"));
        assert!(text(&doc, false).ends_with("trace complete: no errors ===\n"));
    }

    #[test]
    fn chrome_nests_by_time() {
        let t = InferenceTracer::with_clock(TraceConfig::enabled(), TickClock::fixed());
        let block = t.enter(TraceStep::TransformerBlock, Site::prefill().layer(0));
        t.enter(TraceStep::Attention, Site::prefill().layer(0))
            .exit(Exit::new())
            .unwrap();
        block.exit(Exit::new()).unwrap();
        let v: Value = serde_json::from_str(&chrome(&t.document())).unwrap();
        let x: Vec<&Value> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .collect();
        let (outer, inner) = (x[0], x[1]);
        assert_eq!(
            (outer["name"].as_str(), inner["name"].as_str()),
            (Some("TRANSFORMER_BLOCK L0"), Some("ATTENTION L0"))
        );
        let span = |e: &Value| {
            (
                e["ts"].as_u64().unwrap(),
                e["ts"].as_u64().unwrap() + e["dur"].as_u64().unwrap(),
            )
        };
        assert!(span(outer).0 <= span(inner).0 && span(inner).1 <= span(outer).1);
    }
}
