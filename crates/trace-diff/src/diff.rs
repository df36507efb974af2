//! The in-memory diff: both runs read whole, records matched by `(name, occurrence)` anywhere
//! in B, each pair judged (`pair`) and the report assembled (`outcome`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use trace_core::record::RecordError;
use trace_core::run::{Run, RunOptions, RunOrder, RunRecord};

use crate::baseline::Rec;
use crate::error::Result;
use crate::intern::Interner;
use crate::options::DiffOptions;
use crate::outcome::{run_warnings, Ending, LayerProfile, Tally};
use crate::pair::compare_pair;
use crate::report::{
    CalibrationStatus, CalibrationSummary, Ignored, Pair, Report, RunInfo, Verdict, Warning,
};
use crate::values::ValueSource;

/// One run as the in-memory diff reads it: its records in capture order and where their values
/// come from (a run directory, or a multi-rank run reassembled in memory).
pub(crate) struct Side<'r> {
    /// The directory to show in the report.
    pub(crate) dir: &'r Path,
    pub(crate) order: RunOrder,
    pub(crate) records: &'r [RunRecord],
    pub(crate) problems: &'r [RecordError],
    pub(crate) values: &'r dyn ValueSource,
}

impl<'r> Side<'r> {
    /// A run read from its directory.
    pub(crate) fn of(run: &'r Run) -> Self {
        Side {
            dir: run.dir(),
            order: run.order(),
            records: run.records(),
            problems: run.problems(),
            values: run,
        }
    }

    fn rec(&self, i: usize) -> Rec<'r> {
        Rec {
            source: self.values,
            r: &self.records[i],
        }
    }

    fn info(&self, ignored: u64) -> RunInfo {
        RunInfo {
            dir: self.dir.display().to_string(),
            order: self.order.name(),
            execution_order_known: self.order.is_execution_order(),
            records: self.records.len() as u64,
            ignored,
        }
    }
}

/// The records of one side that are not ignored, by key, and which of them have been matched.
/// Ignored records start out matched, so the pass over the unmatched ones skips them without
/// matching the ignore globs a second time.
struct Index<'r> {
    /// Keyed by B's names (a baseline with a view of its own is renamed into them).
    by_key: HashMap<(Cow<'r, str>, u64), usize>,
    used: Vec<bool>,
    /// The ignored records, in the side's order.
    ignored: Vec<usize>,
}

impl<'r> Index<'r> {
    /// Indexes B's `records` by key, leaving out those B's ignore list names.
    fn of_b(records: &'r [RunRecord], options: &DiffOptions) -> Self {
        Self::new(records, |name| {
            (!options.rules.ignores_b(name)).then_some(Cow::Borrowed(name))
        })
    }

    /// Indexes the baseline's `records` by B's names: its own when it is seen through B's
    /// view, mapped from its view's otherwise; leaving out those its ignore list names.
    fn of_baseline(records: &'r [RunRecord], options: &DiffOptions) -> Self {
        Self::new(records, |name| {
            if options.rules.ignore_rule_c(name).is_some() {
                return None;
            }
            Some(
                options
                    .rules
                    .baseline_name(name)
                    .unwrap_or(Cow::Borrowed(name)),
            )
        })
    }

    /// `key_of` gives a record's name to match by, `None` for an ignored record.
    fn new(records: &'r [RunRecord], key_of: impl Fn(&'r str) -> Option<Cow<'r, str>>) -> Self {
        let mut index = Index {
            by_key: HashMap::with_capacity(records.len()),
            used: vec![false; records.len()],
            ignored: Vec::new(),
        };
        for (i, r) in records.iter().enumerate() {
            match key_of(&r.record.name) {
                Some(name) => {
                    index.by_key.insert((name, r.occurrence), i);
                }
                None => {
                    index.ignored.push(i);
                    index.used[i] = true;
                }
            }
        }
        index
    }

    /// The record of `key`, marked as matched; `.1` is whether it was matched before.
    fn take(&mut self, (name, occurrence): (&str, u64)) -> Option<(usize, bool)> {
        let &i = self.by_key.get(&(Cow::Borrowed(name), occurrence))?;
        Some((i, std::mem::replace(&mut self.used[i], true)))
    }
}

/// Reads the run directories `a`, `b` and the `baseline` whole and compares them.
pub(crate) fn read_and_diff(
    a: &Path,
    b: &Path,
    baseline: Option<&Path>,
    options: &DiffOptions,
) -> Result<Report> {
    let run_options = RunOptions {
        strict: options.strict,
    };
    let run_a = Run::open_with(a, &run_options)?;
    let run_b = Run::open_with(b, &run_options)?;
    let run_c = baseline
        .map(|c| Run::open_with(c, &run_options))
        .transpose()?;
    let side_c = run_c.as_ref().map(Side::of);
    diff_sides(
        &Side::of(&run_a),
        &Side::of(&run_b),
        side_c.as_ref(),
        options,
    )
}

