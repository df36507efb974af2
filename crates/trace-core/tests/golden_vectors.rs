//! The shared golden vectors: one set of inputs, and the trace directory trace-core writes for
//! them, committed under `testdata/golden/` and checked by every emitter (Rust here, Python in
//! `python/tests`, C through the FFI crate).
//!
//! - `inputs.json` lists the tensors in capture order, each with its raw little-endian bytes in
//!   the source dtype as hex. It is generated from code below (no randomness without a seed), so
//!   the file and the code cannot drift apart unnoticed.
//! - `expected/` is what a [`Tracer`] writes for those inputs with the settings `inputs.json`
//!   names at its top: `values` (the `TENSOR_TRACE_VALUES` glob list) and `values_at` (the
//!   `TENSOR_TRACE_VALUES_AT` items). Raw values are saved for exactly the tensors flagged
//!   `values: true`, some by name and some by occurrence only.
//!
//! - `expected-packed/` is the same run in the packed layout (`TENSOR_TRACE_LAYOUT=packed`):
//!   `records.jsonl` (one compact record per line) and the same `.npy` files.
//!
//! `TENSOR_TRACE_BLESS=1 cargo test -p trace-core --test golden_vectors` rewrites both; without it
//! the test writes into a temporary directory and demands identical files, byte for byte. CI
//! never blesses.
//!
//! Comparison rule for the other emitters (see `docs/PYTHON.md`): the same set of file names,
//! the same manifest entries (parsed), every record field equal (parsed) except `rms` and the
//! `stats` floats, which agree within 1e-12 relative (their sums may be taken in another order;
//! the Python emitter reproduces trace-core's order and is bit-equal in practice), and `.npy`
//! files equal in dtype, shape and bits (headers differ between NumPy and npyz in padding).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde::Serialize;
use trace_core::config::ValuesAt;
use trace_core::{Context, Data, Layout, TensorView, Tracer};

/// The `TENSOR_TRACE_VALUES_AT` setting of the golden run: single occurrences, a range running
/// past the last occurrence, spaces around items, an escaped comma and a name holding `@`.
const VALUES_AT: &str = r"sel/h@1, sel/h@3-9,with space\, comma@0, x/y@1,user@host@0";
/// How many records [`VALUES_AT`] selects (on top of the names flagged for values).
const VALUES_AT_RECORDS: usize = 5;

/// Characters that would make a name a glob pattern, or split the values list.
const GLOB_SPECIAL: &[char] = &['*', '?', '[', ']', '{', '}', '\\', ','];

#[derive(Serialize)]
struct Inputs {
    format: u32,
    /// `TENSOR_TRACE_VALUES` for the run.
    values: String,
    /// `TENSOR_TRACE_VALUES_AT` for the run.
    values_at: &'static str,
    tensors: Vec<Input>,
}

#[derive(Serialize)]
struct Input {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    /// Lowercase hex of the raw little-endian bytes in the source dtype, row-major.
    data: String,
    /// Whether the raw values are saved as `.npy` (by name or by occurrence).
    values: bool,
    seq: Option<u64>,
    layer: Option<i64>,
    stage: Option<String>,
}

/// Owned elements of one dtype.
enum Elements {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    U8(Vec<u8>),
}

impl Elements {
    fn data(&self) -> Data<'_> {
        match self {
            Elements::F32(v) => Data::F32(v),
            Elements::F64(v) => Data::F64(v),
            Elements::F16(v) => Data::F16(v),
            Elements::BF16(v) => Data::BF16(v),
            Elements::I64(v) => Data::I64(v),
            Elements::I32(v) => Data::I32(v),
            Elements::U32(v) => Data::U32(v),
            Elements::U8(v) => Data::U8(v),
        }
    }

    fn le_bytes(&self) -> Vec<u8> {
        match self {
            Elements::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::U8(v) => v.clone(),
        }
    }
}

/// One tensor to capture, in order.
struct Case {
    name: String,
    shape: Vec<usize>,
    elements: Elements,
    values: bool,
    seq: Option<u64>,
    layer: Option<i64>,
    stage: Option<String>,
}

fn case(name: &str, shape: &[usize], elements: Elements) -> Case {
    Case {
        name: name.to_owned(),
        shape: shape.to_vec(),
        elements,
        values: false,
        seq: None,
        layer: None,
        stage: None,
    }
}

