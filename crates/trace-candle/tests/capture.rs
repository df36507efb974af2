//! For every dtype and layout, the adapter's record equals trace-core's record of the same
//! values handed over as one row-major slice.

use candle_core::{DType, Device, IndexOp, Tensor};
use half::{bf16, f16};
use proptest::prelude::*;
use trace_candle::{fingerprint_tensor, record, Context};
use trace_core::{fingerprint, Data, TensorView, TraceRecord, Tracer};

/// A tensor's row-major values as an owned buffer of its own dtype (through candle's own copy,
/// which the adapter must never need).
enum Owned {
    U8(Vec<u8>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Owned {
    fn of(t: &Tensor) -> Owned {
        let flat = t.flatten_all().unwrap();
        match t.dtype() {
            DType::U8 => Owned::U8(flat.to_vec1().unwrap()),
            DType::U32 => Owned::U32(flat.to_vec1().unwrap()),
            DType::I32 => Owned::I32(flat.to_vec1().unwrap()),
            DType::I64 => Owned::I64(flat.to_vec1().unwrap()),
            DType::BF16 => Owned::BF16(flat.to_vec1().unwrap()),
            DType::F16 => Owned::F16(flat.to_vec1().unwrap()),
            DType::F32 => Owned::F32(flat.to_vec1().unwrap()),
            DType::F64 => Owned::F64(flat.to_vec1().unwrap()),
            other => panic!("no trace-core dtype for {other:?}"),
        }
    }

    fn data(&self) -> Data<'_> {
        match self {
            Owned::U8(v) => Data::U8(v),
            Owned::U32(v) => Data::U32(v),
            Owned::I32(v) => Data::I32(v),
            Owned::I64(v) => Data::I64(v),
            Owned::BF16(v) => Data::BF16(v),
            Owned::F16(v) => Data::F16(v),
            Owned::F32(v) => Data::F32(v),
            Owned::F64(v) => Data::F64(v),
        }
    }
}

/// The record (and saved values) the adapter writes, and the one trace-core writes for the
/// same values as a slice, with the same name and context.
fn both(t: &Tensor) -> [(TraceRecord, Option<Vec<f32>>); 2] {
    let ctx = Context::default().seq(2).layer(-1).stage("probe");
    let adapter = Tracer::builder().values("*").build().unwrap();
    assert!(record(&adapter, "x", &ctx, t).unwrap());
    let core = Tracer::builder().values("*").build().unwrap();
    let owned = Owned::of(t);
    let view = TensorView::new(t.dims(), owned.data()).unwrap();
    core.record("x", &ctx, view).unwrap();
    let mut a = adapter.records_with_values();
    let mut c = core.records_with_values();
    assert_eq!((a.len(), c.len()), (1, 1));
    [a.remove(0), c.remove(0)]
}

/// The adapter's record of `t` equals trace-core's record of its values, field for field.
fn check(what: &str, t: &Tensor) {
    let [(ra, va), (rc, vc)] = both(t);
    let (d, s, st) = (t.dtype(), t.dims(), t.stride());
    assert_eq!(ra, rc, "{what}: dtype {d:?} shape {s:?} stride {st:?}");
    assert_eq!(va, vc, "{what}: values");
    let owned = Owned::of(t);
    assert_eq!(fingerprint_tensor(t).unwrap(), fingerprint(owned.data()));
}

/// A `[rows, cols]` tensor of `dtype` with distinct, exactly representable values, some
/// negative (for the signed and float types).
fn matrix(dtype: DType, rows: usize, cols: usize) -> Tensor {
    let n = rows * cols;
    let signed = !matches!(dtype, DType::U8 | DType::U32);
    let values: Vec<f64> = (0..n)
        .map(|i| {
            let v = (i % 200) as f64;
            if signed && i % 3 == 0 {
                -v / 4.0
            } else {
                v / 4.0
            }
        })
        .collect();
    let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
    let t = if dtype.is_int() {
        t.round().unwrap()
    } else {
        t
    };
    t.to_dtype(dtype).unwrap()
}

const DTYPES: [DType; 8] = [
    DType::U8,
    DType::U32,
    DType::I32,
    DType::I64,
    DType::BF16,
    DType::F16,
    DType::F32,
    DType::F64,
];

#[test]
fn every_dtype_and_layout_matches_trace_core() {
    for dtype in DTYPES {
        let m = matrix(dtype, 24, 40);
        let cube = m.reshape((4, 6, 40)).unwrap();
        let layouts: Vec<(&str, Tensor)> = vec![
            ("contiguous", m.clone()),
            ("transposed", m.t().unwrap()),
            ("row slice", m.narrow(0, 3, 10).unwrap()),
            ("column slice", m.narrow(1, 5, 17).unwrap()),
            ("transposed slice", m.t().unwrap().narrow(0, 2, 9).unwrap()),
            ("permuted 3-d", cube.permute((2, 0, 1)).unwrap()),
            ("3-d inner transpose", cube.transpose(1, 2).unwrap()),
            (
                "broadcast rows",
                m.i(0).unwrap().broadcast_as((5, 40)).unwrap(),
            ),
            (
                "broadcast last dim",
                m.narrow(1, 0, 1).unwrap().broadcast_as((24, 7)).unwrap(),
            ),
            ("strided 1-d", m.i((.., 3)).unwrap()),
            ("0-d", m.i((2, 3)).unwrap()),
            ("empty", m.narrow(0, 0, 0).unwrap()),
            ("empty transposed", m.narrow(1, 0, 0).unwrap().t().unwrap()),
        ];
        for (what, t) in layouts {
            check(what, &t);
        }
    }
}

#[test]
fn zero_dim_tensor_records_one_element() {
    let t = Tensor::new(3.5f32, &Device::Cpu).unwrap();
    let [(r, _), _] = both(&t);
    assert_eq!((r.shape.as_slice(), r.num_elements), (&[][..], 1));
    assert_eq!(r.rms, Some(3.5));
}

#[test]
fn large_transposed_tensor_crosses_chunks() {
    let m = matrix(DType::F32, 700, 900);
    check("F32 transposed", &m.t().unwrap());
    let b = matrix(DType::BF16, 600, 700);
    check("BF16 transposed", &b.t().unwrap());
}

#[test]
fn unsupported_dtypes_are_clear_errors() {
    let t = Tensor::new(&[1i16, -2], &Device::Cpu).unwrap();
    let tracer = Tracer::in_memory();
    let err = record(&tracer, "x", &Context::default(), &t)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("I16") && err.contains("trace-core has no such dtype"),
        "{err}"
    );
    assert!(tracer.records().is_empty());
}

