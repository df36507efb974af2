//! Each side of a matched pair as the comparison sees it: laid out by its `[[map]]` entry's (or
//! its engine view's) steps (crate::transform), the baseline's by its own view or B's.

use trace_core::record::TraceRecord;

use crate::options::DiffOptions;
use crate::transform::{Layout, Plan};

/// One side as the comparison sees it: through its layout (crate::transform) when the pair's
/// `[[map]]` entry (or a view) has one, so its shape and element count are the laid-out ones.
pub(crate) struct SideView {
    /// `None` when the values are compared as recorded (no layout, or one that only renames
    /// axes: squeeze, rank, reshape).
    plan: Option<Plan>,
    pub(crate) shape: Vec<usize>,
    pub(crate) len: u64,
}

impl SideView {
    fn as_recorded(r: &TraceRecord) -> Self {
        SideView {
            plan: None,
            shape: r.shape.clone(),
            len: r.num_elements,
        }
    }

    /// `r` laid out by `layout`, `other` being the other side's shape (for `crop`).
    fn planned(layout: &Layout, r: &TraceRecord, other: &[usize]) -> Result<Self, String> {
        let p = layout.plan(&r.shape, other)?;
        Ok(SideView {
            shape: p.shape.clone(),
            len: p.len() as u64,
            plan: (!p.is_identity()).then_some(p),
        })
    }

    /// The values through the plan; `None` when they do not fit it.
    pub(crate) fn apply(&self, v: Vec<f64>) -> Option<Vec<f64>> {
        match &self.plan {
            Some(p) => p.apply(&v),
            None => Some(v),
        }
    }

    pub(crate) fn drops(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| !p.keeps_every_element())
    }
}

/// Both sides of a pair as compared: each through its own layout. `failed` when a layout does
/// not fit its side's shape (the note says which).
pub(crate) struct Views {
    pub(crate) a: SideView,
    pub(crate) b: SideView,
    pub(crate) failed: bool,
}

/// `r` through `layout`, the other side's shape being `other`'s (after its own layout, less its
/// crops: a crop keeps the smaller extent, so the order of the two sides does not matter).
pub(crate) fn lay_out(
    layout: Option<&Layout>,
    r: &TraceRecord,
    other: (Option<&Layout>, &TraceRecord),
) -> Result<SideView, String> {
    let Some(layout) = layout else {
        return Ok(SideView::as_recorded(r));
    };
    let other_shape = match other.0 {
        Some(l) if layout.needs_other_shape() => l
            .plan(&other.1.shape, &[])
            .map(|p| p.shape)
            .unwrap_or_else(|_| other.1.shape.clone()),
        _ => other.1.shape.clone(),
    };
    SideView::planned(layout, r, &other_shape)
}

/// `r` through `layout` (as recorded when `None`), the other side's shape as compared being
/// `other`.
pub(crate) fn lay_out_against(
    layout: Option<&Layout>,
    r: &TraceRecord,
    other: &[usize],
) -> Result<SideView, String> {
    match layout {
        Some(l) => SideView::planned(l, r, other),
        None => Ok(SideView::as_recorded(r)),
    }
}

impl Views {
    pub(crate) fn new(
        options: &DiffOptions,
        ra: &TraceRecord,
        rb: &TraceRecord,
        notes: &mut Vec<String>,
    ) -> Self {
        let l = options.rules.layouts(&ra.name);
        let a = lay_out(l.a.as_ref(), ra, (l.b.as_ref(), rb));
        let b = lay_out(l.b.as_ref(), rb, (l.a.as_ref(), ra));
        match (a, b) {
            (Ok(a), Ok(b)) => {
                for (side, v, r) in [("A", &a, ra), ("B", &b, rb)] {
                    if let Some(p) = &v.plan {
                        notes.push(format!(
                            "{side}'s values laid out: {:?} -> {:?}{}",
                            r.shape,
                            p.shape,
                            if p.keeps_every_element() {
                                ""
                            } else {
                                ", elements dropped"
                            }
                        ));
                    }
                }
                Views {
                    a,
                    b,
                    failed: false,
                }
            }
            (a, b) => {
                for (side, e) in [("A", a.as_ref().err()), ("B", b.as_ref().err())] {
                    if let Some(e) = e {
                        notes.push(format!("{side}: {e}"));
                    }
                }
                Views {
                    a: a.unwrap_or_else(|_| SideView::as_recorded(ra)),
                    b: b.unwrap_or_else(|_| SideView::as_recorded(rb)),
                    failed: true,
                }
            }
        }
    }

    pub(crate) fn planned(&self) -> bool {
        self.a.plan.is_some() || self.b.plan.is_some()
    }

    /// Whether a layout drops elements (then only raw values can judge the pair).
    pub(crate) fn drops(&self) -> bool {
        self.a.drops() || self.b.drops()
    }
}
