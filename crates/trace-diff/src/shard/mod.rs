//! Multi-rank runs: comparing a tensor-parallel run with a reference (see `docs/FORMAT-diff.md`,
//! "Multi-rank runs").
//!
//! A directory holding `rank-{r}` subdirectories (trace-core's [`trace_core::ranks`]) is a
//! multi-rank run. A [`crate::Comparison`] of run directories detects it on either side:
//!
//! - **Both sides multi-rank, equal world sizes**: rank `r` is compared with rank `r`, each with
//!   the ordinary diff. The report returned is the one of the rank whose first divergence comes
//!   earliest (rank 0's when all agree); [`RanksReport::per_rank`] has every rank's outcome and
//!   [`RanksReport::first_divergence_ranks`] the ranks diverging first at that same record.
//! - **One side multi-rank, the other a single-process run**: the ranks are first turned into
//!   one logical run, in memory, record by record in rank 0's order, by the `[[shard]]` rules
//!   ([`crate::ShardSplit`]), and that run is diffed with the other side as usual. Then, for the first
//!   divergence, each rank's own record is compared with its part of the reference to name the
//!   rank(s) whose shard disagrees.
//!
//! # Reassembly
//!
//! | split | with values on every rank | statistics only |
//! |---|---|---|
//! | `axis = k` | concatenated along `k`; hash, rms, stats computed as at capture | count, mean, std (via M2), rms, min, max, NaN/Inf counts merged exactly; **hash unknown** |
//! | `reduce = "sum"` | element-wise sum (f64, rank order, rounded to F32 once) | nothing but the mean is determined: the record is left out, with a warning |
//! | `replicated` | the rank agreeing least with the reference is kept (rank 0 when all ranks are bit-identical) | same |
//!
//! A record whose hash cannot be known gets a placeholder hash ([`UNKNOWN_HASH`]) that blake3
//! does not produce, so it is judged on its merged statistics, and the pair's reason says so.
//! Merged statistics equal those of the whole tensor up to float reassociation: the property
//! test in `merge` bounds the difference by `1e-9` relative (f64 sums of F32 values, up to
//! 4 shards of up to 2 000 elements).

mod attribute;
mod merge;

use std::collections::HashMap;
use std::path::Path;

use trace_core::ranks::RankedRun;
use trace_core::run::{Run, RunOptions, RunOrder};

use self::attribute::attribute;
use self::merge::Reassembler;
pub use self::merge::{merge_concat_stats, UNKNOWN_HASH};
use crate::diff::{diff_sides, read_and_diff, Side};
use crate::error::{Error, Result};
use crate::options::DiffOptions;
use crate::report::{Outcome, Pair, Report};
pub use crate::report::{RankOutcome, RanksReport};
use crate::rules::Tolerance;

/// Both sides multi-rank: rank `r` of A compared with rank `r` of B.
pub(crate) fn rank_by_rank(a: &RankedRun, b: &RankedRun, options: &DiffOptions) -> Result<Report> {
    if a.world_size != b.world_size {
        return Err(Error::Ranks {
            path: b.dir.clone(),
            problem: format!(
                "a world of {} ranks, but {} has {}: runs of different world sizes compare \
                 only through a single-process reference (reassemble one side with [[shard]] \
                 rules)",
                b.world_size,
                a.dir.display(),
                a.world_size
            ),
        });
    }
    let mut reports = Vec::with_capacity(a.ranks.len());
    for (da, db) in a.ranks.iter().zip(&b.ranks) {
        reports.push(read_and_diff(da, db, None, options)?);
    }
    let per_rank: Vec<RankOutcome> = reports
        .iter()
        .enumerate()
        .map(|(r, rep)| RankOutcome {
            rank: r as u32,
            outcome: rep.outcome,
            first_divergence: rep
                .first_divergence
                .as_ref()
                .map(|f| (f.name.clone(), f.pair)),
        })
        .collect();
    let earliest = per_rank
        .iter()
        .filter_map(|p| p.first_divergence.as_ref().map(|(_, pos)| *pos))
        .min();
    let first_divergence_ranks: Vec<u32> = per_rank
        .iter()
        .filter(|p| earliest.is_some() && p.first_divergence.as_ref().map(|f| f.1) == earliest)
        .map(|p| p.rank)
        .collect();
    let worst = reports
        .iter()
        .enumerate()
        .max_by_key(|(r, rep)| {
            let severity = match rep.outcome {
                Outcome::Diverged => 2,
                Outcome::Incomplete => 1,
                Outcome::Agree => 0,
            };
            let first = first_divergence_ranks.first() == Some(&(*r as u32));
            (severity, first, std::cmp::Reverse(*r))
        })
        .map(|(r, _)| r)
        .expect("a world has at least one rank");
    let mut report = reports.swap_remove(worst);
    report.ranks = Some(RanksReport {
        mode: "rank-by-rank",
        world_size_a: Some(a.world_size),
        world_size_b: Some(b.world_size),
        attribution: earliest.map(|_| {
            "each rank compared with the same rank of B; the ranks whose first divergence comes \
             earliest"
                .to_owned()
        }),
        per_rank,
        first_divergence_ranks,
        ..RanksReport::empty("rank-by-rank")
    });
    Ok(report)
}

