//! The bisect library as xtask calls it: `std::process::Command`s in, a result struct out.

use std::process::Command;

use trace_cli::bisect::{bisect, BisectOptions, BisectOutcome};
use trace_cli::engine::EngineCommand;
use trace_cli::repeat::{repeat, RepeatOptions};
use trace_diff::{DiffOptions, Evidence};

use super::support::toy_engine;

#[test]
fn bisect_takes_commands_and_keeps_their_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Command::new(toy_engine());
    a.args(["--plant-at", "9"])
        // The command's own settings are kept: both sides record blocks only.
        .env("TENSOR_TRACE_FILTER", "blk*");
    let mut b = Command::new(toy_engine());
    b.env("TENSOR_TRACE_FILTER", "blk*");
    let options = BisectOptions {
        out: Some(tmp.path().join("out")),
        window: 1,
        ..BisectOptions::default()
    };
    let found = bisect(
        &EngineCommand::from_command(&a),
        &EngineCommand::from_command(&b),
        &options,
        &DiffOptions::default(),
    )
    .unwrap();
    assert_eq!(found.outcome, BisectOutcome::Diverged);
    assert_eq!(found.outcome.exit_code(), 1);
    assert!(found.kept && found.out == tmp.path().join("out"));
    // Record 9 of the full run is blk1/attn_out of step 1; with the filter, 8 records per run.
    let pair = found.report.first_divergence_pair().unwrap();
    assert_eq!(
        (pair.name_a.as_deref(), pair.occurrence),
        (Some("blk1/attn_out"), 1)
    );
    assert_eq!(pair.evidence, Evidence::Values);
    assert_eq!(found.report.a.records, 8);
    let window: Vec<_> = found.window.iter().map(|w| w.name_a.as_str()).collect();
    assert_eq!(window, ["blk0/ffn_out", "blk1/attn_out"]);
    assert_eq!(found.passes.len(), 2);
    assert_eq!(
        found.passes[1].a.values_at.as_deref(),
        Some("blk0/ffn_out@1,blk1/attn_out@1")
    );
    assert!(found.bytes_written() > 0 && found.engine_seconds() > 0.0);

    let found = repeat(
        &EngineCommand::from_command(&b),
        &RepeatOptions {
            runs: 2,
            out: Some(tmp.path().join("repeat")),
            filter: None,
        },
    )
    .unwrap();
    assert!(found.nondeterministic.is_none() && found.exit_code() == 0);
    assert_eq!(found.records, 8);
}
