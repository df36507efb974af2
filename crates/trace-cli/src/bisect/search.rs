//! The bounded search of bisect's values passes: which records get values in the next pass,
//! what a pass's verdicts on them teach, and what the passes may write.
//!
//! Positions are indices into the *matched* records of pass 1 in A's order (the only records
//! both sides can measure on values). The search keeps an interval `(lo, hi]`: `lo` agrees on
//! values (`None`: before the first record), `hi` diverges. A pass measures `lo`, up to
//! [`SEARCH_PROBES`] evenly spaced records strictly between, and `hi`, plus every record the
//! search has *cleared* (flagged by pass 1's statistics or sketches, but agreeing on values), so
//! the pass's diff does not flag them again. Its verdicts narrow the interval:
//!
//! - the first measured record that diverges, `d`, and the measured one before it, `l`, give
//!   `(l, d]`; when `d = l + 1` (or `d` is the first record) both were measured in the same
//!   pass and `d` is the first divergence;
//! - `lo` itself diverging (it was only assumed to agree: pass 2's window start) means the
//!   divergence lies further back: `(None, lo]`;
//! - nothing measured diverging means `hi` was a false alarm of the cheap tier: it is cleared,
//!   and the next divergence the pass's diff names (on statistics or sketches) becomes `hi`.
//!
//! The first values pass is pass 2 of the bisection: `lo` is the `window`-th record before pass
//! 1's first divergence `hi` and every record between is measured. Each later pass divides the
//! interval by `SEARCH_PROBES + 1`, so a divergence the statistics saw `n` records late costs
//! about `log4(n)` passes of at most `SEARCH_PROBES + 2` records (and the cleared ones) per side.
//!
//! `Budget` bounds the bytes: a pass after pass 2 runs only when the values passes together
//! (pass 2 included) stay within what one full-values capture of every side writes (estimated
//! from pass 1 before each pass, as a lower bound of the capture and an upper bound of the
//! pass), and [`MAX_VALUE_PASSES`] bounds their number. When either stops the search, the
//! interval found so far is the answer. Pass 2 itself always runs: it saves a few records'
//! values, though on tiny tensors its record files alone may outweigh all the values.

use serde::Serialize;
use trace_diff::Pair;

/// Records measured strictly inside the interval by each search pass after pass 2.
pub const SEARCH_PROBES: usize = 3;

/// The most values passes (pass 2 and the search passes after it) a bisection runs.
pub const MAX_VALUE_PASSES: u32 = 10;

/// How the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchEnd {
    /// A record diverges on values and the record before it agrees, both measured in the last
    /// pass (or it is the first record): the first divergence.
    Found,
    /// Every record the cheap tier flagged agreed on values, and the last diff flags no other.
    Agreed,
    /// The next pass would have written more than the byte budget allows.
    Budget,
    /// [`MAX_VALUE_PASSES`] values passes ran.
    PassLimit,
}

impl SearchEnd {
    /// The snake_case name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            SearchEnd::Found => "found",
            SearchEnd::Agreed => "agreed",
            SearchEnd::Budget => "budget",
            SearchEnd::PassLimit => "pass_limit",
        }
    }
}

/// The state of the search over matched positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Search {
    /// The last record known (or, before pass 2, assumed) to agree on values.
    pub lo: Option<usize>,
    /// The record believed to be the first divergence.
    pub hi: usize,
    /// Records inside the interval the next pass measures.
    inside: usize,
    /// Records the cheap tier flagged that agreed on values.
    cleared: Vec<usize>,
}

impl Search {
    /// Pass 2's search: pass 1's first divergence `first` and the `window` records before it.
    pub fn new(first: usize, window: usize) -> Self {
        Self {
            lo: first.checked_sub(window.max(1)),
            hi: first,
            inside: window.saturating_sub(1),
            cleared: Vec::new(),
        }
    }

