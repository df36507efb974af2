//! `tensor-trace events`: render an event history.

use std::path::PathBuf;

use anyhow::{Context, Result};
use trace_events::{render, TraceDocument};

use crate::output::{print, write_atomic};

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Per step and layer, with a summary of errors and hints.
    Text,
    /// The history itself, in our format (a realizar history keeps `"producer": "realizar"`).
    Json,
    /// Chrome trace event format: open it in Perfetto (ui.perfetto.dev) or chrome://tracing.
    Chrome,
}

/// Render an event history (ours or realizar's `--trace-output` JSON) as text, JSON or a Chrome
/// trace.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tensor-trace events events.json\n  tensor-trace events events.json --format chrome --output trace.json   # open in Perfetto"
)]
pub struct Args {
    /// Event history JSON file.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Show tensor statistics and details in the text view.
    #[arg(long)]
    verbose_events: bool,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<u8> {
    let doc = TraceDocument::read(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let text = match args.format {
        Format::Text => render::text(&doc, args.verbose_events),
        Format::Json => doc.to_json(),
        Format::Chrome => render::chrome(&doc),
    };
    match &args.output {
        Some(path) => write_atomic(path, |out| Ok(out.write_all(text.as_bytes())?))?,
        None => print(&text)?,
    }
    Ok(0)
}
