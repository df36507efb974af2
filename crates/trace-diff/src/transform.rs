//! Layout transforms: how a `[[map]]` entry brings side B's values into side A's layout before
//! they are compared (`b_layout`, see docs/FORMAT.md), or how an engine view brings each side's
//! values into the canonical layout (`a_layout` and `b_layout`, [`crate::views`]).
//!
//! Two engines may compute the same tensor and store it differently: heads-major against
//! sequence-major, Q/K rows permuted for a RoPE convention, a KV axis padded past the tokens
//! that exist, all rows against the last one. A [`Layout`] is a list of [`Step`]s applied in
//! order to B's shape; [`Layout::plan`] turns it, for one pair of shapes, into a [`Plan`]: the
//! output shape and, for each output element in C order, the index of the B element it takes.
//! The same plan applies to the baseline's values (C computes in B's layout).
//!
//! Steps are shape operations only (numpy semantics): nothing is computed from the values, so a
//! transform can hide a difference only by dropping elements (`slice`, `crop`), and the report
//! says when it did.

use serde::{Deserialize, Serialize};

/// One step of a [`Layout`], written as a one-key inline table in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `{ rank = N }`: prepends axes of extent 1 up to rank `N` (engines that drop extents of 1,
    /// such as ggml for a one-token decode step); an error when the rank is already above `N`.
    Rank(usize),
    /// `{ squeeze = [..] }`: removes the listed axes, each of extent 1 (a batch axis of 1);
    /// axes are numbered before any is removed.
    Squeeze(Vec<usize>),
    /// `{ reshape = [..] }`: a new shape with the same element count; `0` keeps the extent of
    /// the axis at the same position, one `-1` takes what is left (ONNX `Reshape` semantics).
    Reshape(Vec<i64>),
    /// `{ transpose = [..] }`: output axis `i` is input axis `perm[i]` (numpy `transpose`).
    Transpose(Vec<usize>),
    /// `{ slice = { axis = K, start = S, end = E } }`: keeps `S..E` along axis `K`; negative
    /// bounds count from the end, a missing bound is the start or the end (Python slicing).
    Slice(SliceSpec),
    /// `{ crop = [axes] }`: keeps the first `n` elements along each listed axis, `n` being the
    /// other side's extent of that axis (a padded axis, e.g. llama.cpp's KV cache rounded up to
    /// 256 cells). The ranks must be equal; where this side's extent is already the smaller, the
    /// axis is kept whole (the other side crops, if it can).
    Crop(Vec<usize>),
}

impl Step {
    /// The step as a TOML inline table, as a view or rules file writes it.
    pub fn inline_toml(&self) -> String {
        match self {
            Step::Rank(n) => format!("{{ rank = {n} }}"),
            Step::Squeeze(a) => format!("{{ squeeze = {a:?} }}"),
            Step::Reshape(d) => format!("{{ reshape = {d:?} }}"),
            Step::Transpose(p) => format!("{{ transpose = {p:?} }}"),
            Step::Crop(a) => format!("{{ crop = {a:?} }}"),
            Step::Slice(s) => {
                let mut parts = vec![format!("axis = {}", s.axis)];
                parts.extend(s.start.map(|v| format!("start = {v}")));
                parts.extend(s.end.map(|v| format!("end = {v}")));
                format!("{{ slice = {{ {} }} }}", parts.join(", "))
            }
        }
    }
}

/// The bounds of a [`Step::Slice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceSpec {
    /// The axis.
    pub axis: usize,
    /// First index kept (negative: from the end); the axis' start when absent.
    pub start: Option<i64>,
    /// One past the last index kept (negative: from the end); the axis' end when absent.
    pub end: Option<i64>,
}

/// The steps of one `[[map]]` entry's `b_layout`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    steps: Vec<Step>,
}

/// A [`Layout`] for one pair of shapes: what B's elements become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The shape after every step.
    pub shape: Vec<usize>,
    /// For each output element in C order, the index of the input element it takes.
    source: Vec<usize>,
    /// The input's element count.
    input_len: usize,
}