/// Compares the sides `a` (under test) and `b` (reference), each pair judged against the
/// `baseline` C when there is one. Findings go into the report; `Err` only for problems that
/// strict mode makes fatal.
pub(crate) fn diff_sides(
    a: &Side<'_>,
    b: &Side<'_>,
    baseline: Option<&Side<'_>>,
    options: &DiffOptions,
) -> Result<Report> {
    let rules = &options.rules;
    let mut warnings = Vec::new();
    for (side, s) in [("a", a), ("b", b)]
        .into_iter()
        .chain(baseline.map(|c| ("c", c)))
    {
        run_warnings(side, s.problems, s.order, s.dir, &mut warnings);
    }
    let mut b_index = Index::of_b(b.records, options);
    let mut c_index = baseline.map(|c| Index::of_baseline(c.records, options));

    let mut pairs = Vec::with_capacity(a.records.len());
    let mut texts = Interner::sharing();
    let mut tally = Tally::new(LayerProfile::default());
    let mut ignored = Ignored::default();
    for (i, ra) in a.records.iter().enumerate() {
        let position = pairs.len() as u64;
        if let Some(rule) = rules.ignore_rule_a(&ra.record.name) {
            ignored.push("a", position, ra, rule, usize::MAX);
            continue;
        }
        let mapped = rules.map_name(&ra.record.name);
        let Some((j, again)) = b_index.take((mapped.as_ref(), ra.occurrence)) else {
            let reason = format!("no record {:?} (occurrence {}) in B", mapped, ra.occurrence);
            let pair = Pair::unmatched_in(&mut texts, position, "a", ra, Some(reason));
            tally.push(&pair);
            pairs.push(pair);
            continue;
        };
        if again {
            warnings.push(Warning {
                side: None,
                message: format!(
                    "record {:?} of B is matched by more than one record of A (name mapping collapses names?)",
                    b.records[j].record.name
                ),
            });
        }
        let base = baseline
            .zip(c_index.as_mut())
            .map(|(c, index)| index.take(b.records[j].key()).map(|(k, _)| c.rec(k)));
        let pair = compare_pair(
            position,
            a.rec(i),
            b.rec(j),
            base,
            options,
            &mut texts,
            &mut warnings,
        )?;
        tally.push(&pair);
        pairs.push(pair);
    }
    let ignored_a = ignored.records.len() as u64;
    for &j in &b_index.ignored {
        let rb = &b.records[j];
        let rule = rules.ignore_rule_b(&rb.record.name).unwrap_or_default();
        ignored.push("b", j as u64, rb, rule, usize::MAX);
    }
    let a_pairs = pairs.len();
    // Exactly the room needed: a pushed pair beyond the capacity would double it.
    pairs.reserve_exact(b_index.used.iter().filter(|&&used| !used).count());
    for (j, rb) in b.records.iter().enumerate() {
        if !b_index.used[j] {
            tally.only_in_b();
            pairs.push(Pair::unmatched_in(&mut texts, j as u64, "b", rb, None));
        }
    }
    let calibration = baseline.zip(c_index).map(|(c, index)| {
        let unused: Vec<&RunRecord> = c
            .records
            .iter()
            .zip(&index.used)
            .filter(|(_, &used)| !used)
            .map(|(r, _)| r)
            .collect();
        calibration_summary(
            c,
            index.ignored.len() as u64,
            &pairs[..a_pairs],
            &unused,
            options,
            &mut warnings,
        )
    });
    let end = Ending {
        a: a.info(ignored_a),
        b: b.info(b_index.ignored.len() as u64),
        pairs,
        warnings,
        calibration,
        streamed: None,
        ignored,
    };
    Ok(tally.finish(end, options))
}

/// The report's calibration section, with a warning for each kind of pair the baseline could
/// not judge and for baseline records left over.
fn calibration_summary(
    c: &Side<'_>,
    ignored: u64,
    pairs: &[Pair],
    unused: &[&RunRecord],
    options: &DiffOptions,
    warnings: &mut Vec<Warning>,
) -> CalibrationSummary {
    let with = |status: CalibrationStatus| -> Vec<&Pair> {
        pairs
            .iter()
            .filter(|p| {
                p.calibration
                    .as_ref()
                    .is_some_and(|cal| cal.status == status)
            })
            .collect()
    };
    let calibrated = with(CalibrationStatus::Calibrated);
    for (status, what) in [
        (CalibrationStatus::Missing, "have no record in the baseline"),
        (
            CalibrationStatus::Unusable,
            "have a baseline record whose error cannot be measured",
        ),
    ] {
        let list = with(status);
        if let Some(first) = list.first() {
            warnings.push(Warning {
                side: Some("c"),
                message: format!(
                    "{} matched records {what} (first: #{} {:?}, occurrence {}): judged by tolerance, not calibrated",
                    list.len(),
                    first.position,
                    first.name_b.as_deref().unwrap_or_default(),
                    first.occurrence
                ),
            });
        }
    }
    if let Some(first) = unused.first() {
        warnings.push(Warning {
            side: Some("c"),
            message: format!(
                "{} baseline records match no record of B (first: {:?}, occurrence {}, in {})",
                unused.len(),
                first.record.name,
                first.occurrence,
                c.dir.display()
            ),
        });
    }
    // The ratio distribution over the pairs that are not identical: identical pairs have ratio
    // 0 and would only say how often the engine reproduces the reference bit for bit.
    let mut ratios: Vec<(f64, u64)> = calibrated
        .iter()
        .filter(|p| p.verdict != Verdict::Identical)
        .filter_map(|p| Some((p.calibration.as_ref()?.ratio?, p.position)))
        .collect();
    ratios.sort_by(|x, y| x.0.total_cmp(&y.0));
    let median = match ratios.len() {
        0 => None,
        n if n % 2 == 1 => Some(ratios[n / 2].0),
        n => Some((ratios[n / 2 - 1].0 + ratios[n / 2].0) / 2.0),
    };
    CalibrationSummary {
        baseline: c.info(ignored),
        max_ratio: options.max_ratio,
        calibrated: calibrated.len() as u64,
        diverged: calibrated
            .iter()
            .filter(|p| p.verdict.is_divergence())
            .count() as u64,
        missing: with(CalibrationStatus::Missing).len() as u64,
        unusable: with(CalibrationStatus::Unusable).len() as u64,
        unused_baseline_records: unused.len() as u64,
        ratio_median: median,
        ratio_max: ratios.last().map(|r| r.0),
        ratio_max_pair: ratios.last().map(|r| r.1),
    }
}
