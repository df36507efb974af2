//! Printing helpers: stdout that tolerates a closed pipe, number formatting.

use std::io::{self, Write};

/// Writes `text` to stdout; a closed pipe surfaces as an error `main` turns into a quiet exit.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// A float for tables: `-` when absent, 4 significant digits otherwise.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(0.0) => "0".to_owned(),
        Some(v) if v.abs() >= 1e4 || v.abs() < 1e-3 => format!("{v:.3e}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// A shape as `[1, 2560]`.
pub fn shape(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

pub use trace_diff::cli::write_atomic;
