//! `tensor-trace show`: the records of a run in capture order.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use trace_core::run::RunRecord;

use crate::output::{num, print, shape};

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    Text,
    /// A JSON array of the records (the on-disk record objects, plus `file`).
    Json,
}

/// List the records of a run in capture order.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tensor-trace show /tmp/rust-traces --filter 'blk3/*' --step 0\n  tensor-trace show /tmp/rust-traces --format json | jq '.[0]'"
)]
pub struct Args {
    /// Trace directory.
    dir: PathBuf,
    #[command(flatten)]
    select: crate::cmd::Select,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Treat any unreadable record as an error instead of a warning.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let keep = args.select.predicate()?;
    let run = crate::cmd::open_run(&args.dir, args.strict)?;
    let selected: Vec<&RunRecord> = run.records().iter().filter(|r| keep(r)).collect();
    let text = match args.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = selected
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(&r.record).expect("records serialize");
                    v["file"] = r.file.clone().into();
                    v
                })
                .collect();
            let mut s = serde_json::to_string_pretty(&rows)?;
            s.push('\n');
            s
        }
        Format::Text => table(&selected),
    };
    print(&text)?;
    Ok(0)
}

fn table(records: &[&RunRecord]) -> String {
    let header = [
        "#", "name", "shape", "dtype", "rms", "min", "max", "nan/inf", "blake3", "layer", "step",
    ];
    let rows: Vec<[String; 11]> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rec = &r.record;
            let stats = rec.stats.as_ref();
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            [
                rec.index.map_or_else(|| i.to_string(), |x| x.to_string()),
                rec.name.clone(),
                shape(&rec.shape),
                rec.dtype.clone(),
                num(rec.rms),
                num(stats.and_then(|s| s.min)),
                num(stats.and_then(|s| s.max)),
                opt(stats.map(|s| format!("{}/{}", s.nan_count, s.inf_count))),
                rec.blake3.chars().take(12).collect(),
                opt(rec.layer.map(|l| l.to_string())),
                opt(rec.seq.map(|s| s.to_string())),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(&mut out, &header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    if rows.is_empty() {
        out.push_str("(no records match)\n");
    }
    out
}
