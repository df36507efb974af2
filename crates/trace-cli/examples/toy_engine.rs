//! A toy "engine" for the CLI's tests and for trying `tensor-trace record` by hand: two layers
//! of made-up activations traced through the global, environment-configured tracer.
//!
//! `toy_engine [--nan-at-layer L] [--steps N] [--exit CODE]`

use trace_core::{dump_with, Context, TensorView};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<i64>())
            .transpose()
    };
    let nan_layer = flag("--nan-at-layer")?;
    let steps = flag("--steps")?.unwrap_or(2) as u64;
    let exit = flag("--exit")?.unwrap_or(0) as i32;
    let mut hidden: Vec<f32> = (0..16).map(|i| i as f32 / 8.0 - 1.0).collect();
    for seq in 0..steps {
        let ctx = Context::default().seq(seq);
        dump_with(
            "embed",
            &ctx.layer(-1),
            TensorView::new(&[1, 16], &hidden[..])?,
        )?;
        for layer in 0..2i64 {
            for (stage, scale) in [("attn_out", 0.5f32), ("ffn_out", 1.5)] {
                hidden.iter_mut().for_each(|h| *h = (*h * scale).tanh());
                if nan_layer == Some(layer) && stage == "attn_out" {
                    hidden[3] = f32::NAN;
                }
                let name = format!("blk{layer}/{stage}");
                dump_with(
                    &name,
                    &ctx.layer(layer).stage(stage),
                    TensorView::new(&[1, 16], &hidden[..])?,
                )?;
            }
        }
        dump_with(
            "logits",
            &ctx.layer(-1),
            TensorView::new(&[1, 16], &hidden[..])?,
        )?;
    }
    trace_core::flush()?;
    std::process::exit(exit)
}
