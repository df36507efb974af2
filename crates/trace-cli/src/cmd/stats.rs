//! `tensor-trace stats`: a summary of a run.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use trace_core::run::Run;

use crate::output::{num, print};

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// Summarize a run: records, names, decode steps, size on disk, NaN/Inf, largest magnitudes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  tensor-trace stats /tmp/rust-traces")]
pub struct Args {
    /// Trace directory.
    dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// How many of the largest magnitudes to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// The figures `stats` prints (and `record` summarizes in one line).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Directory summarized.
    pub dir: PathBuf,
    /// Readable records.
    pub records: usize,
    /// Distinct tensor names.
    pub names: usize,
    /// Distinct `seq` values (prefill counts as one).
    pub steps: usize,
    /// Bytes of every file in the directory.
    pub bytes_on_disk: u64,
    /// Records that could not be read.
    pub problems: usize,
    /// Records with a NaN or an Inf: (index, name, nan_count, inf_count).
    pub non_finite: Vec<NonFinite>,
    /// Records with the largest finite magnitude, largest first.
    pub largest: Vec<Magnitude>,
}

/// A record holding NaN or Inf.
#[derive(Debug, Serialize)]
pub struct NonFinite {
    /// Position in capture order.
    pub position: usize,
    /// Tensor name.
    pub name: String,
    /// NaN count.
    pub nan_count: u64,
    /// Inf count.
    pub inf_count: u64,
}

/// A record's largest finite magnitude.
#[derive(Debug, Serialize)]
pub struct Magnitude {
    /// Position in capture order.
    pub position: usize,
    /// Tensor name.
    pub name: String,
    /// max(|min|, |max|) over the finite values.
    pub max_abs: f64,
}

impl Summary {
    /// Computes the summary of `run` (reads file sizes from disk).
    pub fn of(run: &Run) -> Result<Summary> {
        let records = run.records();
        let names: BTreeSet<&str> = records.iter().map(|r| r.record.name.as_str()).collect();
        let steps: BTreeSet<u64> = records.iter().filter_map(|r| r.record.seq).collect();
        let mut bytes_on_disk = 0;
        for entry in std::fs::read_dir(run.dir())
            .with_context(|| format!("listing {}", run.dir().display()))?
        {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                bytes_on_disk += meta.len();
            }
        }
        let non_finite = trace_core::check::non_finite(run)
            .into_iter()
            .map(|f| NonFinite {
                position: f.position,
                name: f.name,
                nan_count: f.nan_count,
                inf_count: f.inf_count,
            })
            .collect();
        let mut largest = Vec::new();
        for (position, r) in records.iter().enumerate() {
            let Some(stats) = &r.record.stats else {
                continue;
            };
            if let (Some(min), Some(max)) = (stats.min, stats.max) {
                largest.push(Magnitude {
                    position,
                    name: r.record.name.clone(),
                    max_abs: min.abs().max(max.abs()),
                });
            }
        }
        largest.sort_by(|a, b| {
            b.max_abs
                .total_cmp(&a.max_abs)
                .then(a.position.cmp(&b.position))
        });
        Ok(Summary {
            dir: run.dir().to_owned(),
            records: records.len(),
            names: names.len(),
            steps: steps.len(),
            bytes_on_disk,
            problems: run.problems().len(),
            non_finite,
            largest,
        })
    }

    /// `N records (M names, S steps), X KiB in DIR` plus NaN/Inf and problems when present.
    pub fn one_line(&self) -> String {
        let mut s = format!(
            "{} records ({} names, {} steps), {} in {}",
            self.records,
            self.names,
            self.steps,
            human_bytes(self.bytes_on_disk),
            self.dir.display()
        );
        if !self.non_finite.is_empty() {
            let _ = write!(s, "; {} with NaN/Inf", self.non_finite.len());
        }
        if self.problems > 0 {
            let _ = write!(s, "; {} unreadable", self.problems);
        }
        s
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub fn run(args: Args) -> Result<u8> {
    let run = crate::cmd::open_run(&args.dir, false)?;
    let mut summary = Summary::of(&run)?;
    summary.largest.truncate(args.top);
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
        Format::Text => {
            let mut s = String::new();
            let _ = writeln!(s, "directory      {}", summary.dir.display());
            let _ = writeln!(s, "order          {}", run.order().name());
            let _ = writeln!(s, "records        {}", summary.records);
            let _ = writeln!(s, "names          {}", summary.names);
            let _ = writeln!(s, "steps          {}", summary.steps);
            let _ = writeln!(s, "size on disk   {}", human_bytes(summary.bytes_on_disk));
            let _ = writeln!(s, "unreadable     {}", summary.problems);
            let _ = writeln!(s, "NaN/Inf        {} records", summary.non_finite.len());
            for nf in &summary.non_finite {
                let _ = writeln!(
                    s,
                    "  #{:<6} {}  nan={} inf={}",
                    nf.position, nf.name, nf.nan_count, nf.inf_count
                );
            }
            let _ = writeln!(s, "largest |x|");
            for m in &summary.largest {
                let _ = writeln!(
                    s,
                    "  #{:<6} {}  {}",
                    m.position,
                    m.name,
                    num(Some(m.max_abs))
                );
            }
            s
        }
    };
    print(&text)?;
    Ok(0)
}
