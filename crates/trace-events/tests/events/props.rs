//! Any sequence of enter, exit, fail and drop yields a history that passes the contracts.

use proptest::prelude::*;
use trace_core::TensorView;
use trace_events::{validate, Exit, Policy, Site, Span, TraceConfig, TraceDocument, TraceStep};

use crate::scenario;

#[derive(Debug, Clone)]
enum Op {
    Enter {
        step: usize,
        layer: Option<usize>,
    },
    /// Exit the open span at (index mod open count), optionally with a NaN output.
    Exit {
        which: usize,
        nan: bool,
    },
    Fail {
        which: usize,
    },
    Drop {
        which: usize,
    },
    RunFailed,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..TraceStep::ALL.len(), prop::option::of(0usize..4))
            .prop_map(|(step, layer)| Op::Enter { step, layer }),
        4 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(which, nan)| Op::Exit { which, nan }),
        1 => any::<usize>().prop_map(|which| Op::Fail { which }),
        1 => any::<usize>().prop_map(|which| Op::Drop { which }),
        1 => Just(Op::RunFailed),
    ]
}

fn take<'t>(open: &mut Vec<Span<'t>>, which: usize) -> Option<Span<'t>> {
    if open.is_empty() {
        None
    } else {
        let i = which % open.len();
        Some(open.remove(i))
    }
}

proptest! {
    #[test]
    fn any_sequence_passes_the_contracts(
        ops in prop::collection::vec(op(), 0..60),
        stop in any::<bool>(),
        steps in prop::sample::subsequence(TraceStep::ALL.to_vec(), 0..=TraceStep::ALL.len()),
    ) {
        let config = TraceConfig {
            policy: if stop { Policy::Stop } else { Policy::Warn },
            steps: steps.into_iter().collect(),
            ..TraceConfig::enabled()
        };
        let t = scenario::tracer(config);
        let values = [1.0f32, f32::NAN];
        {
            let mut open: Vec<Span<'_>> = Vec::new();
            for op in ops {
                match op {
                    Op::Enter { step, layer } => {
                        let site = Site { layer, ..Site::iteration(1) };
                        open.push(t.enter(TraceStep::ALL[step], site));
                    }
                    Op::Exit { which, nan } => {
                        if let Some(span) = take(&mut open, which) {
                            let data = if nan { &values[..] } else { &values[..1] };
                            let shape = [data.len()];
                            let view = TensorView::new(&shape, data).unwrap();
                            let recording = span.is_recording();
                            let result = span.exit(Exit::new().output(view));
                            prop_assert_eq!(result.is_err(), stop && nan && recording);
                        }
                    }
                    Op::Fail { which } => {
                        if let Some(span) = take(&mut open, which) {
                            span.fail("step failed", "injected by the property test");
                        }
                    }
                    Op::Drop { which } => drop(take(&mut open, which)),
                    Op::RunFailed => t.record_execution_failed("run failed", "injected"),
                }
            }
            // The rest unwind in reverse order, as at the end of a scope.
            while let Some(span) = open.pop() {
                drop(span);
            }
        }
        let doc = t.document();
        let violations = validate(&doc);
        prop_assert!(violations.is_empty(), "{:?}", violations);
        prop_assert_eq!(TraceDocument::from_json(&doc.to_json()).unwrap(), doc);
    }
}
