//! Shared helpers: a tiny deterministic "model" traced with the real trace-core writer.
//!
//! The model uses only `+`, `*` and `/` so its values are bit-for-bit the same on every
//! platform (no libm), which keeps the snapshots stable.

use std::path::{Path, PathBuf};

use half::bf16;
use trace_core::{Context, TensorView, Tracer};

/// Hidden width, vocabulary, layers and steps of the toy model.
pub const DIM: usize = 8;
pub const VOCAB: usize = 16;
pub const LAYERS: usize = 3;
pub const STEPS: u64 = 2;

/// Precision the toy model computes and records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prec {
    F32,
    F64,
    BF16,
}

/// An optional fault: add `delta` to element `index` of `blk{layer}/q` in step `seq`.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub seq: u64,
    pub layer: usize,
    pub index: usize,
    pub delta: f64,
}

/// How to write a run.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub prec: Prec,
    pub values: bool,
    pub fault: Option<Fault>,
    /// Hugging Face style names (`model.layers.N.self_attn.q_proj`) instead of `blkN/q`.
    pub hf_names: bool,
    /// Sum the dot products in reverse order: another correct engine, whose rounding differs
    /// from the forward order's in the same precision.
    pub reversed: bool,
    /// Records carry value sketches (trace-core's default).
    pub sketch: bool,
}

impl Spec {
    pub fn new(prec: Prec) -> Self {
        Spec {
            prec,
            values: false,
            fault: None,
            hf_names: false,
            reversed: false,
            sketch: true,
        }
    }

    /// Records without value sketches (`TENSOR_TRACE_SKETCH=0`): judged on statistics.
    pub fn no_sketch(mut self) -> Self {
        self.sketch = false;
        self
    }

    pub fn values(mut self) -> Self {
        self.values = true;
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    pub fn hf_names(mut self) -> Self {
        self.hf_names = true;
        self
    }

    pub fn reversed(mut self) -> Self {
        self.reversed = true;
        self
    }
}

/// A deterministic pseudo-random weight in [-0.5, 0.5).
fn weight(a: usize, b: usize, c: usize) -> f64 {
    let h = (a * 7919 + b * 104_729 + c * 1_299_709 + 17) % 1000;
    h as f64 / 1000.0 - 0.5
}

fn round(x: f64, prec: Prec) -> f64 {
    match prec {
        Prec::F64 => x,
        Prec::F32 => x as f32 as f64,
        Prec::BF16 => bf16::from_f64(x).to_f64(),
    }
}

fn record(tracer: &Tracer, name: &str, ctx: Context<'_>, shape: &[usize], v: &[f64], prec: Prec) {
    let written = match prec {
        Prec::F64 => tracer.record(name, &ctx, TensorView::new(shape, v).unwrap()),
        Prec::F32 => {
            let d: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            tracer.record(name, &ctx, TensorView::new(shape, &d).unwrap())
        }
        Prec::BF16 => {
            let d: Vec<bf16> = v.iter().map(|&x| bf16::from_f64(x)).collect();
            tracer.record(name, &ctx, TensorView::new(shape, &d).unwrap())
        }
    };
    assert!(written.unwrap(), "{name} was filtered out");
}

/// `sum_j round(w(j) * x_j)` rounded after each step, forward or reversed.
fn dot(x: &[f64], w: impl Fn(usize) -> f64, p: Prec, reversed: bool) -> f64 {
    let step = |acc: f64, j: usize| round(acc + round(w(j) * x[j], p), p);
    if reversed {
        (0..x.len()).rev().fold(0.0, step)
    } else {
        (0..x.len()).fold(0.0, step)
    }
}

/// Runs the toy model and traces it into `dir`.
pub fn write_run(dir: &Path, spec: Spec) {
    let mut builder = Tracer::builder().dir(dir);
    if spec.values {
        builder = builder.values("*");
    }
    if !spec.sketch {
        builder = builder.sketch(0);
    }
    let tracer = builder.build().unwrap();
    let p = spec.prec;
    for seq in 0..STEPS {
        let ctx =
            |layer: i64, stage: &'static str| Context::default().seq(seq).layer(layer).stage(stage);
        let mut h: Vec<f64> = (0..DIM)
            .map(|i| round(weight(i, seq as usize, 0) * 2.0, p))
            .collect();
        record(&tracer, "embed", ctx(-1, "embed"), &[1, DIM], &h, p);
        for layer in 0..LAYERS {
            let mut q: Vec<f64> = (0..DIM)
                .map(|i| dot(&h, |j| weight(layer + 1, i, j), p, spec.reversed))
                .collect();
            if let Some(f) = spec.fault.filter(|f| f.seq == seq && f.layer == layer) {
                q[f.index] = round(q[f.index] + f.delta, p);
            }
            let (q_name, out_name) = if spec.hf_names {
                (
                    format!("model.layers.{layer}.self_attn.q_proj"),
                    format!("model.layers.{layer}.output"),
                )
            } else {
                (format!("blk{layer}/q"), format!("blk{layer}/out"))
            };
            record(&tracer, &q_name, ctx(layer as i64, "q"), &[1, DIM], &q, p);
            // Softsign keeps the activations bounded without libm.
            h = q
                .iter()
                .zip(&h)
                .map(|(&x, &r)| round(round(x / (1.0 + x.abs()), p) + r, p))
                .collect();
            record(
                &tracer,
                &out_name,
                ctx(layer as i64, "out"),
                &[1, DIM],
                &h,
                p,
            );
        }
        let logits: Vec<f64> = (0..VOCAB)
            .map(|v| dot(&h, |j| weight(99, v, j) * 4.0, p, spec.reversed))
            .collect();
        record(
            &tracer,
            "logits",
            ctx(-1, "logits"),
            &[1, VOCAB],
            &logits,
            p,
        );
    }
    tracer.flush().unwrap();
}

/// Three runs in a fresh temp directory, as `(tmp, a, b, c)`: A under test, B the reference,
/// C the baseline.
pub fn three_runs(a: Spec, b: Spec, c: Spec) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let (tmp, da, db) = two_runs(a, b);
    let dc = tmp.path().join("c");
    write_run(&dc, c);
    (tmp, da, db, dc)
}

/// Two runs in a fresh temp directory, as `(tmp, a, b)`.
pub fn two_runs(a: Spec, b: Spec) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&da, a);
    write_run(&db, b);
    (tmp, da, db)
}

/// The committed fixtures directory.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Replaces a temp directory in a rendered report so snapshots are stable.
pub fn redact(text: &str, tmp: &Path) -> String {
    text.replace(&tmp.display().to_string(), "[TMP]")
}

/// Copies a run directory (flat) so a test can corrupt the copy.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Writes a little-endian F32 `.npy` of any shape (so a fixture can contradict its record).
pub fn write_f32_npy(path: &Path, shape: &[usize], values: &[f32]) {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .begin_nd()
        .unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
}

/// The error profile's plot in a parsed HTML report (the `<svg>` of `#profile`).
pub fn profile_plot<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> roxmltree::Node<'a, 'i> {
    doc.descendants()
        .find(|n| n.attribute("id") == Some("profile"))
        .expect("a #profile section")
        .descendants()
        .find(|n| n.has_tag_name("svg"))
        .expect("an inline svg plot")
}
