//! A toy "engine" for the CLI's tests and for trying `tensor-trace record` by hand: layers of
//! made-up activations traced through the global, environment-configured tracer.
//!
//! `toy_engine [--nan-at-layer L] [--steps N] [--layers L] [--size N] [--exit CODE]
//!             [--plant-at K] [--swap-at K] [--shuffle-at K] [--mix] [--mix-from K] [--noise-at K] [--work N]`
//!
//! Records, per step: `embed`, then `blk{l}/attn_out` and `blk{l}/ffn_out` per layer, then
//! `logits`. K counts records from 0 across steps (the capture index). The hidden state carries
//! over from step to step, so a change at record K reaches every record after it.
//!
//! - `--plant-at K`: a bug: adds 0.25 to element 0 just before record K.
//! - `--swap-at K`: a bug the statistics cannot see: swaps elements 0 and 1 before record K
//!   (with `--mix`, the next mixing stage makes it visible in the statistics).
//! - `--shuffle-at K`: like `--swap-at`, for every pair of elements `2i`, `2i + 1` (a change the
//!   statistics cannot see whatever the size, until a mixing stage).
//! - `--mix`: `ffn_out` also adds a tenth of each element's right neighbour.
//! - `--mix-from K`: `--mix` for the `ffn_out` records from record K on only (so a swap before
//!   K stays invisible to the statistics until then).
//! - `--noise-at K`: nondeterminism: adds a value derived from the process id and the clock
//!   to element 0 of record K only, so that record differs from run to run.
//! - `--work N`: N extra passes of arithmetic over the hidden state per stage, standing in for
//!   the compute of a real engine (for measuring what tracing costs against it).

use std::time::{SystemTime, UNIX_EPOCH};

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
    let layers = flag("--layers")?.unwrap_or(2);
    let size = flag("--size")?.unwrap_or(16) as usize;
    let exit = flag("--exit")?.unwrap_or(0) as i32;
    let plant_at = flag("--plant-at")?;
    let swap_at = flag("--swap-at")?;
    let shuffle_at = flag("--shuffle-at")?;
    let noise_at = flag("--noise-at")?;
    let mix_from = match args.iter().any(|a| a == "--mix") {
        true => Some(0),
        false => flag("--mix-from")?,
    };
    let work = flag("--work")?.unwrap_or(0);

    let mut hidden: Vec<f32> = (0..size).map(|i| (i % 16) as f32 / 8.0 - 1.0).collect();
    let mut index = 0i64;
    // Applies the planted changes due at this record, records it, and returns the noise added
    // (which is taken out again, so only this one record is nondeterministic).
    let mut emit = |name: &str,
                    ctx: &Context<'_>,
                    h: &mut Vec<f32>|
     -> Result<(), Box<dyn std::error::Error>> {
        if plant_at == Some(index) {
            h[0] += 0.25;
        }
        if swap_at == Some(index) {
            h.swap(0, 1);
        }
        if shuffle_at == Some(index) {
            h.chunks_exact_mut(2).for_each(|pair| pair.swap(0, 1));
        }
        let noise = if noise_at == Some(index) {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
            (std::process::id() ^ nanos) % 4093 + 1
        } else {
            0
        };
        h[0] += noise as f32 * 1e-3;
        dump_with(name, ctx, TensorView::new(&[1, h.len()], &h[..])?)?;
        h[0] -= noise as f32 * 1e-3;
        index += 1;
        Ok(())
    };
    for seq in 0..steps {
        let ctx = Context::default().seq(seq);
        emit("embed", &ctx.layer(-1), &mut hidden)?;
        for layer in 0..layers {
            for (stage, scale) in [("attn_out", 0.5f32), ("ffn_out", 1.5)] {
                hidden.iter_mut().for_each(|h| *h = (*h * scale).tanh());
                for _ in 0..work {
                    let sum: f32 = hidden.iter().map(|h| h.sin()).sum();
                    std::hint::black_box(sum);
                }
                // This record's index: `embed`, two per layer, `logits` per step.
                let at = seq as i64 * (2 + 2 * layers) + 2 + 2 * layer;
                if mix_from.is_some_and(|k| at >= k) && stage == "ffn_out" {
                    let right: Vec<f32> = (0..hidden.len())
                        .map(|i| hidden[(i + 1) % hidden.len()])
                        .collect();
                    hidden
                        .iter_mut()
                        .zip(right)
                        .for_each(|(h, r)| *h += 0.1 * r);
                }
                if nan_layer == Some(layer) && stage == "attn_out" {
                    hidden[3] = f32::NAN;
                }
                let name = format!("blk{layer}/{stage}");
                emit(&name, &ctx.layer(layer).stage(stage), &mut hidden)?;
            }
        }
        emit("logits", &ctx.layer(-1), &mut hidden)?;
    }
    trace_core::flush()?;
    std::process::exit(exit)
}
