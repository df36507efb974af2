//! A deterministic run exercising every step, check and failure path.

use trace_core::TensorView;
use trace_events::{
    Exit, InferenceTracer, Kernel, ModelInfo, Site, TickClock, TraceConfig, TraceDetails, TraceStep,
};

/// A tracer on the fixed tick clock, so every timestamp and duration is reproducible.
pub fn tracer(config: TraceConfig) -> InferenceTracer {
    InferenceTracer::with_clock(config, TickClock::fixed())
}

/// Two layers, one decode step, a NaN born in layer 1 attention, a garbage decode, a dropped
/// span and a run-level failure.
pub fn run() -> InferenceTracer {
    let t = tracer(TraceConfig::enabled());
    t.set_model_info(ModelInfo {
        name: "tiny-llama".into(),
        num_layers: 2,
        hidden_dim: 4,
        vocab_size: 8,
        num_heads: 2,
        quant_type: Some("F32".into()),
        unk_token_id: Some(0),
    });

    let tokens = [1u32, 0, 3];
    t.enter(TraceStep::Tokenize, Site::prefill())
        .exit(Exit::new().tokens("Hi there", &tokens).output_shape(&[3]))
        .unwrap();

    let hidden: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    t.enter(TraceStep::Embed, Site::prefill())
        .exit(
            Exit::new()
                .input_shape(&[3])
                .output(TensorView::new(&[3, 4], &hidden).unwrap()),
        )
        .unwrap();

    let mut nan_hidden = hidden.clone();
    nan_hidden[5] = f32::NAN;
    for layer in 0..2 {
        let view = TensorView::new(&[3, 4], &hidden).unwrap();
        let block = t.enter_with_input(
            TraceStep::TransformerBlock,
            Site::prefill().layer(layer),
            view,
        );
        let attn = t.enter_with_input(
            TraceStep::Attention,
            Site::prefill().layer(layer).name("attn"),
            view,
        );
        let out = if layer == 1 { &nan_hidden } else { &hidden };
        attn.exit(Exit::new().output(TensorView::new(&[3, 4], out).unwrap()))
            .unwrap();
        let ffn_input = TensorView::new(&[3, 4], out).unwrap();
        let ffn = t.enter_with_input(TraceStep::Ffn, Site::prefill().layer(layer), ffn_input);
        ffn.exit(
            Exit::new()
                .output(TensorView::new(&[3, 4], out).unwrap())
                .expect_shape(&[3, 4]),
        )
        .unwrap();
        t.record_completed(
            TraceStep::KernelLaunch,
            Site::prefill().layer(layer),
            std::time::Duration::from_micros(7),
            Exit::new().kernel(Kernel {
                name: "q4k_gemv",
                grid: [32, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 4096,
                dispatch: Some("grid_y"),
            }),
        )
        .unwrap();
        block
            .exit(Exit::new().output(TensorView::new(&[3, 4], out).unwrap()))
            .unwrap();
    }

    let logits = [0.5f32, 2.0, -1.0, 2.0, 0.25, -3.0, 1.5, 0.0];
    t.enter(TraceStep::LmHead, Site::prefill())
        .exit(Exit::new().input_shape(&[4]).logits(&logits))
        .unwrap();
    t.enter(TraceStep::Sample, Site::prefill())
        .exit(Exit::new().logits(&logits).sampled(1, 0.7, 40))
        .unwrap();
    t.enter(TraceStep::Decode, Site::prefill())
        .exit(Exit::new().decoded(1, " the").token_string("Ġthe"))
        .unwrap();

    // Iteration 1: the LM head errors out through `?`, the decode produces garbage.
    let lm_head = || -> Result<(), String> {
        let _span = t.enter(TraceStep::LmHead, Site::iteration(1));
        Err("out of device memory".to_owned())?;
        Ok(())
    };
    lm_head().unwrap_err();
    t.enter(TraceStep::Decode, Site::iteration(1))
        .exit(Exit::new().decoded(6, "\u{FFFD}\u{FFFD}x"))
        .unwrap();
    t.enter(TraceStep::BrickProfile, Site::iteration(1))
        .exit(Exit::new().details(TraceDetails {
            brick_categories: Some(vec![
                ("Attention".into(), 1_500_000),
                ("FFN".into(), 900_000),
            ]),
            brick_timings: Some(vec![("RmsNorm".into(), 120_000, 4)]),
            ..TraceDetails::default()
        }))
        .unwrap();
    t.record_execution_failed("generation aborted", "max errors reached");
    t
}
