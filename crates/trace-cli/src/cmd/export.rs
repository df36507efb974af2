//! `tensor-trace export`: a run's records as one table, JSON Lines or CSV, streamed.
//!
//! Either layout goes in; what comes out is what analytics engines read without help: the
//! packed log's line format (so a per-file run becomes queryable like a packed one) or CSV with
//! one column per field. Records are read a chunk at a time ([`RunStream`]), so memory does not
//! grow with the run. A line cut short by a crash is reported and left out, which matters for
//! readers that reject it (Polars' `read_ndjson` does, even with `ignore_errors`).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;
use trace_core::run::{RunRecord, RunStream};

use crate::output::write_atomic;

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One compact record per line, the packed log's line format (`docs/FORMAT.md`).
    Jsonl,
    /// A header and one row per record; `stats` flattened, absent values empty.
    Csv,
}

/// Write a run's records as JSON Lines or CSV, in capture order, for DuckDB, Polars, Spark or a
/// spreadsheet. Memory stays flat however long the run.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tensor-trace export run -o run.jsonl\n  tensor-trace export run --format csv --filter 'blk3/*' -o blk3.csv"
)]
pub struct Args {
    /// Trace directory (either layout).
    dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Write to FILE (atomically: a temporary file renamed into place) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    select: crate::cmd::Select,
    /// Treat any unreadable record (a cut-short last line included) as an error.
    #[arg(long)]
    strict: bool,
}

/// One CSV row: the record's fields in file order, `stats` flattened, `occurrence` as the run
/// reader numbers it (also for records that do not carry it).
#[derive(Serialize)]
struct CsvRow<'a> {
    index: Option<u64>,
    name: &'a str,
    occurrence: u64,
    shape: String,
    dtype: &'a str,
    blake3: &'a str,
    rms: Option<f64>,
    num_elements: u64,
    seq: Option<u64>,
    layer: Option<i64>,
    stage: Option<&'a str>,
    rank: Option<u32>,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    std: Option<f64>,
    nan_count: Option<u64>,
    inf_count: Option<u64>,
    values: Option<&'a str>,
}

impl<'a> CsvRow<'a> {
    fn of(r: &'a RunRecord) -> Self {
        let rec = &r.record;
        let stats = rec.stats.as_ref();
        let dims: Vec<String> = rec.shape.iter().map(usize::to_string).collect();
        CsvRow {
            index: rec.index,
            name: &rec.name,
            occurrence: r.occurrence,
            shape: format!("[{}]", dims.join(",")),
            dtype: &rec.dtype,
            blake3: &rec.blake3,
            rms: rec.rms,
            num_elements: rec.num_elements,
            seq: rec.seq,
            layer: rec.layer,
            stage: rec.stage.as_deref(),
            rank: rec.rank,
            min: stats.and_then(|s| s.min),
            max: stats.and_then(|s| s.max),
            mean: stats.and_then(|s| s.mean),
            std: stats.and_then(|s| s.std),
            nan_count: stats.map(|s| s.nan_count),
            inf_count: stats.map(|s| s.inf_count),
            values: r.values.as_deref(),
        }
    }
}

/// Writes the selected records of `stream` to `out` in `format`; returns how many.
fn write_records(
    stream: &mut RunStream,
    keep: &dyn Fn(&RunRecord) -> bool,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut written = 0u64;
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            while let Some(chunk) = stream.next_chunk()? {
                for r in chunk.iter().filter(|r| keep(r)) {
                    w.serialize(CsvRow::of(r))?;
                    written += 1;
                }
            }
            w.flush()?;
        }
        Format::Jsonl => {
            let mut line = Vec::new();
            while let Some(chunk) = stream.next_chunk()? {
                for r in chunk.into_iter().filter(|r| keep(r)) {
                    // The record as the packed layout writes it, with the occurrence the
                    // reader derived and the values file it found.
                    let mut rec = r.record;
                    rec.occurrence = Some(r.occurrence);
                    rec.values = r.values;
                    line.clear();
                    serde_json::to_writer(&mut line, &rec)?;
                    line.push(b'\n');
                    out.write_all(&line)?;
                    written += 1;
                }
            }
        }
    }
    Ok(written)
}

pub fn run(args: Args) -> Result<u8> {
    let keep = args.select.predicate()?;
    let mut stream = crate::cmd::open_stream(&args.dir, args.strict)?;
    let written = match &args.output {
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            let n = write_records(&mut stream, &keep, args.format, &mut out)?;
            out.flush()?;
            n
        }
        Some(path) => write_atomic(path, |out| {
            write_records(&mut stream, &keep, args.format, out)
        })?,
    };
    crate::cmd::warn_about(&args.dir, stream.problems(), stream.order());
    tracing::info!("exported {written} records");
    Ok(0)
}
