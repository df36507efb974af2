//! The tensor-parallel crossval end to end.

use super::*;

/// End to end, as `cargo xtask crossval --tp 2 [--bug B]` runs it: the clean run agrees and
/// each planted bug is found at its record with its rank(s).
#[test]
fn tp_crossval_clean_and_bugs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = Options::new(Model::TensorParallel);
    o.out = tmp.path().join("clean");
    o.quiet = true;
    o.tp = TensorParallel {
        world_size: 2,
        bug: None,
        timeout: 300,
    };
    let run = |o: &Options| {
        crate::driver::run(&TensorParallelHarness, o)
            .unwrap()
            .report
    };
    let report = run(&o);
    let text = render::text(&report, &TextOptions::default());
    assert_eq!(report.outcome, Outcome::Agree, "{text}");
    assert_eq!(report.ranks.as_ref().unwrap().world_size_a, Some(2));
    for &(bug, record, ranks) in BUGS {
        let mut o = o.clone();
        o.tp.bug = Some(bug.to_owned());
        o.out = tmp.path().join(bug);
        let report = run(&o);
        let text = render::text(&report, &TextOptions::default());
        assert_eq!(report.outcome, Outcome::Diverged, "{bug}: {text}");
        assert_eq!(
            report.first_divergence.as_ref().unwrap().name,
            record,
            "{bug}: {text}"
        );
        assert_eq!(
            report.ranks.as_ref().unwrap().first_divergence_ranks,
            ranks,
            "{bug}: {text}"
        );
    }
}
