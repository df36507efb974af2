//! Embeds sentences with all-MiniLM-L6-v2 and prints their cosine similarities, or the
//! embeddings themselves as JSON.
//!
//! ```text
//! cargo run -p minilm --release --example embed -- [--json] [--max-tokens N] MODEL_DIR "first sentence" "second" ...
//! ```
//!
//! `MODEL_DIR` holds `config.json`, `model.safetensors`, `tokenizer.json` and, for
//! sentence-transformers' truncation length, `sentence_bert_config.json` (`cargo xtask
//! crossval --model minilm` extracts them to `target/crossval-minilm/model`). The sentences
//! are embedded as one padded batch, truncated as `minilm::Encoder::load` decides unless
//! `--max-tokens` says otherwise.
//!
//! `--json` prints one JSON object on stdout: `max_tokens`, `max_tokens_source`, `tokens`
//! (real tokens per sentence) and `embeddings` (one array of floats per sentence, each float
//! the shortest text that reads back as the same f32). Set `TENSOR_TRACE_DIR` (and
//! `TENSOR_TRACE_VALUES=*`) to trace the run. Exit code 0, or 2 with one line on stderr for a
//! usage or input error (a malformed `sentence_bert_config.json` names the file and field).

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

/// What `--json` prints (f32 fields serialize as their shortest round-trip text).
#[derive(Serialize)]
struct JsonOut {
    max_tokens: usize,
    max_tokens_source: String,
    tokens: Vec<usize>,
    embeddings: Vec<Vec<f32>>,
}

const USAGE: &str = "usage: embed [--json] [--max-tokens N] MODEL_DIR SENTENCE [SENTENCE ...]";

/// Exit code 0 on success, 2 on a usage or input error (printed as one readable line).
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut json = false;
    let mut max_tokens = None;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--max-tokens" => {
                let v = args.next().ok_or(USAGE)?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--max-tokens {v:?}: expected an integer >= 2"))?;
                max_tokens = Some(n);
            }
            _ => positional.push(arg),
        }
    }
    if positional.len() < 2 {
        return Err(USAGE.into());
    }
    let dir = positional.remove(0);
    let sentences: Vec<&str> = positional.iter().map(String::as_str).collect();

    let start = Instant::now();
    let encoder = match max_tokens {
        Some(n) => minilm::Encoder::load_with(dir.as_ref(), n, None)?,
        None => minilm::Encoder::load(dir.as_ref(), None)?,
    };
    let loaded = start.elapsed();
    let batch = encoder.tokenizer.encode(&sentences)?;
    let embeddings = encoder.embed(&sentences, minilm::Trace::Env)?;
    eprintln!(
        "loaded in {:.2}s (truncation: {}), embedded {} sentences in {:.2}s",
        loaded.as_secs_f64(),
        encoder.max_tokens,
        sentences.len(),
        (start.elapsed() - loaded).as_secs_f64()
    );
    if json {
        let out = JsonOut {
            max_tokens: encoder.max_tokens.tokens,
            max_tokens_source: encoder.max_tokens.source.to_string(),
            tokens: (0..batch.batch).map(|i| batch.tokens_in(i)).collect(),
            embeddings,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    for (i, a) in embeddings.iter().enumerate() {
        let row: Vec<String> = embeddings
            .iter()
            .map(|b| format!("{:.4}", a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()))
            .collect();
        println!(
            "{i}: {}  {} tokens  {:?}",
            row.join(" "),
            batch.tokens_in(i),
            sentences[i]
        );
    }
    Ok(())
}
