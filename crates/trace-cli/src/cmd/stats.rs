//! `tensor-trace stats`: a summary of a run.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use trace_core::check::NonFiniteScan;

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
    /// How many of the largest magnitudes, and of the records with NaN/Inf, to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// The figures `stats` prints (and `record` summarizes in one line).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Directory summarized.
    pub dir: PathBuf,
    /// Where the record order comes from (`packed`, `manifest`, ...; see `trace_core::run`).
    pub order: &'static str,
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
    /// Records with a NaN or an Inf.
    pub non_finite_records: usize,
    /// The first `--top` of them, in capture order.
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

/// A candidate for the largest magnitudes: greater is a larger magnitude, then an earlier record.
#[derive(Debug)]
struct Ranked {
    max_abs: f64,
    position: usize,
    name: String,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.max_abs
            .total_cmp(&other.max_abs)
            .then(other.position.cmp(&self.position))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl Summary {
    /// Reads the run in `dir` a chunk at a time (memory grows with its distinct names and
    /// steps, not with its records) and summarizes it, listing the first `top` NaN/Inf records
    /// and the `top` largest magnitudes. Read problems are printed as warnings.
    pub fn read(dir: &Path, top: usize) -> Result<Summary> {
        let mut stream = crate::cmd::open_stream(dir, false)?;
        let mut names: HashSet<String> = HashSet::new();
        let mut steps: HashSet<u64> = HashSet::new();
        let mut scan = NonFiniteScan::new();
        let (mut non_finite, mut non_finite_records) = (Vec::new(), 0);
        // The `top` largest so far with the smallest of them on top: a bounded top-k, no sort
        // of the whole run.
        let mut largest: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(top + 1);
        while let Some(chunk) = stream.next_chunk()? {
            for r in chunk {
                let position = scan.seen();
                if let Some(f) = scan.push(&r) {
                    non_finite_records += 1;
                    if non_finite.len() < top {
                        non_finite.push(NonFinite {
                            position,
                            name: f.name,
                            nan_count: f.nan_count,
                            inf_count: f.inf_count,
                        });
                    }
                }
                let rec = r.record;
                steps.extend(rec.seq);
                if let Some((min, max)) = rec.stats.and_then(|s| s.min.zip(s.max)) {
                    let mut candidate = Ranked {
                        max_abs: min.abs().max(max.abs()),
                        position,
                        // Filled in only when the record makes the list.
                        name: String::new(),
                    };
                    let makes_it = largest.len() < top
                        || largest.peek().is_some_and(|Reverse(low)| candidate > *low);
                    if top > 0 && makes_it {
                        candidate.name.clone_from(&rec.name);
                        largest.push(Reverse(candidate));
                        if largest.len() > top {
                            largest.pop();
                        }
                    }
                }
                if !names.contains(&rec.name) {
                    names.insert(rec.name);
                }
            }
        }
        crate::cmd::warn_about(dir, stream.problems(), stream.order());
        let mut bytes_on_disk = 0;
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                bytes_on_disk += meta.len();
            }
        }
        Ok(Summary {
            dir: dir.to_owned(),
            order: stream.order().name(),
            records: scan.seen(),
            names: names.len(),
            steps: steps.len(),
            bytes_on_disk,
            problems: stream.problems().len(),
            non_finite_records,
            non_finite,
            largest: largest
                .into_sorted_vec()
                .into_iter()
                .map(|Reverse(r)| Magnitude {
                    position: r.position,
                    name: r.name,
                    max_abs: r.max_abs,
                })
                .collect(),
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
        if self.non_finite_records > 0 {
            let _ = write!(s, "; {} with NaN/Inf", self.non_finite_records);
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
    let summary = Summary::read(&args.dir, args.top)?;
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
        Format::Text => {
            let mut s = String::new();
            let _ = writeln!(s, "directory      {}", summary.dir.display());
            let _ = writeln!(s, "order          {}", summary.order);
            let _ = writeln!(s, "records        {}", summary.records);
            let _ = writeln!(s, "names          {}", summary.names);
            let _ = writeln!(s, "steps          {}", summary.steps);
            let _ = writeln!(s, "size on disk   {}", human_bytes(summary.bytes_on_disk));
            let _ = writeln!(s, "unreadable     {}", summary.problems);
            let _ = writeln!(s, "NaN/Inf        {} records", summary.non_finite_records);
            for nf in &summary.non_finite {
                let _ = writeln!(
                    s,
                    "  #{:<6} {}  nan={} inf={}",
                    nf.position, nf.name, nf.nan_count, nf.inf_count
                );
            }
            if summary.non_finite_records > summary.non_finite.len() {
                let _ = writeln!(
                    s,
                    "  ... and {} more (--top N lists more)",
                    summary.non_finite_records - summary.non_finite.len()
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