impl Case {
    fn values(mut self) -> Self {
        self.values = true;
        self
    }

    fn ctx(mut self, seq: Option<u64>, layer: Option<i64>, stage: Option<&str>) -> Self {
        self.seq = seq;
        self.layer = layer;
        self.stage = stage.map(str::to_owned);
        self
    }
}

/// splitmix64: a fixed-seed generator whose floats are exact (no libm), so the inputs are the
/// same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), a multiple of 2^-23: exact in f32 and f64.
    fn unit(&mut self) -> f64 {
        (self.next() >> 40) as f64 / (1u64 << 23) as f64 - 1.0
    }
}

fn f16s(bits: &[u16]) -> Elements {
    Elements::F16(bits.iter().map(|&b| f16::from_bits(b)).collect())
}

fn bf16s(bits: &[u16]) -> Elements {
    Elements::BF16(bits.iter().map(|&b| bf16::from_bits(b)).collect())
}

/// The golden inputs, in capture order.
fn cases() -> Vec<Case> {
    let mut rng = Rng(0x7e45_0e7a_ce00_0001);
    let mut out = Vec::new();
    let norm: Vec<f32> = (0..8).map(|i| (i as f32 - 3.5) / 4.0).collect();
    out.push(
        case("blk0/attn_norm", &[1, 8], Elements::F32(norm.clone()))
            .values()
            .ctx(Some(0), Some(0), Some("attn_norm")),
    );
    out.push(
        case(
            "logits",
            &[1, 16],
            Elements::F32(vec![
                0.0,
                -0.0,
                1.0,
                -1.5,
                f32::NAN,
                f32::from_bits(0x7fa0_0001), // a signaling NaN keeps its bits in F32
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MAX,
                f32::MIN,
                f32::MIN_POSITIVE,
                f32::from_bits(1), // smallest subnormal
                -f32::from_bits(0x007f_ffff),
                f32::EPSILON,
                1.0e-30,
                65504.0,
            ]),
        )
        .values()
        .ctx(Some(0), Some(-1), Some("logits")),
    );
    out.push(case("scalar", &[], Elements::F32(vec![3.5])).values());
    out.push(case("empty", &[0, 3], Elements::F32(vec![])).values());
    out.push(case("empty/bf16", &[0], bf16s(&[])).values());
    out.push(case("empty/u8", &[2, 0, 2], Elements::U8(vec![])));
    out.push(case("one", &[1], Elements::F64(vec![0.1])).ctx(None, Some(3), None));
    out.push(
        case(
            "f64/specials",
            &[2, 8],
            Elements::F64(vec![
                0.1,
                -0.0,
                1.0e-40, // an f32 subnormal
                1.0e-50, // flushes to zero
                1.0e300, // overflows to +inf
                -1.0e300,
                f64::NAN,
                f64::from_bits(0x7ff0_0000_0000_0001), // signaling NaN, low payload
                f64::from_bits(0xfff4_0000_2000_0000), // signaling NaN, high payload
                f64::from(f32::MAX),
                3.402_823_567_797_336_6e38, // just above f32::MAX + half an ulp: +inf
                16_777_217.0,               // 2^24 + 1: ties to even
                1.000_000_059_604_644_8,    // 1 + 2^-24: ties to even, down
                1.000_000_178_813_934_3,    // 1 + 3 * 2^-24: ties to even, up
                -2.5e-45,                   // rounds to the smallest negative subnormal
                1.0e-320,                   // an f64 subnormal
            ]),
        )
        .values()
        .ctx(Some(2), None, None),
    );
    out.push(case(
        "f16/specials",
        &[4, 4],
        f16s(&[
            0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00,
            0x7c01, // signaling NaN: widening sets the quiet bit
            0xfd55, 0x3c00, 0x3555, 0xc000, 0x0200,
        ]),
    ));
    out.push(
        case(
            "bf16/specials",
            &[16],
            bf16s(&[
                0x0000, 0x8000, 0x0001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x7fc0,
                0x7f81, // signaling NaN: widening sets the quiet bit
                0xffa5, 0x3f80, 0x3eab, 0xc000, 0x3c00,
            ]),
        )
        .ctx(None, None, Some("weights")),
    );
    let big = 1i64 << 60;
    out.push(case(
        "i64/large",
        &[2, 5],
        Elements::I64(vec![
            0,
            -1,
            (1 << 24) + 1,
            (1 << 53) + 1,
            big + (1 << 36) + 1, // direct rounding goes up; rounding through f64 would not
            -(big + (1 << 36) + 1),
            i64::MAX,
            i64::MIN,
            (1 << 62) - 1,
            123_456_789_012_345,
        ]),
    ));
    out.push(case(
        "i32/edges",
        &[8],
        Elements::I32(vec![
            i32::MIN,
            i32::MAX,
            (1 << 24) + 1,
            -((1 << 24) + 3),
            0,
            1,
            -1,
            16_777_219,
        ]),
    ));
    out.push(case(
        "u32/edges",
        &[6],
        Elements::U32(vec![
            0,
            u32::MAX,
            (1 << 24) + 1,
            (1 << 31) + 129,
            123_456_789,
            1,
        ]),
    ));
    out.push(
        case("u8/all", &[16, 16], Elements::U8((0..=255).collect()))
            .values()
            .ctx(Some(0), Some(-1), Some("token_ids")),
    );
    out.push(case("scalar/i64", &[], Elements::I64(vec![(1 << 53) + 1])));
    out.push(case("scalar/f16", &[], f16s(&[0xbc00])));
    out.push(case(
        "allnan",
        &[3],
        Elements::F32(vec![f32::NAN, -f32::NAN, f32::INFINITY]),
    ));
    out.push(case(
        "zeros",
        &[4],
        Elements::F32(vec![-0.0, 0.0, 0.0, -0.0]),
    ));

    // Several statistics blocks (4096 elements each), with a NaN in the second block only and an
    // infinity in the last, partial one.
    let mut blocks: Vec<f32> = (0..8200).map(|_| (rng.unit() * 8.0) as f32).collect();
    blocks[5000] = f32::NAN;
    blocks[8199] = f32::NEG_INFINITY;
    out.push(case("block/f32", &[2, 4100], Elements::F32(blocks)).ctx(Some(0), Some(1), None));
    // A large mean and a small spread: the shifted, blockwise variance must not cancel.
    let shifted: Vec<f32> = (0..4500)
        .map(|_| (1000.0 + rng.unit() * 0.01) as f32)
        .collect();
    out.push(case("block/mean", &[4500], Elements::F32(shifted)));
    let bf: Vec<bf16> = (0..4200)
        .map(|_| bf16::from_f64(rng.unit() * 3.0))
        .collect();
    out.push(
        case("bf16/block", &[3, 1400], Elements::BF16(bf))
            .values()
            .ctx(Some(0), Some(2), Some("mlp_out")),
    );
    let hf: Vec<f16> = (0..4097)
        .map(|_| f16::from_f64(rng.unit() * 60000.0))
        .collect();
    out.push(case("f16/block", &[4097], Elements::F16(hf)));
    let df: Vec<f64> = (0..4097).map(|_| rng.unit() * 1.0e-3).collect();
    out.push(case("f64/block", &[4097], Elements::F64(df)));
    let cube: Vec<i32> = (0..105)
        .map(|_| (rng.next() >> 33) as i32 - (1 << 30))
        .collect();
    out.push(case("i32/cube", &[3, 5, 7], Elements::I32(cube)));

    // Decode steps: the same name again, never an overwrite.
    for step in 1..3u64 {
        let h: Vec<f32> = norm.iter().map(|v| v * (step as f32 + 1.0)).collect();
        out.push(
            case("blk0/attn_norm", &[1, 8], Elements::F32(h))
                .values()
                .ctx(Some(step), Some(0), Some("attn_norm")),
        );
    }

    // Names that need sanitizing. Characters Windows forbids in file names (`"*?<>|:`) stay out
    // of the names, so the committed files check out everywhere; JSON escaping of quotes is
    // covered by a stage below.
    let small = |k: u32| Elements::F32((0..3).map(|i| (k * 3 + i) as f32).collect());
    let mut k = 0;
    let mut named = |name: &str| {
        k += 1;
        case(name, &[3], small(k))
    };
    out.push(named("a\\b"));
    out.push(named(".."));
    out.push(named("../escape"));
    out.push(named(""));
    out.push(named(".hidden"));
    out.push(named("ctl\u{1}name\n\u{7f}\u{85}"));
    out.push(named(&"L".repeat(250)));
    out.push(named(&format!("a{}", "é".repeat(120)))); // the cut falls inside a character
    out.push(named(&"m".repeat(180))); // exactly the limit: kept
    out.push(named(&"m".repeat(181))); // one byte over: cut and tagged
    out.push(named("ünïcødé/名前"));
    out.push(named("back\\slash\ttab"));
    out.push(named("attn[0]{a,b}").ctx(Some(7), None, Some("glob chars")));
    out.push(named("with space, comma"));
    // Names that sanitize alike: the later ones get a tag of blake3(raw name).
    out.push(named("x/y"));
    out.push(named("x_y"));
    out.push(named("x\\y"));
    out.push(named("x/y").ctx(Some(1), None, None));
    out.push(named("x_y").ctx(Some(1), None, None));
    // A repetition's file name taken by another name: `r.1` holds `r.1.trace` first.
    out.push(named("r"));
    out.push(named("r.1"));
    out.push(named("r"));
    // Raw values of colliding names: the `.npy` follows the record's (tagged) stem.
    out.push(named("v/w").values());
    out.push(named("v_w").values());
    // Context: large and negative values, a stage that needs escaping.
    out.push(named("ctx/full").ctx(Some(1 << 40), Some(-1), Some("\"stage\"\t✓")));
    out.push(named("ctx/layer").ctx(None, Some(-7), None));
    out.push(named("ctx/seq").ctx(Some(0), None, None));
    // Values by occurrence (VALUES_AT): the 2nd and 4th of four, and a name holding `@`.
    for _ in 0..4 {
        out.push(named("sel/h").ctx(Some(0), Some(0), Some("h")));
    }
    out.push(named("user@host"));
    out
}

