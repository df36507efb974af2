//! Shared text for the pairs of one diff: a report holds every pair, so its names, stages,
//! dtypes, shapes and tolerances are held once, each pair pointing at them (a long run repeats
//! a few hundred names over many tokens and one dtype throughout).

use std::collections::HashSet;
use std::sync::Arc;

/// The values already handed out, by content. A diff that holds its pairs shares them
/// ([`Interner::sharing`]); one that lets each pair go ([`Interner::default`]) does not look
/// them up, so each pair gets its own copy and nothing is kept.
///
/// `T` is the applied tolerance (`report::AppliedTolerance`; generic so that this module
/// imports nothing of the report, which uses it).
#[derive(Debug)]
pub(crate) struct Interner<T> {
    sharing: bool,
    texts: HashSet<Arc<str>>,
    shapes: HashSet<Arc<[usize]>>,
    /// Few per diff (one per rule and dtype), so a list.
    tolerances: Vec<Arc<T>>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            sharing: false,
            texts: HashSet::new(),
            shapes: HashSet::new(),
            tolerances: Vec::new(),
        }
    }
}

impl<T: PartialEq> Interner<T> {
    /// An interner that shares what it has handed out.
    pub(crate) fn sharing() -> Self {
        Interner {
            sharing: true,
            ..Interner::default()
        }
    }

    /// `text`, shared with every earlier equal text.
    pub(crate) fn text(&mut self, text: &str) -> Arc<str> {
        share(self.sharing, &mut self.texts, text)
    }

    /// `shape`, shared with every earlier equal shape.
    pub(crate) fn shape(&mut self, shape: &[usize]) -> Arc<[usize]> {
        share(self.sharing, &mut self.shapes, shape)
    }

    /// `tolerance`, shared with every earlier equal one.
    pub(crate) fn tolerance(&mut self, tolerance: T) -> Arc<T> {
        if !self.sharing {
            return Arc::new(tolerance);
        }
        if let Some(t) = self.tolerances.iter().find(|t| ***t == tolerance) {
            return Arc::clone(t);
        }
        let t = Arc::new(tolerance);
        self.tolerances.push(Arc::clone(&t));
        t
    }
}

fn share<T: ?Sized + Eq + std::hash::Hash>(
    sharing: bool,
    set: &mut HashSet<Arc<T>>,
    value: &T,
) -> Arc<T>
where
    Arc<T>: for<'a> From<&'a T>,
{
    if !sharing {
        return Arc::from(value);
    }
    if let Some(v) = set.get(value) {
        return Arc::clone(v);
    }
    let v: Arc<T> = Arc::from(value);
    set.insert(Arc::clone(&v));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharing_interner_hands_out_one_copy_of_each_value() {
        let mut s = Interner::sharing();
        let (a, b) = (s.text("blk0/q"), s.text("blk0/q"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &s.text("blk0/k")));
        assert!(Arc::ptr_eq(&s.shape(&[1, 16]), &s.shape(&[1, 16])));
        let t = |source: &str| (1e-5, source.to_owned());
        assert!(Arc::ptr_eq(&s.tolerance(t("x")), &s.tolerance(t("x"))));
        assert!(!Arc::ptr_eq(&s.tolerance(t("x")), &s.tolerance(t("y"))));
    }

    #[test]
    fn a_default_interner_keeps_nothing() {
        let mut s = Interner::<()>::default();
        let (a, b) = (s.text("blk0/q"), s.text("blk0/q"));
        assert_eq!(a, b);
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(s.texts.is_empty() && s.shapes.is_empty());
    }
}
