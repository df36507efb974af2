//! Embeds sentences with all-MiniLM-L6-v2 and prints their cosine similarities.
//!
//! ```text
//! cargo run -p minilm --release --example embed -- MODEL_DIR "first sentence" "second" ...
//! ```
//!
//! `MODEL_DIR` holds `config.json`, `model.safetensors` and `tokenizer.json` (`cargo xtask
//! crossval --model minilm` extracts them to `target/crossval-minilm/model`). Set
//! `TENSOR_TRACE_DIR` (and `TENSOR_TRACE_VALUES=*`) to trace the run.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: embed MODEL_DIR SENTENCE [SENTENCE ...]")?;
    let sentences: Vec<String> = args.collect();
    if sentences.is_empty() {
        return Err("usage: embed MODEL_DIR SENTENCE [SENTENCE ...]".into());
    }
    let start = Instant::now();
    let encoder = minilm::Encoder::load(dir.as_ref(), None)?;
    let loaded = start.elapsed();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let embeddings = encoder.embed(&refs, minilm::Trace::Env)?;
    eprintln!(
        "loaded in {:.2}s, embedded {} sentences in {:.2}s",
        loaded.as_secs_f64(),
        refs.len(),
        (start.elapsed() - loaded).as_secs_f64()
    );
    for (i, a) in embeddings.iter().enumerate() {
        let row: Vec<String> = embeddings
            .iter()
            .map(|b| format!("{:.4}", a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()))
            .collect();
        println!("{i}: {}  {:?}", row.join(" "), sentences[i]);
    }
    Ok(())
}