impl Layout {
    /// Checks the steps that can be checked without a shape: a transpose is a permutation,
    /// a reshape has at most one `-1` and no other negative extent. The message names the step.
    pub fn new(steps: Vec<Step>) -> Result<Layout, String> {
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Transpose(perm) => {
                    let mut seen = vec![false; perm.len()];
                    for &p in perm {
                        if p >= perm.len() || std::mem::replace(&mut seen[p], true) {
                            return Err(format!(
                                "step {i}: transpose {perm:?} is not a permutation of 0..{}",
                                perm.len()
                            ));
                        }
                    }
                }
                Step::Reshape(dims) => {
                    if dims.iter().filter(|&&d| d == -1).count() > 1 || dims.iter().any(|&d| d < -1)
                    {
                        return Err(format!(
                            "step {i}: reshape {dims:?}: expected extents >= 0 and at most one -1"
                        ));
                    }
                }
                Step::Rank(0) => return Err(format!("step {i}: rank 0: expected at least 1")),
                Step::Squeeze(axes) => {
                    let mut sorted = axes.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    if sorted.len() != axes.len() {
                        return Err(format!("step {i}: squeeze {axes:?} repeats an axis"));
                    }
                }
                Step::Rank(_) | Step::Slice(_) | Step::Crop(_) => {}
            }
        }
        Ok(Layout { steps })
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether a step needs the other side's shape (`crop`).
    pub fn needs_other_shape(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Crop(_)))
    }

    /// The plan for this side's shape `b_shape` (the other side's shape `a_shape`, after its
    /// own layout, for `crop`); an error says which step does not fit the shape.
    pub fn plan(&self, b_shape: &[usize], a_shape: &[usize]) -> Result<Plan, String> {
        let input_len: usize = b_shape.iter().product();
        let mut shape = b_shape.to_vec();
        let mut source: Vec<usize> = (0..input_len).collect();
        for (i, step) in self.steps.iter().enumerate() {
            let fail = |what: String| format!("layout step {i} ({}): {what}", describe(step));
            match step {
                Step::Rank(n) => {
                    if shape.len() > *n {
                        return Err(fail(format!("the shape {shape:?} has more axes")));
                    }
                    let mut s = vec![1; n - shape.len()];
                    s.extend_from_slice(&shape);
                    shape = s;
                }
                Step::Squeeze(axes) => {
                    if let Some(&bad) = axes.iter().find(|&&k| shape.get(k) != Some(&1)) {
                        return Err(fail(format!(
                            "axis {bad} of {shape:?} is not an axis of extent 1"
                        )));
                    }
                    shape = (0..shape.len())
                        .filter(|k| !axes.contains(k))
                        .map(|k| shape[k])
                        .collect();
                }
                Step::Reshape(dims) => shape = reshape(&shape, dims).map_err(fail)?,
                Step::Transpose(perm) => {
                    if perm.len() != shape.len() {
                        return Err(fail(format!(
                            "the shape {shape:?} has {} axes",
                            shape.len()
                        )));
                    }
                    let (s, src) = gather(
                        &shape,
                        &source,
                        |out_idx, in_idx| {
                            for (k, &p) in perm.iter().enumerate() {
                                in_idx[p] = out_idx[k];
                            }
                        },
                        perm.iter().map(|&p| shape[p]).collect(),
                    );
                    shape = s;
                    source = src;
                }
                Step::Slice(spec) => {
                    let Some(&n) = shape.get(spec.axis) else {
                        return Err(fail(format!("no axis {} in {shape:?}", spec.axis)));
                    };
                    let bound = |b: i64| -> usize {
                        let n = n as i64;
                        (if b < 0 { n + b } else { b }).clamp(0, n) as usize
                    };
                    let start = spec.start.map_or(0, bound);
                    let end = spec.end.map_or(n, bound).max(start);
                    let mut out = shape.clone();
                    out[spec.axis] = end - start;
                    let axis = spec.axis;
                    let (s, src) = gather(
                        &shape,
                        &source,
                        |o, inp| {
                            inp.copy_from_slice(o);
                            inp[axis] += start;
                        },
                        out,
                    );
                    shape = s;
                    source = src;
                }
                Step::Crop(axes) => {
                    if a_shape.len() != shape.len() {
                        return Err(fail(format!(
                            "the other side's shape {a_shape:?} and this one {shape:?} differ \
                             in rank"
                        )));
                    }
                    let mut out = shape.clone();
                    for &axis in axes {
                        if axis >= shape.len() {
                            return Err(fail(format!("no axis {axis} in {shape:?}")));
                        }
                        out[axis] = a_shape[axis].min(shape[axis]);
                    }
                    let (s, src) = gather(&shape, &source, |o, inp| inp.copy_from_slice(o), out);
                    shape = s;
                    source = src;
                }
            }
        }
        Ok(Plan {
            shape,
            source,
            input_len,
        })
    }
}

