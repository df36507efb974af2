//! C and C++ programs built with the system compiler against `libtrace_ffi.a`, run with
//! `TENSOR_TRACE_DIR` in a temporary directory, their records checked against trace-core's.
//!
//! Each test compiles its program once and runs it in several modes, to keep the link count low.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::Path;

use trace_core::run::{Run, RunOrder};
use trace_ffi::{TtContext, TT_ABI_VERSION, TT_MAX_NDIM, TT_UNSET};

use crate::support::{
    assert_same_run, c_input, compile, crate_dir, golden_settings, golden_vectors, manifest,
    own_vectors, record_with_trace_core, run, run_raw, values_filter, Vector,
};

/// Records `vectors` through the C program in every memory layout, with these
/// `TENSOR_TRACE_VALUES` and `TENSOR_TRACE_VALUES_AT` settings, and checks each directory
/// against `expected`.
fn check_vectors(
    api: &Path,
    vectors: &[Vector],
    (values, values_at): (Option<String>, Option<String>),
    expected: &Path,
    work: &Path,
) {
    let input = work.join("vectors.txt");
    std::fs::write(&input, c_input(vectors)).unwrap();
    for layout in ["dense", "colmajor", "padded", "misaligned"] {
        let dir = work.join(layout);
        let dir_s = dir.to_str().unwrap();
        let mut env = vec![
            ("TENSOR_TRACE_DIR", dir_s),
            ("TENSOR_TRACE_LAYOUT", "files"),
        ];
        if let Some(v) = &values {
            env.push(("TENSOR_TRACE_VALUES", v));
        }
        if let Some(v) = &values_at {
            env.push(("TENSOR_TRACE_VALUES_AT", v));
        }
        let out = run(api, &["vectors", input.to_str().unwrap(), layout], &env);
        assert!(
            out.contains(&format!("recorded {} tensors", vectors.len())),
            "{out}"
        );
        assert_same_run(expected, &dir);
    }
}

/// The golden run through the C ABI in the default layout (packed): byte-identical to the
/// committed packed directory (the C ABI is trace-core, so every byte matches).
fn check_packed(
    api: &Path,
    vectors: &[Vector],
    (values, values_at): (Option<String>, Option<String>),
    expected: &Path,
    work: &Path,
) {
    let input = work.join("vectors.txt");
    let dir = work.join("packed");
    let dir_s = dir.to_str().unwrap();
    let mut env = vec![("TENSOR_TRACE_DIR", dir_s)];
    if let Some(v) = &values {
        env.push(("TENSOR_TRACE_VALUES", v));
    }
    if let Some(v) = &values_at {
        env.push(("TENSOR_TRACE_VALUES_AT", v));
    }
    let out = run(api, &["vectors", input.to_str().unwrap(), "dense"], &env);
    assert!(
        out.contains(&format!("recorded {} tensors", vectors.len())),
        "{out}"
    );
    let names = |d: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect()
    };
    let (want, got) = (names(expected), names(&dir));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(
            got[name] == *bytes,
            "{name} differs from the golden packed run"
        );
    }
}

