//! The optional bridge to the `tracing` crate (feature `tracing`).
//!
//! With the feature on, every recording span is also a `tracing` span named `trace_step` (target
//! `tensor_trace::events`, fields `step`, `layer`, `iteration`, `event_id`) that closes when the
//! step exits or fails, and every Jidoka violation is a `tracing` event (`ERROR` or `WARN`) with
//! its kind, cause and hint. A `tracing-subscriber` or OpenTelemetry layer then sees them
//! alongside the engine's own logs. Without the feature, this module compiles to nothing.

use super::jidoka::TraceError;
use super::step::TraceStep;

/// What a recording span keeps for the bridge: the `tracing` span (held for its `Drop`, which
/// closes it), or nothing.
#[derive(Debug)]
pub(crate) struct Handle {
    #[cfg(feature = "tracing")]
    _span: tracing::Span,
}

/// Opens the `tracing` span of a step.
#[cfg(feature = "tracing")]
pub(crate) fn enter(step: TraceStep, iteration: usize, layer: Option<usize>, id: u64) -> Handle {
    Handle {
        _span: tracing::info_span!(
            target: "tensor_trace::events",
            "trace_step",
            step = step.name(),
            layer = layer.map(|l| l as u64),
            iteration = iteration as u64,
            event_id = id,
        ),
    }
}

/// Opens the `tracing` span of a step.
#[cfg(not(feature = "tracing"))]
pub(crate) fn enter(
    _step: TraceStep,
    _iteration: usize,
    _layer: Option<usize>,
    _id: u64,
) -> Handle {
    Handle {}
}

/// Closes the `tracing` span of a step.
pub(crate) fn exit(_handle: Handle) {}

/// Emits a violation as a `tracing` event.
#[cfg(feature = "tracing")]
pub(crate) fn violation(error: &TraceError, event_id: u64) {
    use super::schema::Severity;
    let (kind, cause, hint) = (error.kind(), error.cause(), error.hint());
    let step = error.step().map(TraceStep::name);
    match error.severity() {
        Severity::Error => tracing::error!(
            target: "tensor_trace::events",
            event_id, kind, step, cause = %cause, hint = %hint, "{error}"
        ),
        Severity::Warning => tracing::warn!(
            target: "tensor_trace::events",
            event_id, kind, step, cause = %cause, hint = %hint, "{error}"
        ),
    }
}

/// Emits a violation as a `tracing` event.
#[cfg(not(feature = "tracing"))]
pub(crate) fn violation(_error: &TraceError, _event_id: u64) {}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use crate::{Exit, InferenceTracer, Site, TickClock, TraceConfig, TraceStep};
    use trace_core::TensorView;

    /// Counts spans and events: enough to see the bridge fire without a subscriber crate.
    #[derive(Default)]
    struct Counter {
        spans: AtomicU64,
        events: AtomicU64,
    }

    struct Sub(Arc<Counter>);

    impl Subscriber for Sub {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(self.0.spans.fetch_add(1, Ordering::Relaxed) + 1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {
            self.0.events.fetch_add(1, Ordering::Relaxed);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn spans_and_violations_reach_tracing() {
        let counter = Arc::new(Counter::default());
        tracing::subscriber::with_default(Sub(counter.clone()), || {
            let t = InferenceTracer::with_clock(TraceConfig::enabled(), TickClock::fixed());
            let nan = [f32::NAN];
            let s = t.enter(TraceStep::Ffn, Site::prefill().layer(0));
            s.exit(Exit::new().output(TensorView::new(&[1], &nan[..]).unwrap()))
                .unwrap();
            drop(t.enter(TraceStep::Sample, Site::prefill()));
        });
        assert_eq!(counter.spans.load(Ordering::Relaxed), 2);
        assert_eq!(counter.events.load(Ordering::Relaxed), 2);
    }
}