    /// The positions the next pass measures, ascending.
    pub fn probes(&self) -> Vec<usize> {
        let start = self.lo.map_or(0, |l| l + 1);
        let gap = self.hi - start;
        let mut probes: Vec<usize> = self.cleared.iter().copied().chain(self.lo).collect();
        if gap <= self.inside {
            probes.extend(start..self.hi);
        } else {
            let parts = self.inside + 1;
            probes.extend((1..parts).map(|j| start + j * gap / parts));
            // With `lo` unknown, the first record is worth measuring: it may be the answer.
            if self.lo.is_none() {
                probes.push(0);
            }
        }
        probes.push(self.hi);
        probes.sort_unstable();
        probes.dedup();
        probes
    }

    /// Learns from a pass: `diverged(q)` is the verdict on values of measured position `q`,
    /// `next` the first divergence the pass's diff names (a position, when matched). Returns
    /// how the search ended, or `None` when another pass is needed.
    pub fn step(
        &mut self,
        probes: &[usize],
        diverged: impl Fn(usize) -> bool,
        next: Option<usize>,
    ) -> Option<SearchEnd> {
        self.inside = SEARCH_PROBES;
        let from = self.lo.unwrap_or(0);
        let measured: Vec<usize> = probes
            .iter()
            .copied()
            .filter(|&q| q >= from && q <= self.hi)
            .collect();
        let Some(j) = measured.iter().position(|&q| diverged(q)) else {
            self.cleared.push(self.hi);
            return match next {
                Some(n) => {
                    // Past `hi`, as the diff flags records in order; were it before (a record
                    // unmeasured so far), the search would go back from it.
                    self.lo = (n > self.hi).then_some(self.hi);
                    self.hi = n;
                    None
                }
                None => Some(SearchEnd::Agreed),
            };
        };
        self.hi = measured[j];
        self.lo = if j == 0 { None } else { Some(measured[j - 1]) };
        (self.hi == self.lo.map_or(0, |l| l + 1)).then_some(SearchEnd::Found)
    }
}

/// What saving one record's values writes on sides A and B: the values (4 bytes per element,
/// F32), and the length of its record file's name (the `.npy` is named after it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecordSize {
    /// Value bytes on A and on B (0 where the side has no such record).
    pub values: [u64; 2],
    /// Record file name lengths on A and on B.
    pub name: [u64; 2],
}

impl RecordSize {
    /// The sizes of a pair of pass 1's report.
    pub fn of(pair: &Pair) -> Self {
        let values = |s: &Option<std::sync::Arc<[usize]>>| {
            s.as_ref()
                .map_or(0, |s| 4 * s.iter().product::<usize>() as u64)
        };
        let name = |f: &Option<std::sync::Arc<str>>| f.as_deref().map_or(0, str::len) as u64;
        Self {
            values: [values(&pair.shape[0]), values(&pair.shape[1])],
            name: [name(&pair.file[0]), name(&pair.file[1])],
        }
    }
}

/// Upper bound of what saving one record's values adds besides the values: the NPY header (a
/// multiple of 64 bytes, 128 for shapes of up to a few dimensions) and the record's `values`
/// field naming the file, besides twice the name.
const PER_FILE_OVERHEAD: u64 = 256;

/// The byte budget of the values passes, estimated from pass 1: the record files of every side
/// as pass 1 wrote them, plus each record's values.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// Pass 1's bytes per side (A, B, then C when a baseline ran: C records B's tensors).
    pass1: Vec<u64>,
    /// The estimated full-values capture of every side: a lower bound (NPY headers and the
    /// records' `values` field not counted).
    pub full_capture: u64,
}

impl Budget {
    /// The budget of a bisection whose pass 1 wrote `pass1` bytes per side and recorded `sizes`
    /// (every pair of its report).
    pub fn new(pass1: Vec<u64>, sizes: &[RecordSize]) -> Self {
        let full_capture = pass1.iter().sum::<u64>() + Self::values(&pass1, sizes, false);
        Self {
            pass1,
            full_capture,
        }
    }