impl Plan {
    /// The output's element count.
    pub fn len(&self) -> usize {
        self.source.len()
    }

    /// Whether the output is empty.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// Whether the output is the input in the same order (the steps only renamed axes).
    pub fn is_identity(&self) -> bool {
        self.source.len() == self.input_len && self.source.iter().enumerate().all(|(i, &s)| i == s)
    }

    /// Whether every input element is in the output exactly once (a pure change of layout, so
    /// order-free statistics such as the RMS are unchanged).
    pub fn keeps_every_element(&self) -> bool {
        self.source.len() == self.input_len
    }

    /// B's values (in B's layout, C order) in A's layout; `None` when `values` does not have the
    /// element count the plan was made for.
    pub fn apply(&self, values: &[f64]) -> Option<Vec<f64>> {
        (values.len() == self.input_len).then(|| self.source.iter().map(|&i| values[i]).collect())
    }
}

/// A step as written in TOML, for messages.
fn describe(step: &Step) -> String {
    match step {
        Step::Rank(n) => format!("rank = {n}"),
        Step::Squeeze(a) => format!("squeeze = {a:?}"),
        Step::Reshape(d) => format!("reshape = {d:?}"),
        Step::Transpose(p) => format!("transpose = {p:?}"),
        Step::Slice(s) => format!(
            "slice axis {} from {} to {}",
            s.axis,
            s.start.map_or("start".to_owned(), |v| v.to_string()),
            s.end.map_or("end".to_owned(), |v| v.to_string())
        ),
        Step::Crop(a) => format!("crop = {a:?}"),
    }
}

fn reshape(shape: &[usize], dims: &[i64]) -> Result<Vec<usize>, String> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(dims.len());
    let mut infer = None;
    for (k, &d) in dims.iter().enumerate() {
        match d {
            -1 => {
                infer = Some(k);
                out.push(1);
            }
            0 => out.push(*shape.get(k).ok_or_else(|| {
                format!("0 at position {k} but the shape {shape:?} has no axis {k}")
            })?),
            d => out.push(d as usize),
        }
    }
    let known: usize = out.iter().product();
    if let Some(k) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot infer -1: {total} elements over {known}"));
        }
        out[k] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!(
            "{shape:?} ({total} elements) cannot become {out:?}"
        ));
    }
    Ok(out)
}