#[test]
fn filtered_names_are_skipped() {
    let tracer = Tracer::builder().filter("blk*").build().unwrap();
    let t = matrix(DType::F32, 2, 2);
    assert!(!record(&tracer, "logits", &Context::default(), &t).unwrap());
    assert!(record(&tracer, "blk0/q", &Context::default(), &t).unwrap());
    assert_eq!(tracer.records().len(), 1);
}

#[test]
fn directory_tracer_writes_the_seed_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let tracer = Tracer::builder()
        .dir(dir.path())
        .layout(trace_core::Layout::Files)
        .build()
        .unwrap();
    let t = matrix(DType::BF16, 3, 5).t().unwrap();
    record(&tracer, "blk0/attn_norm", &Context::default(), &t).unwrap();
    let text = std::fs::read_to_string(dir.path().join("blk0_attn_norm.trace")).unwrap();
    let r: TraceRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (r.dtype.as_str(), r.shape.as_slice()),
        ("BF16", &[5, 3][..])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any permutation and narrowing of a random 3-d tensor, F32 and BF16.
    #[test]
    fn random_views_match(
        dims in (1usize..7, 1usize..9, 1usize..11),
        perm in prop::sample::select(vec![(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]),
        start in 0usize..3,
        bf in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (a, b, c) = dims;
        let n = a * b * c;
        let mut s = seed | 1;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 100.0 - 10.0
            })
            .collect();
        let t = Tensor::from_vec(values, (a, b, c), &Device::Cpu).unwrap();
        let t = if bf { t.to_dtype(DType::BF16).unwrap() } else { t };
        let t = t.permute(perm).unwrap();
        let d0 = t.dims()[0];
        let start = start.min(d0 - 1);
        let t = t.narrow(0, start, d0 - start).unwrap();
        check("random view", &t);
    }
}

#[test]
fn global_dump_trace_writes_when_the_environment_says_so() {
    // The only test of this binary that touches the global tracer, which reads the environment
    // once, on first use.
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("TENSOR_TRACE_DIR", dir.path());
    let t = matrix(DType::F32, 4, 3);
    trace_candle::dump_trace("layer_output", &t.t().unwrap()).unwrap();
    let ctx = Context::default().seq(1).layer(0).stage("q_proj");
    trace_candle::dump_trace_with("blk0/q", &ctx, &t).unwrap();
    trace_core::flush().unwrap();
    // `TENSOR_TRACE_DIR` alone: the default, packed layout.
    let run = trace_core::run::Run::open(dir.path()).unwrap();
    assert_eq!(run.order(), trace_core::run::RunOrder::Packed);
    let read = |name: &str| -> TraceRecord {
        let found = run.records().iter().find(|r| r.record.name == name);
        found.unwrap().record.clone()
    };
    assert_eq!(read("layer_output").shape, vec![3, 4]);
    let q = read("blk0/q");
    assert_eq!(
        (q.seq, q.layer, q.stage.as_deref()),
        (Some(1), Some(0), Some("q_proj"))
    );
}