/// Whether each case gets its raw values saved: flagged by name, or selected by [`VALUES_AT`].
fn saved_values(cases: &[Case]) -> Vec<bool> {
    let at = ValuesAt::parse(VALUES_AT, "VALUES_AT").expect("VALUES_AT parses");
    let mut seen = std::collections::HashMap::new();
    let mut by_occurrence = 0;
    let saved = cases
        .iter()
        .map(|c| {
            let occurrence = seen.entry(c.name.as_str()).or_insert(0u64);
            let selected = at.selects(&c.name, *occurrence);
            *occurrence += 1;
            by_occurrence += usize::from(selected && !c.values);
            c.values || selected
        })
        .collect();
    assert_eq!(
        by_occurrence, VALUES_AT_RECORDS,
        "VALUES_AT selects {by_occurrence} records beyond the values filter"
    );
    saved
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden")
}

/// The values filter: exactly the names flagged, as literal globs.
fn values_filter(cases: &[Case]) -> String {
    let mut names = BTreeSet::new();
    for c in cases.iter().filter(|c| c.values) {
        assert!(
            !c.name.contains(GLOB_SPECIAL)
                && !c.name.starts_with('!')
                && c.name.trim() == c.name
                && !c.name.is_empty(),
            "{:?} cannot be a literal glob; flag another name for values",
            c.name
        );
        names.insert(c.name.as_str());
    }
    for c in cases {
        assert_eq!(
            c.values,
            names.contains(c.name.as_str()),
            "{:?}: the values flag must be the same on every record of a name",
            c.name
        );
    }
    names.into_iter().collect::<Vec<_>>().join(",")
}

