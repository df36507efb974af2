//! `tensor-trace gguf`: inspect a GGUF model file, or write an F32 copy of a quantized one
//! (the float baseline a quantized engine is judged against).

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Value as Json};
use trace_cli::gguf::{self, type_name, value_type_name, Header, Value};

use crate::output::print;

/// Inspect GGUF model files or dequantize them to F32.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  tensor-trace gguf info model.gguf\n  \
                  tensor-trace gguf dequantize model-q4_1.gguf model-f32.gguf")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write IN as OUT with every tensor F32 (metadata and alignment kept, file type F32).
    #[command(
        after_help = "Example:\n  tensor-trace gguf dequantize model-q4_1.gguf model-f32.gguf\n\n\
                      Types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K. Tensors \
                      are streamed in chunks; OUT is written to a temporary file and renamed."
    )]
    Dequantize {
        /// The GGUF file to read.
        input: PathBuf,
        /// The F32 GGUF file to write (never the input).
        output: PathBuf,
    },
    /// Print a GGUF file's version, metadata (arrays abbreviated) and tensors.
    #[command(
        after_help = "Example:\n  tensor-trace gguf info model.gguf --json | jq '.tensors[0]'\n\n\
                      Shapes are in GGML order, the fastest-varying dimension first."
    )]
    Info {
        /// The GGUF file.
        file: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Array elements shown by `info`.
const ARRAY_HEAD: usize = 8;

/// Runs the subcommand.
pub fn run(args: Args) -> Result<u8> {
    match args.command {
        Command::Dequantize { input, output } => {
            let done = gguf::dequantize(&input, &output)?;
            print(&format!(
                "{}: {} tensors as F32 ({} converted), {} bytes\n",
                output.display(),
                done.tensors,
                done.converted,
                done.bytes
            ))?;
            Ok(0)
        }
        Command::Info { file, json } => {
            let header = gguf::read_header(&file)?;
            if json {
                print(&(serde_json::to_string_pretty(&info_json(&header))? + "\n"))?;
            } else {
                print(&info_text(&file, &header))?;
            }
            Ok(0)
        }
    }
}

fn info_text(file: &std::path::Path, h: &Header) -> String {
    let mut s = format!(
        "{}: GGUF v{}, {} metadata keys, {} tensors, alignment {}, tensor data at byte {}\n",
        file.display(),
        h.version,
        h.metadata.len(),
        h.tensors.len(),
        h.alignment,
        h.data_offset
    );
    s.push_str("\nmetadata:\n");
    for (key, value) in &h.metadata {
        let _ = writeln!(s, "  {key} = {}", value_text(value));
    }
    s.push_str("\ntensors (name, type, shape, data offset):\n");
    let shapes: Vec<String> = h
        .tensors
        .iter()
        .map(|t| {
            let dims: Vec<String> = t.dims.iter().map(u64::to_string).collect();
            format!("[{}]", dims.join(", "))
        })
        .collect();
    let name_width = h.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let shape_width = shapes.iter().map(String::len).max().unwrap_or(0);
    for (t, shape) in h.tensors.iter().zip(&shapes) {
        let _ = writeln!(
            s,
            "  {:name_width$}  {:7}  {shape:shape_width$}  {}",
            t.name,
            type_name(t.type_id),
            t.offset
        );
    }
    s
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        Value::Array(elem_type, items) => {
            let head: Vec<String> = items.iter().take(ARRAY_HEAD).map(value_text).collect();
            let more = if items.len() > ARRAY_HEAD {
                ", ..."
            } else {
                ""
            };
            format!(
                "[{}; {}] [{}{more}]",
                value_type_name(*elem_type),
                items.len(),
                head.join(", ")
            )
        }
        // f32 printed as f32 (1e-5), not widened to f64 (9.999999747378752e-6).
        Value::F32(v) => v.to_string(),
        other => scalar_json(other).to_string(),
    }
}

fn info_json(h: &Header) -> Json {
    let metadata: serde_json::Map<String, Json> = h
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect();
    let tensors: Vec<Json> = h
        .tensors
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": type_name(t.type_id),
                "type_id": t.type_id,
                "shape": t.dims,
                "offset": t.offset,
            })
        })
        .collect();
    json!({
        "version": h.version,
        "alignment": h.alignment,
        "data_offset": h.data_offset,
        "metadata": metadata,
        "tensors": tensors,
    })
}

/// Scalars as JSON values; arrays as `{"type", "len", "head"}` with the first elements.
fn value_json(value: &Value) -> Json {
    match value {
        Value::Array(elem_type, items) => json!({
            "type": value_type_name(*elem_type),
            "len": items.len(),
            "head": items.iter().take(ARRAY_HEAD).map(value_json).collect::<Vec<_>>(),
        }),
        other => scalar_json(other),
    }
}

fn scalar_json(value: &Value) -> Json {
    match *value {
        Value::U8(v) => v.into(),
        Value::I8(v) => v.into(),
        Value::U16(v) => v.into(),
        Value::I16(v) => v.into(),
        Value::U32(v) => v.into(),
        Value::I32(v) => v.into(),
        Value::U64(v) => v.into(),
        Value::I64(v) => v.into(),
        Value::F32(v) => v.into(),
        Value::F64(v) => v.into(),
        Value::Bool(v) => v.into(),
        Value::String(ref bytes) => String::from_utf8_lossy(bytes).into(),
        Value::Array(..) => value_json(value),
    }
}