impl RanksReport {
    fn empty(mode: &'static str) -> Self {
        RanksReport {
            mode,
            world_size_a: None,
            world_size_b: None,
            per_rank: Vec::new(),
            first_divergence_ranks: Vec::new(),
            attribution: None,
            reassembled_values: 0,
            merged_stats: 0,
            summed: 0,
            replicated: 0,
            not_mergeable: 0,
        }
    }
}

/// One side multi-rank (`ranked`), the other (`single`) a single-process run: the ranks are
/// reassembled into one logical run and diffed with `single`; then the rank(s) at the first
/// divergence are named. `is_a`: the multi-rank run is side A.
pub(crate) fn reassembled(
    ranked: &RankedRun,
    single: &Path,
    is_a: bool,
    options: &DiffOptions,
) -> Result<Report> {
    let run_options = RunOptions {
        strict: options.strict,
    };
    let runs: Vec<Run> = ranked
        .ranks
        .iter()
        .map(|d| Run::open_with(d, &run_options))
        .collect::<std::result::Result<_, _>>()?;
    let other = Run::open_with(single, &run_options)?;
    let mut summary = RanksReport::empty("reassembled");
    let mut warnings = Vec::new();
    let reassembler = Reassembler {
        runs: &runs,
        other: &other,
        is_a,
        options,
    };
    let logical = reassembler.reassemble(&mut summary, &mut warnings)?;
    // A run read back from a written copy: in order, without problems.
    let logical_side = Side {
        dir: &ranked.dir,
        order: RunOrder::Manifest,
        records: &logical.records,
        problems: &[],
        values: &logical,
    };
    let other_side = Side::of(&other);
    let mut report = if is_a {
        diff_sides(&logical_side, &other_side, None, options)?
    } else {
        diff_sides(&other_side, &logical_side, None, options)?
    };
    let ws = Some(ranked.world_size);
    (summary.world_size_a, summary.world_size_b) = if is_a { (ws, None) } else { (None, ws) };
    let by_key: HashMap<(&str, u64), usize> = logical
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key(), i))
        .collect();
    let origin_of = |pair: &Pair| {
        let name = if is_a { &pair.name_a } else { &pair.name_b };
        let i = by_key.get(&(name.as_deref()?, pair.occurrence))?;
        Some(&logical.origins[*i])
    };
    for pair in &mut report.pairs {
        if pair.only_in.is_none() && origin_of(pair).is_some_and(|o| o.hash_unknown) {
            let note = "merged from the ranks' statistics: the hash of a sharded record cannot be \
                        merged, judged on the merged statistics";
            pair.reason = Some(match pair.reason.take() {
                Some(r) => format!("{r}; {note}"),
                None => note.to_owned(),
            });
        }
    }
    if let Some(first) = report.first_divergence_pair() {
        let partner = if is_a { &first.name_b } else { &first.name_a };
        let partner = partner.as_deref().and_then(|n| {
            other
                .records()
                .iter()
                .find(|r| r.record.name == n && r.occurrence == first.occurrence)
        });
        let tolerance = first
            .tolerance
            .as_ref()
            .map_or(Tolerance::new(1e-5, 1e-4), |t| t.tolerance());
        let (ranks, how) = match (origin_of(first), partner) {
            (Some(origin), Some(partner)) => {
                let (ranks, how) = attribute(origin, &runs, partner, &other, &tolerance);
                (ranks, how)
            }
            _ => (
                Vec::new(),
                "the first divergence has no record on every rank or no partner".to_owned(),
            ),
        };
        summary.first_divergence_ranks = ranks;
        summary.attribution = Some(how);
    }
    report.warnings.extend(warnings);
    report.ranks = Some(summary);
    Ok(report)
}