    /// Bytes of the values of `sizes` on every side; with `files`, also each `.npy` file's
    /// overhead (an upper bound of a pass's; the full capture's lower bound leaves it out).
    fn values(pass1: &[u64], sizes: &[RecordSize], files: bool) -> u64 {
        let side = |i: usize| -> u64 {
            sizes
                .iter()
                .filter(|s| s.values[i] > 0 || s.name[i] > 0)
                .map(|s| match files {
                    true => s.values[i] + PER_FILE_OVERHEAD + 2 * s.name[i],
                    false => s.values[i],
                })
                .sum()
        };
        side(0) + (pass1.len() as u64 - 1) * side(1)
    }

    /// An upper bound of what a pass measuring `sizes` on every side writes.
    pub fn pass_cost(&self, sizes: &[RecordSize]) -> u64 {
        self.pass1.iter().sum::<u64>() + Self::values(&self.pass1, sizes, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a truth: `first` is the first position diverging on values,
    /// `flagged` what the cheap tier flags (ascending). Returns the probes of each pass and
    /// the end.
    fn check(
        first: usize,
        flagged: &[usize],
        window: usize,
        expected: (&[&[usize]], SearchEnd, usize),
    ) {
        let mut search = Search::new(flagged[0], window);
        let mut passes = Vec::new();
        let end = loop {
            let probes = search.probes();
            // The pass's diff: measured records on values, the others on the cheap tier.
            let next = (0..100).find(|&q| {
                if probes.contains(&q) {
                    q >= first
                } else {
                    flagged.contains(&q)
                }
            });
            passes.push(probes.clone());
            if let Some(end) = search.step(&probes, |q| q >= first, next) {
                break end;
            }
            assert!(passes.len() < 20, "{passes:?}");
        };
        let want: Vec<Vec<usize>> = expected.0.iter().map(|p| p.to_vec()).collect();
        assert_eq!((passes, end, search.hi), (want, expected.1, expected.2));
    }

    #[test]
    fn pass_2_confirms_what_pass_1_saw() {
        check(8, &[8], 1, (&[&[7, 8]], SearchEnd::Found, 8));
        check(8, &[8], 3, (&[&[5, 6, 7, 8]], SearchEnd::Found, 8));
        check(0, &[0], 1, (&[&[0]], SearchEnd::Found, 0));
    }

    #[test]
    fn a_late_flag_is_searched_back_in_quarters() {
        // Pass 1 flags 40; values diverge from 3 on.
        check(
            3,
            &[40],
            1,
            (
                &[
                    &[39, 40],
                    &[0, 9, 19, 29, 39],
                    &[0, 3, 5, 7, 9],
                    &[0, 1, 2, 3],
                ],
                SearchEnd::Found,
                3,
            ),
        );
        // Diverging from the first record: found when record 0 is measured.
        check(
            0,
            &[12],
            1,
            (&[&[11, 12], &[0, 2, 5, 8, 11]], SearchEnd::Found, 0),
        );
    }

    #[test]
    fn false_alarms_are_cleared_and_stay_measured() {
        // The cheap tier flags 5 and 9 falsely; values diverge from 14, which it flags too.
        check(
            14,
            &[5, 9, 14],
            1,
            (
                &[&[4, 5], &[5, 6, 7, 8, 9], &[5, 9, 11, 12, 13, 14]],
                SearchEnd::Found,
                14,
            ),
        );
        // Nothing diverges on values: the runs agree.
        check(99, &[5], 1, (&[&[4, 5]], SearchEnd::Agreed, 5));
    }

    #[test]
    fn the_budget_is_pass_1_plus_every_value_once() {
        let size = |values: [u64; 2], name: [u64; 2]| RecordSize { values, name };
        let sizes = [size([24, 24], [7, 7]), size([40, 0], [7, 0])];
        let budget = Budget::new(vec![100, 200], &sizes);
        assert_eq!(budget.full_capture, 300 + 64 + 24);
        let with_c = Budget::new(vec![100, 200, 200], &sizes);
        assert_eq!(with_c.full_capture, 500 + 64 + 2 * 24);
        let one = 24 + PER_FILE_OVERHEAD + 14;
        assert_eq!(with_c.pass_cost(&sizes[..1]), 500 + 3 * one);
        assert_eq!(
            budget.pass_cost(&sizes),
            300 + 2 * one + 40 + PER_FILE_OVERHEAD + 14
        );
    }
}