/// The new source indices for output shape `out`: `map` sets the input multi-index of each
/// output multi-index.
fn gather(
    shape: &[usize],
    source: &[usize],
    map: impl Fn(&[usize], &mut [usize]),
    out: Vec<usize>,
) -> (Vec<usize>, Vec<usize>) {
    let n: usize = out.iter().product();
    let mut strides = vec![1usize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    let mut idx = vec![0usize; out.len()];
    let mut inp = vec![0usize; shape.len()];
    let mut result = Vec::with_capacity(n);
    for _ in 0..n {
        map(&idx, &mut inp);
        let flat: usize = inp.iter().zip(&strides).map(|(i, s)| i * s).sum();
        result.push(source[flat]);
        for k in (0..out.len()).rev() {
            idx[k] += 1;
            if idx[k] < out[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    (out, result)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn layout(toml_steps: &str) -> Layout {
        #[derive(Deserialize)]
        struct W {
            s: Vec<Step>,
        }
        let w: W = toml::from_str(&format!("s = {toml_steps}")).unwrap();
        Layout::new(w.s).unwrap()
    }

    fn iota(n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64).collect()
    }

    #[test]
    fn transpose_is_numpy_transpose() {
        // [2, 3] -> [3, 2]
        let p = layout("[{ transpose = [1, 0] }]")
            .plan(&[2, 3], &[3, 2])
            .unwrap();
        assert_eq!(p.shape, vec![3, 2]);
        assert_eq!(
            p.apply(&iota(6)).unwrap(),
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        assert!(p.keeps_every_element());
    }

    /// llama.cpp's `Qcur` after RoPE is `[T, H, D]` with each head's rows interleaved
    /// (`2i + h`); ours is `[H, T, D]` with halves (`h * D/2 + i`).
    #[test]
    fn undoes_the_rope_row_interleave_and_the_head_transpose() {
        let l = layout(
            "[{ rank = 3 }, { reshape = [0, 0, -1, 2] }, { transpose = [1, 0, 3, 2] }, \
             { reshape = [0, 0, -1] }]",
        );
        let (t, h, d) = (2, 3, 4);
        // B[t][h][2i + j] = 1000 t + 100 h + 10 j + i: which (h, t, half j, index i) it is.
        let mut b = Vec::new();
        for tt in 0..t {
            for hh in 0..h {
                for k in 0..d {
                    let (i, j) = (k / 2, k % 2);
                    b.push((1000 * tt + 100 * hh + 10 * j + i) as f64);
                }
            }
        }
        let p = l.plan(&[t, h, d], &[h, t, d]).unwrap();
        assert_eq!(p.shape, vec![h, t, d]);
        let a = p.apply(&b).unwrap();
        for hh in 0..h {
            for tt in 0..t {
                for c in 0..d {
                    let (j, i) = (c / (d / 2), c % (d / 2));
                    assert_eq!(
                        a[(hh * t + tt) * d + c],
                        (1000 * tt + 100 * hh + 10 * j + i) as f64
                    );
                }
            }
        }
        // One token (ggml drops the extent 1): rank restores it.
        let p = l.plan(&[h, d], &[h, 1, d]).unwrap();
        assert_eq!(p.shape, vec![h, 1, d]);
    }

    #[test]
    fn slice_and_crop_drop_elements() {
        // The last row of [3, 2].
        let p = layout("[{ rank = 2 }, { slice = { axis = 0, start = -1 } }, { reshape = [-1] }]")
            .plan(&[3, 2], &[2])
            .unwrap();
        assert_eq!(
            (p.shape.clone(), p.apply(&iota(6)).unwrap()),
            (vec![2], vec![4.0, 5.0])
        );
        assert!(!p.keeps_every_element());
        // Already the smaller side: kept whole (the other side crops).
        let p = layout("[{ crop = [1] }]").plan(&[2, 3], &[2, 4]).unwrap();
        assert!(p.keeps_every_element() && p.shape == vec![2, 3]);
        // A padded last axis cropped to A's extent.
        let p = layout("[{ crop = [1] }]").plan(&[2, 4], &[2, 3]).unwrap();
        assert_eq!(
            p.apply(&iota(8)).unwrap(),
            vec![0.0, 1.0, 2.0, 4.0, 5.0, 6.0]
        );
        let p = layout("[{ slice = { axis = 1, start = 1, end = -1 } }]")
            .plan(&[2, 4], &[])
            .unwrap();
        assert_eq!(p.apply(&iota(8)).unwrap(), vec![1.0, 2.0, 5.0, 6.0]);
        assert_eq!(p.apply(&iota(7)), None);
    }

    #[test]
    fn inline_toml_reads_back() {
        let text = "[{ rank = 2 }, { squeeze = [0] }, { reshape = [0, -1] }, \
                    { transpose = [1, 0] }, { crop = [1] }, { slice = { axis = 0, start = -1 } }]";
        let steps = layout(text).steps().to_vec();
        let again: Vec<String> = steps.iter().map(Step::inline_toml).collect();
        assert_eq!(layout(&format!("[{}]", again.join(", "))).steps(), steps);
    }

    #[test]
    fn squeeze_removes_axes_of_extent_one() {
        let p = layout("[{ squeeze = [0] }]").plan(&[1, 2, 3], &[]).unwrap();
        assert_eq!(p.shape, vec![2, 3]);
        assert_eq!(p.apply(&iota(6)).unwrap(), iota(6));
        let p = layout("[{ squeeze = [0, 2] }]")
            .plan(&[1, 4, 1], &[])
            .unwrap();
        assert_eq!(p.shape, vec![4]);
    }

    #[test]
    fn bad_steps_say_which_and_why() {
        let bad = |steps: Vec<Step>| Layout::new(steps).unwrap_err();
        assert!(bad(vec![Step::Transpose(vec![0, 0])])
            .contains("step 0: transpose [0, 0] is not a permutation"));
        assert!(bad(vec![Step::Rank(1), Step::Reshape(vec![-1, -1])]).contains("step 1: reshape"));
        assert!(bad(vec![Step::Rank(0)]).contains("rank 0"));
        let plan = |s: &str, b: &[usize], a: &[usize]| layout(s).plan(b, a).unwrap_err();
        let e = plan("[{ transpose = [1, 0] }]", &[2, 3, 4], &[24]);
        assert!(
            e.contains("layout step 0 (transpose = [1, 0]): the shape [2, 3, 4] has 3 axes"),
            "{e}"
        );
        let e = plan("[{ reshape = [5, -1] }]", &[2, 3], &[6]);
        assert!(e.contains("cannot infer -1: 6 elements over 5"), "{e}");
        let e = plan("[{ crop = [1] }]", &[2, 3], &[2, 4, 1]);
        assert!(e.contains("differ in rank"), "{e}");
        let e = plan("[{ squeeze = [1] }]", &[1, 3], &[3]);
        assert!(
            e.contains("axis 1 of [1, 3] is not an axis of extent 1"),
            "{e}"
        );
        assert!(bad(vec![Step::Squeeze(vec![0, 0])]).contains("repeats an axis"));
        let e = plan("[{ rank = 1 }]", &[2, 3], &[6]);
        assert!(e.contains("has more axes"), "{e}");
        let e = plan("[{ slice = { axis = 2 } }]", &[2, 3], &[6]);
        assert!(e.contains("no axis 2"), "{e}");
        assert!(toml::from_str::<Step>("bogus = 1").is_err());
    }

    proptest! {
        /// A transpose followed by its inverse gives the input back, and any transpose keeps
        /// every element exactly once.
        #[test]
        fn transpose_then_inverse_is_identity(
            dims in prop::collection::vec(1usize..4, 1..5),
            seed in any::<u64>(),
        ) {
            let n = dims.len();
            let mut perm: Vec<usize> = (0..n).collect();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                perm.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut inverse = vec![0; n];
            for (k, &p) in perm.iter().enumerate() {
                inverse[p] = k;
            }
            let forward = Layout::new(vec![Step::Transpose(perm)]).unwrap();
            let back = Layout::new(vec![Step::Transpose(inverse)]).unwrap();
            let len: usize = dims.iter().product();
            let p = forward.plan(&dims, &[]).unwrap();
            prop_assert!(p.keeps_every_element());
            let mid = p.apply(&iota(len)).unwrap();
            let mut sorted = mid.clone();
            sorted.sort_by(f64::total_cmp);
            prop_assert_eq!(&sorted, &iota(len));
            let q = back.plan(&p.shape, &[]).unwrap();
            prop_assert_eq!(q.shape.clone(), dims);
            prop_assert_eq!(q.apply(&mid).unwrap(), iota(len));
        }
    }
}
