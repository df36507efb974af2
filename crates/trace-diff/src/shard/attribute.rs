//! Naming the rank(s) at the first divergence of a reassembled run: each rank's own record
//! compared with its part of the reference.

use trace_core::run::{Run, RunRecord};
use trace_core::{fingerprint, Data, Stats, TraceRecord};

use super::merge::{concat_shape, slice_of, Origin};
use crate::metrics::finite_rms;
use crate::rules::{ShardSplit, Tolerance};
use crate::values;

/// The ranks whose own record disagrees with its part of the reference `partner`, and how that
/// was decided.
pub(crate) fn attribute(
    origin: &Origin<'_>,
    runs: &[Run],
    partner: &RunRecord,
    other: &Run,
    tol: &Tolerance,
) -> (Vec<u32>, String) {
    let load = |run: &Run, r: &RunRecord| {
        run.values_path(r)
            .and_then(|p| values::load(&p, &r.record.shape).ok())
    };
    // `scale`: the RMS of the whole reference record, as the diff of the reassembled run uses.
    let agrees_values = |a: &[f64], b: &[f64], scale: f64| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(&x, &y)| {
                (x.is_nan() && y.is_nan())
                    || x == y
                    || (x.is_finite() && y.is_finite() && tol.passes(x, y, scale))
            })
    };
    let agrees_stats = |a: &TraceRecord, rms_b: Option<f64>, sb: Option<&Stats>| {
        let bound = tol.stats_bound(rms_b.unwrap_or(0.0));
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= bound,
            (None, None) => true,
            _ => false,
        };
        close(a.rms, rms_b)
            && match (&a.stats, sb) {
                (Some(sa), Some(sb)) => {
                    close(sa.mean, sb.mean)
                        && close(sa.std, sb.std)
                        && sa.nan_count == sb.nan_count
                        && sa.inf_count == sb.inf_count
                }
                _ => true,
            }
    };
    let all: Vec<u32> = (0..origin.parts.len() as u32).collect();
    match origin.split {
        ShardSplit::Replicated => {
            let b_values = load(other, partner);
            let ranks = origin
                .parts
                .iter()
                .enumerate()
                .filter(|(r, p)| {
                    if p.record.blake3.eq_ignore_ascii_case(&partner.record.blake3) {
                        return false;
                    }
                    match (load(&runs[*r], p), &b_values) {
                        (Some(a), Some(b)) => !agrees_values(&a, b, finite_rms(b)),
                        _ => !agrees_stats(
                            &p.record,
                            partner.record.rms,
                            partner.record.stats.as_ref(),
                        ),
                    }
                })
                .map(|(r, _)| r as u32)
                .collect();
            (
                ranks,
                "replicated: each rank's whole tensor compared with the reference".into(),
            )
        }
        ShardSplit::Sum => (
            all,
            "partial sums: every rank contributes to the sum, so no single rank can be blamed \
             from this record; look at the ranks' records before it"
                .into(),
        ),
        ShardSplit::Concat { axis } => {
            let shapes: Vec<&[usize]> = origin
                .parts
                .iter()
                .map(|p| p.record.shape.as_slice())
                .collect();
            let Some((ax, shape)) = concat_shape(&shapes, axis) else {
                return (
                    Vec::new(),
                    "the shards' shapes cannot be concatenated".into(),
                );
            };
            let Some(whole) =
                load(other, partner).filter(|w| w.len() == shape.iter().product::<usize>())
            else {
                return (
                    Vec::new(),
                    "unknown: the reference has no values of this record to cut into the ranks' \
                     parts (record values with TENSOR_TRACE_VALUES)"
                        .into(),
                );
            };
            let sizes: Vec<usize> = shapes.iter().map(|s| s[ax]).collect();
            let scale = finite_rms(&whole);
            let ranks = origin
                .parts
                .iter()
                .enumerate()
                .filter(|(r, p)| {
                    let part = slice_of(&whole, &shape, ax, &sizes, *r);
                    match load(&runs[*r], p) {
                        Some(a) => !agrees_values(&a, &part, scale),
                        None => {
                            let f32s: Vec<f32> = part.iter().map(|&x| x as f32).collect();
                            let fp = fingerprint(Data::F32(&f32s));
                            !agrees_stats(&p.record, fp.rms, Some(&fp.stats))
                        }
                    }
                })
                .map(|(r, _)| r as u32)
                .collect();
            (
                ranks,
                format!(
                    "concatenated along axis {axis}: each rank's shard compared with its slice of \
                     the reference"
                ),
            )
        }
    }
}