#[test]
fn c_program() {
    let work = tempfile::tempdir().unwrap();
    let api = compile("api.c", work.path());

    // The compiled layout of tt_context and the constants, as C sees them.
    let layout = run(&api, &["layout"], &[]);
    let seen: BTreeMap<&str, &str> = layout.lines().filter_map(|l| l.split_once('=')).collect();
    let want = [
        ("TT_ABI_VERSION", TT_ABI_VERSION.to_string()),
        ("tt_abi_version", TT_ABI_VERSION.to_string()),
        ("TT_MAX_NDIM", TT_MAX_NDIM.to_string()),
        ("TT_UNSET", TT_UNSET.to_string()),
        ("sizeof", size_of::<TtContext>().to_string()),
        ("align", align_of::<TtContext>().to_string()),
        ("seq", offset_of!(TtContext, seq).to_string()),
        ("layer", offset_of!(TtContext, layer).to_string()),
        ("stage", offset_of!(TtContext, stage).to_string()),
    ];
    for (key, value) in want {
        assert_eq!(
            seen.get(key).copied(),
            Some(value.as_str()),
            "{key} in:\n{layout}"
        );
    }

    // Disabled: nothing is checked, nothing written.
    run(&api, &["disabled"], &[]);

    // Error codes and messages; the one valid record is the only file besides the manifest.
    let dir = work.path().join("errors");
    run(
        &api,
        &["errors"],
        &[
            ("TENSOR_TRACE_DIR", dir.to_str().unwrap()),
            ("TENSOR_TRACE_LAYOUT", "files"),
        ],
    );
    let m = manifest(&dir);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["name"], "ok");

    // An invalid variable is reported by the capture, naming it.
    let dir = work.path().join("config");
    let out = run(
        &api,
        &["config-error"],
        &[
            ("TENSOR_TRACE_DIR", dir.to_str().unwrap()),
            ("TENSOR_TRACE_FILTER", "blk["),
        ],
    );
    assert!(
        out.starts_with("tt_record: invalid TENSOR_TRACE_FILTER=\"blk[\""),
        "{out}"
    );
    assert!(!dir.exists());

    // Four threads at once, in the default (packed) layout: every record lands, indexes
    // unique, occurrences of the shared name numbered without a gap.
    let dir = work.path().join("threads");
    run(
        &api,
        &["threads"],
        &[("TENSOR_TRACE_DIR", dir.to_str().unwrap())],
    );
    let threads = Run::open(&dir).unwrap();
    assert_eq!(threads.order(), RunOrder::Packed);
    assert!(threads.problems().is_empty(), "{:?}", threads.problems());
    assert_eq!(threads.len(), 400);
    for (i, r) in threads.records().iter().enumerate() {
        assert_eq!(
            r.record.index,
            Some(i as u64),
            "the log is in capture order"
        );
    }
    let mut shared: Vec<u64> = threads
        .records()
        .iter()
        .filter(|r| r.record.name == "shared")
        .map(|r| r.occurrence)
        .collect();
    shared.sort_unstable();
    assert_eq!(shared, (0..200).collect::<Vec<_>>());

    // Our vectors, in four memory layouts, against trace-core's own directory.
    let vectors = own_vectors();
    let expected = work.path().join("expected");
    record_with_trace_core(&vectors, &expected);
    let own = work.path().join("own");
    std::fs::create_dir(&own).unwrap();
    check_vectors(
        &api,
        &vectors,
        (values_filter(&vectors), None),
        &expected,
        &own,
    );

    // The shared golden vectors: committed, so a missing input is a failure, never a skip.
    let golden = crate_dir().join("../../testdata/golden");
    let inputs = golden.join("inputs.json");
    assert!(
        inputs.is_file(),
        "{} is missing: the golden vectors cannot be checked",
        inputs.display()
    );
    let vectors = golden_vectors(&inputs);
    let out = work.path().join("golden");
    std::fs::create_dir(&out).unwrap();
    let settings = golden_settings(&inputs);
    check_vectors(
        &api,
        &vectors,
        settings.clone(),
        &golden.join("expected"),
        &out,
    );
    check_packed(
        &api,
        &vectors,
        settings,
        &golden.join("expected-packed"),
        &out,
    );
}

#[test]
fn cpp_wrapper() {
    let work = tempfile::tempdir().unwrap();
    let exe = compile("wrapper.cpp", work.path());
    let actual = work.path().join("actual");
    let out = run(
        &exe,
        &[],
        &[
            ("TENSOR_TRACE_DIR", actual.to_str().unwrap()),
            ("TENSOR_TRACE_LAYOUT", "files"),
            ("TENSOR_TRACE_FILTER", "cpp/*"),
            ("TENSOR_TRACE_VALUES", "cpp/f16,cpp/strided"),
        ],
    );
    assert_eq!(out, "ok\n");

    // The same tensors recorded by trace-core (see tests/c/wrapper.cpp).
    let f32s = [0.5f32, -1.25, 3.0, 1e-3, -0.0];
    let f32_bytes: Vec<u8> = f32s.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = |it: &mut dyn Iterator<Item = Vec<u8>>| it.flatten().collect::<Vec<u8>>();
    let v = |name: &str, dtype, shape: &[usize], data: Vec<u8>| Vector {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data,
        values: name == "cpp/f16" || name == "cpp/strided",
        seq: None,
        layer: None,
        stage: None,
    };
    use trace_core::DType::*;
    let f64s = [1.0 / 3.0, -2.5, 1e300, 4.0, 5.0, -6.0f64];
    let vectors = vec![
        Vector {
            seq: Some(0),
            layer: Some(0),
            stage: Some("q".into()),
            ..v("cpp/f32", F32, &[5], f32_bytes.clone())
        },
        Vector {
            layer: Some(-1),
            ..v(
                "cpp/f64",
                F64,
                &[2, 3],
                bytes(&mut f64s.iter().map(|x| x.to_le_bytes().to_vec())),
            )
        },
        v(
            "cpp/i32",
            I32,
            &[2, 2],
            bytes(
                &mut [-7i32, 0, 7, i32::MAX]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec()),
            ),
        ),
        Vector {
            seq: Some(1),
            ..v(
                "cpp/i64",
                I64,
                &[3],
                bytes(
                    &mut [-(1i64 << 40), 16_777_217, 42]
                        .iter()
                        .map(|x| x.to_le_bytes().to_vec()),
                ),
            )
        },
        v("cpp/u8", U8, &[4], vec![0, 1, 128, 255]),
        v(
            "cpp/u32",
            U32,
            &[3],
            bytes(
                &mut [0u32, u32::MAX, 16_777_217]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec()),
            ),
        ),
        v(
            "cpp/f16",
            F16,
            &[2, 2],
            bytes(
                &mut [0x3C00u16, 0xC000, 0x3800, 0x7C00]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec()),
            ),
        ),
        Vector {
            stage: Some("logits".into()),
            ..v(
                "cpp/bf16",
                BF16,
                &[3],
                bytes(
                    &mut [0x3F80u16, 0xC000, 0x7FC0]
                        .iter()
                        .map(|x| x.to_le_bytes().to_vec()),
                ),
            )
        },
        // The transpose of [[1, 2, 3], [4, 5, 6]].
        v(
            "cpp/strided",
            F32,
            &[3, 2],
            bytes(
                &mut [1f32, 4.0, 2.0, 5.0, 3.0, 6.0]
                    .iter()
                    .map(|x| x.to_le_bytes().to_vec()),
            ),
        ),
        Vector {
            seq: Some(1),
            layer: Some(0),
            stage: Some("q".into()),
            ..v("cpp/f32", F32, &[5], f32_bytes)
        },
    ];
    let expected = work.path().join("expected");
    record_with_trace_core(&vectors, &expected);
    assert_same_run(&expected, &actual);
    assert!(actual.join("cpp_f32.1.trace").exists());
}

