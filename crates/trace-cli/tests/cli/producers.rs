//! bitnet-trace directories exactly as its writer leaves them (`trace-core/tests/data/bitnet-trace`),
//! through `show`, `diff` and `check`.

use std::path::PathBuf;

use predicates::prelude::*;

use super::support::tensor_trace;

fn bitnet(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trace-core/tests/data/bitnet-trace")
        .join(name)
}

#[test]
fn show_lists_upstream_records_with_their_context() {
    tensor_trace()
        .arg("show")
        .arg(bitnet("upstream-edge"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("t0/blk0/kv_cache_k   [0, 4]  F32")
                .and(predicate::str::contains(
                    "t0/temperature       []      F32    3.5000",
                ))
                .and(predicate::str::contains(
                    "t0/blk0/ffn_out      [1, 6]  BF16   1.6583",
                )),
        );
}

#[test]
fn diff_names_the_first_divergence_between_upstream_runs() {
    tensor_trace()
        .arg("diff")
        .arg(bitnet("upstream-a"))
        .arg(bitnet("upstream-b"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "summary: 6 compared: 4 identical, 0 within tolerance, 2 diverged",
            )
            .and(predicate::str::contains(
                "first divergence: #3 t0/blk1/q_proj (step 0, layer 1, stage q_proj, occurrence 0)",
            ))
            .and(predicate::str::contains(
                "last agreeing record before it: t0/blk1/attn_norm",
            )),
        );
    for run in ["seed", "upstream-a", "upstream-edge"] {
        tensor_trace()
            .arg("diff")
            .arg(bitnet(run))
            .arg(bitnet(run))
            .assert()
            .success()
            .stdout(predicate::str::contains("result: AGREE"));
    }
}

#[test]
fn check_reads_a_null_rms_as_a_non_finite_record() {
    // bitnet-trace records have no stats, but write a NaN/Inf RMS as null.
    tensor_trace()
        .arg("check")
        .arg(bitnet("upstream-edge"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("error: #0 t0/blk0/attn_scores (layer 0, step 0, stage attn_scores)")
                .and(predicate::str::contains("rms is null over 4 elements"))
                .and(predicate::str::contains(
                    "checked 4 records: 1 with NaN/Inf, 0 unreadable, 4 without stats (seed format) checked by their rms only",
                )),
        );
    // The empty tensor's null RMS is not a finding; finite RMS values mean finite records.
    tensor_trace()
        .arg("check")
        .arg(bitnet("seed"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "checked 5 records: 0 with NaN/Inf",
        ));
}

#[test]
fn check_on_a_single_record_file_points_at_its_directory() {
    tensor_trace()
        .arg("check")
        .arg(bitnet("seed").join("logits.trace"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "logits.trace as an event history (a .trace record is checked with its trace directory: pass the directory)",
        ));
}