fn inputs_json(cases: &[Case]) -> String {
    let saved = saved_values(cases);
    let inputs = Inputs {
        format: 1,
        values: values_filter(cases),
        values_at: VALUES_AT,
        tensors: cases
            .iter()
            .zip(saved)
            .map(|(c, values)| Input {
                name: c.name.clone(),
                dtype: c.elements.data().dtype().name(),
                shape: c.shape.clone(),
                data: c
                    .elements
                    .le_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                values,
                seq: c.seq,
                layer: c.layer,
                stage: c.stage.clone(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&inputs).expect("inputs serialize");
    text.push('\n');
    text
}

/// Captures every case into `dir` (which must not exist or be empty).
fn write_expected(cases: &[Case], dir: &Path) {
    write_layout(cases, dir, Layout::Files);
}

/// Captures every case into `dir` in `layout`.
fn write_layout(cases: &[Case], dir: &Path, layout: Layout) {
    let tracer = Tracer::builder()
        .dir(dir)
        .layout(layout)
        .values(&values_filter(cases))
        .values_at(VALUES_AT)
        .build()
        .expect("tracer builds");
    for c in cases {
        let ctx = Context {
            seq: c.seq,
            layer: c.layer,
            stage: c.stage.as_deref(),
        };
        let view = TensorView::new(&c.shape, c.elements.data()).expect("shape matches");
        assert!(tracer.record(&c.name, &ctx, view).expect("record"));
    }
    tracer.flush().expect("flush");
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn golden_vectors_match_the_committed_files() {
    let cases = cases();
    let golden = golden_dir();
    let inputs = inputs_json(&cases);
    assert!(
        inputs.len() < 400 * 1024,
        "inputs.json grew to {} bytes",
        inputs.len()
    );

    if std::env::var_os("TENSOR_TRACE_BLESS").is_some_and(|v| v == "1") {
        for (sub, layout) in [
            ("expected", Layout::Files),
            ("expected-packed", Layout::Packed),
        ] {
            let expected = golden.join(sub);
            if expected.exists() {
                fs::remove_dir_all(&expected).expect("remove the old expected dir");
            }
            write_layout(&cases, &expected, layout);
        }
        fs::create_dir_all(&golden).expect("create testdata/golden");
        fs::write(golden.join("inputs.json"), &inputs).expect("write inputs.json");
        eprintln!("blessed {}", golden.display());
        return;
    }

    let committed = fs::read_to_string(golden.join("inputs.json")).unwrap_or_else(|e| {
        panic!(
            "read {}/inputs.json: {e} (generate it with TENSOR_TRACE_BLESS=1)",
            golden.display()
        )
    });
    assert!(
        committed == inputs,
        "testdata/golden/inputs.json differs from the inputs generated by this test; \
         rerun with TENSOR_TRACE_BLESS=1 if the change is intended"
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let fresh = tmp.path().join("trace");
    write_expected(&cases, &fresh);
    // Values were saved for exactly the records flagged (by name or by occurrence).
    let manifest = fs::read_to_string(fresh.join("manifest.jsonl")).expect("manifest");
    let with_values: Vec<bool> = manifest
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("manifest line");
            v.get("values").is_some()
        })
        .collect();
    assert_eq!(with_values, saved_values(&cases));
    assert_same_files(&golden.join("expected"), &fresh);

    let packed = tmp.path().join("packed");
    write_layout(&cases, &packed, Layout::Packed);
    assert_same_files(&golden.join("expected-packed"), &packed);
    // The packed log holds the same records as the `.trace` files, line by line in index order.
    let log = fs::read_to_string(packed.join("records.jsonl")).expect("records.jsonl");
    let entries: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log.lines().count(), entries.len());
    for (line, entry) in log.lines().zip(&entries) {
        let from_log: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = entry["file"].as_str().unwrap();
        let text = fs::read_to_string(fresh.join(file)).unwrap();
        let from_file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(from_log, from_file, "{file}");
    }
}

/// Demands the same file names in both directories and byte-identical files.
fn assert_same_files(expected: &Path, fresh: &Path) {
    let (want, got) = (file_names(expected), file_names(fresh));
    assert_eq!(
        want,
        got,
        "file sets differ: missing {:?}, unexpected {:?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );
    for name in &want {
        let (a, b) = (
            fs::read(expected.join(name)).unwrap(),
            fs::read(fresh.join(name)).unwrap(),
        );
        assert!(
            a == b,
            "{name} differs from the committed golden file\n--- committed\n{}\n--- written now\n{}",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
}

#[test]
fn golden_names_cover_what_the_brief_asks() {
    let cases = cases();
    let dtypes: std::collections::HashSet<_> =
        cases.iter().map(|c| c.elements.data().dtype()).collect();
    assert_eq!(dtypes.len(), trace_core::DType::ALL.len(), "every dtype");
    assert!(cases.iter().any(|c| c.shape.is_empty()), "a 0-d tensor");
    assert!(
        cases.iter().any(|c| c.shape.contains(&0)),
        "an empty tensor"
    );
    assert!(
        cases.iter().any(|c| c.elements.data().len() > 2 * 4096),
        "several statistics blocks"
    );
    assert!(cases.iter().any(|c| c.name.len() > 200), "a long name");
    values_filter(&cases);
    saved_values(&cases);
}