/// Multi-process runs through the C ABI: `TENSOR_TRACE_WORLD_SIZE` above 1 sends each process
/// into `DIR/rank-{r}` with `rank.json`, exactly as trace-core's tracer does (it is trace-core);
/// a bad pair is a configuration error naming the variable; world size 1 is a plain run.
#[test]
fn c_program_multi_rank() {
    let work = tempfile::tempdir().unwrap();
    let api = compile("api.c", work.path());
    let vectors = own_vectors();
    let input = work.path().join("vectors.txt");
    std::fs::write(&input, c_input(&vectors)).unwrap();
    let expected = work.path().join("expected");
    record_with_trace_core(&vectors, &expected);
    let dir = work.path().join("tp");
    let dir_s = dir.to_str().unwrap();
    let values = values_filter(&vectors);
    for rank in ["0", "1"] {
        let mut env = vec![
            ("TENSOR_TRACE_DIR", dir_s),
            ("TENSOR_TRACE_RANK", rank),
            ("TENSOR_TRACE_WORLD_SIZE", "2"),
        ];
        if let Some(v) = &values {
            env.push(("TENSOR_TRACE_VALUES", v));
        }
        run(&api, &["vectors", input.to_str().unwrap(), "dense"], &env);
    }
    let world = trace_core::ranks::RankedRun::discover(&dir)
        .unwrap()
        .expect("rank directories");
    assert_eq!(world.world_size, 2);
    for (r, rank_dir) in world.ranks.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(rank_dir.join("rank.json")).unwrap(),
            format!("{{\"rank\":{r},\"world_size\":2}}\n")
        );
        // Each rank's run in the default (packed) layout.
        let run = Run::open(rank_dir).unwrap();
        assert_eq!(run.order(), RunOrder::Packed);
        assert_eq!(run.len(), vectors.len());
        assert!(run
            .records()
            .iter()
            .all(|x| x.record.rank == Some(r as u32)));
    }
    assert_eq!(manifest(&expected).len(), vectors.len());

    let out = run_raw(
        &api,
        &["config-error"],
        &[
            ("TENSOR_TRACE_DIR", dir_s),
            ("TENSOR_TRACE_RANK", "2"),
            ("TENSOR_TRACE_WORLD_SIZE", "2"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("tt_record: invalid TENSOR_TRACE_RANK=\"2\": expected a rank below"),
        "{text}"
    );

    let single = work.path().join("single");
    run(
        &api,
        &["vectors", input.to_str().unwrap(), "dense"],
        &[
            ("TENSOR_TRACE_DIR", single.to_str().unwrap()),
            ("TENSOR_TRACE_WORLD_SIZE", "1"),
        ],
    );
    assert!(single.join("records.jsonl").exists() && !single.join("rank-0").exists());
}