/// Whether `dir` is a multi-rank run (holds `rank-{r}` directories).
pub fn is_multi_rank(dir: &Path) -> bool {
    RankedRun::looks_ranked(dir)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use trace_core::{Context, TensorView, Tracer};

    use super::*;
    use crate::{Comparison, Verdict};

    fn diff_paths(a: &Path, b: &Path, options: &DiffOptions) -> Result<Report> {
        Comparison::new(a, b).options(options).run()
    }

    /// A 2-rank run of `q = x W` (column-parallel, traced per rank as `q`, values kept) and an
    /// `out` record that is replicated, against a single-process reference.
    fn write_runs(dir: &Path, bad_rank: Option<u32>, values: bool) -> (PathBuf, PathBuf) {
        let (a, b) = (dir.join("tp"), dir.join("ref"));
        let q: Vec<f32> = (0..8).map(|i| i as f32 * 0.5 - 1.0).collect(); // shape [2, 4]
        let out = [1.0f32, 2.0, 3.0];
        let cx = Context::default();
        let build =
            |t: trace_core::TracerBuilder| if values { t.values("*") } else { t }.build().unwrap();
        let reference = build(Tracer::builder().dir(&b));
        reference
            .record("q", &cx, TensorView::new(&[2, 4], &q[..]).unwrap())
            .unwrap();
        reference
            .record("out", &cx, TensorView::new(&[3], &out[..]).unwrap())
            .unwrap();
        for rank in 0..2u32 {
            let t = build(Tracer::builder().dir(&a).rank(rank).world_size(2));
            // Rank r holds columns 2r..2r+2 of each row.
            let mut shard: Vec<f32> = (0..2)
                .flat_map(|row| {
                    q[row * 4 + 2 * rank as usize..row * 4 + 2 * rank as usize + 2].to_vec()
                })
                .collect();
            if bad_rank == Some(rank) {
                shard[1] += 0.25;
            }
            t.record("q", &cx, TensorView::new(&[2, 2], &shard[..]).unwrap())
                .unwrap();
            let mut o = out;
            if bad_rank == Some(rank) {
                o[0] += 1.0;
            }
            t.record("out", &cx, TensorView::new(&[3], &o[..]).unwrap())
                .unwrap();
        }
        (a, b)
    }

    fn options() -> DiffOptions {
        DiffOptions {
            rules: crate::Rules::from_toml(
                "[[shard]]\nnames = \"q\"\naxis = -1\n",
                Path::new("r.toml"),
            )
            .unwrap(),
            ..DiffOptions::default()
        }
    }

    #[test]
    fn clean_sharded_run_reassembles_to_the_reference() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = write_runs(tmp.path(), None, true);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Agree, "{:?}", report.warnings);
        assert!(report.pairs.iter().all(|p| p.verdict == Verdict::Identical));
        let ranks = report.ranks.unwrap();
        assert_eq!(
            (ranks.mode, ranks.world_size_a, ranks.world_size_b),
            ("reassembled", Some(2), None)
        );
        assert_eq!((ranks.reassembled_values, ranks.replicated), (1, 1));
        assert_eq!(report.a.dir, a.display().to_string());
    }

    #[test]
    fn wrong_shard_is_found_and_its_rank_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = write_runs(tmp.path(), Some(1), true);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Diverged);
        assert_eq!(report.first_divergence.as_ref().unwrap().name, "q");
        let ranks = report.ranks.unwrap();
        assert_eq!(ranks.first_divergence_ranks, vec![1]);
        assert!(ranks.attribution.unwrap().contains("axis -1"));
    }

    #[test]
    fn stats_only_shards_merge_and_are_judged_on_stats() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = write_runs(tmp.path(), None, false);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Agree, "{:?}", report.pairs);
        let q = &report.pairs[0];
        assert_eq!(q.verdict, Verdict::WithinTolerance);
        assert!(q
            .reason
            .as_deref()
            .unwrap()
            .contains("hash of a sharded record cannot be merged"));
        assert_eq!(report.ranks.unwrap().merged_stats, 1);

        let (a, b) = write_runs(&tmp.path().join("bad"), Some(0), false);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Diverged);
        assert_eq!(report.first_divergence.as_ref().unwrap().name, "q");
        // The reference has no values to cut into the ranks' parts.
        let ranks = report.ranks.unwrap();
        assert!(ranks.first_divergence_ranks.is_empty());
        assert!(ranks.attribution.unwrap().starts_with("unknown"));
    }

    #[test]
    fn equal_world_sizes_compare_rank_by_rank() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, _) = write_runs(&tmp.path().join("x"), None, true);
        let (b, _) = write_runs(&tmp.path().join("y"), Some(1), true);
        let report = diff_paths(&a, &b, &DiffOptions::default()).unwrap();
        assert_eq!(report.outcome, Outcome::Diverged);
        let ranks = report.ranks.as_ref().unwrap();
        assert_eq!(ranks.mode, "rank-by-rank");
        assert_eq!(ranks.first_divergence_ranks, vec![1]);
        assert_eq!(ranks.per_rank[0].outcome, Outcome::Agree);
        assert_eq!(
            ranks.per_rank[1].first_divergence,
            Some(("q".to_owned(), 0))
        );
        assert!(report.a.dir.ends_with("rank-1"));
    }

    #[test]
    fn unequal_world_sizes_are_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, _) = write_runs(tmp.path(), None, true);
        let b = tmp.path().join("one");
        for r in 0..3 {
            let t = Tracer::builder()
                .dir(&b)
                .rank(r)
                .world_size(3)
                .build()
                .unwrap();
            t.record(
                "q",
                &Context::default(),
                TensorView::new(&[1], &[1.0f32][..]).unwrap(),
            )
            .unwrap();
        }
        let e = diff_paths(&a, &b, &DiffOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a world of 3 ranks, but") && e.contains("has 2"),
            "{e}"
        );
    }

    #[test]
    fn partial_sums_need_values() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("tp"), tmp.path().join("ref"));
        let cx = Context::default();
        Tracer::builder()
            .dir(&b)
            .values("*")
            .build()
            .unwrap()
            .record("o", &cx, TensorView::new(&[2], &[3.0f32, 5.0][..]).unwrap())
            .unwrap();
        for (rank, part) in [(0u32, [1.0f32, 2.0]), (1, [2.0, 3.0])] {
            for (dir, values) in [(&a, true), (&tmp.path().join("nv"), false)] {
                let t = Tracer::builder().dir(dir).rank(rank).world_size(2);
                let t = if values { t.values("*") } else { t };
                t.build()
                    .unwrap()
                    .record("o", &cx, TensorView::new(&[2], &part[..]).unwrap())
                    .unwrap();
            }
        }
        let opts = DiffOptions {
            rules: crate::Rules::from_toml(
                "[[shard]]\nnames = \"o\"\nreduce = \"sum\"\n",
                Path::new("r.toml"),
            )
            .unwrap(),
            ..DiffOptions::default()
        };
        let report = diff_paths(&a, &b, &opts).unwrap();
        assert_eq!(report.outcome, Outcome::Agree);
        assert_eq!(report.pairs[0].verdict, Verdict::Identical);
        let report = diff_paths(&tmp.path().join("nv"), &b, &opts).unwrap();
        assert_eq!(report.outcome, Outcome::Incomplete);
        assert_eq!(report.ranks.as_ref().unwrap().not_mergeable, 1);
        assert!(report
            .warnings
            .iter()
            .any(|w| w.message.contains("the sum of the shard means, 4e0")));
    }
}
