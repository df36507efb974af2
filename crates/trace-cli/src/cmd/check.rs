//! `tensor-trace check`: Jidoka checks and event contracts over a recorded run.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use trace_cli::EXIT_FINDING;
use trace_core::check::{record_location, NonFiniteScan};
use trace_events::{render, validate, Producer, Severity, TraceDocument};

use crate::output::print;

/// Check a trace directory (NaN/Inf, with where they first appear) or an event history, ours or
/// realizar's `--trace-output` JSON (contracts and recorded Jidoka errors). Exits 1 on any
/// violation, 2 when the input cannot be read.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tensor-trace check /tmp/rust-traces\n  tensor-trace check events.json --deny-warnings"
)]
pub struct Args {
    /// A trace directory, or an event history JSON file (ours or realizar's).
    path: PathBuf,
    /// Count Jidoka warnings (e.g. an unknown token) as violations too.
    #[arg(long)]
    deny_warnings: bool,
    /// Records with NaN/Inf listed after the origin (the others are counted: a NaN that
    /// propagates through a long run reaches millions of records).
    #[arg(long, value_name = "N", default_value_t = 20)]
    notes: usize,
}

pub fn run(args: Args) -> Result<u8> {
    if args.path.is_dir() {
        check_dir(&args)
    } else {
        check_events(&args)
    }
}

fn check_dir(args: &Args) -> Result<u8> {
    let mut stream = crate::cmd::open_stream(&args.path, false)?;
    let mut scan = NonFiniteScan::new();
    let mut out = BufWriter::new(io::stdout().lock());
    // Findings in capture order: the first is the origin (`error`), the rest propagation.
    let mut found = 0usize;
    while let Some(chunk) = stream.next_chunk()? {
        for r in &chunk {
            let position = scan.seen();
            let (location, cause, hint) = match scan.push(r) {
                Some(f) => (f.location(), f.cause, Some(f.hint)),
                // Records without stats (bitnet-trace's): their `rms` still answers the
                // question, since the producer writes a NaN or infinite RMS as `null`. Only the
                // counts are unknown.
                None if r.record.stats.is_none()
                    && r.record.rms.is_none()
                    && r.record.num_elements > 0 =>
                {
                    let cause = format!(
                        "rms is null over {} elements: a NaN or Inf is present (a record without \
                         stats, as bitnet-trace writes them, has no counts)",
                        r.record.num_elements
                    );
                    (record_location(&r.record), cause, None)
                }
                None => continue,
            };
            if found <= args.notes {
                let label = if found == 0 { "error" } else { "note" };
                writeln!(out, "{label}: #{position} {location}")?;
                writeln!(out, "  cause: {cause}")?;
                if let Some(hint) = hint {
                    writeln!(out, "  hint:  {hint}")?;
                }
            }
            found += 1;
        }
    }
    if found > args.notes + 1 {
        writeln!(
            out,
            "note: {} more records with NaN/Inf downstream (--notes N lists more)",
            found - args.notes - 1
        )?;
    }
    crate::cmd::warn_about(&args.path, stream.problems(), stream.order());
    let problems = stream.problems().len();
    let without_stats = scan.unchecked();
    writeln!(
        out,
        "checked {} records: {found} with NaN/Inf, {problems} unreadable{}",
        scan.seen(),
        if without_stats == 0 {
            String::new()
        } else {
            format!(", {without_stats} without stats (seed format) checked by their rms only")
        }
    )?;
    out.flush()?;
    Ok(if found == 0 && problems == 0 {
        0
    } else {
        EXIT_FINDING
    })
}

fn check_events(args: &Args) -> Result<u8> {
    let path = &args.path;
    let doc = TraceDocument::read(path).with_context(|| {
        let is_record = path
            .extension()
            .is_some_and(|e| e == trace_core::record::RECORD_EXTENSION);
        if is_record {
            format!(
                "reading {} as an event history (a .{} record is checked with its trace directory: pass the directory)",
                path.display(),
                trace_core::record::RECORD_EXTENSION
            )
        } else {
            format!("reading {}", path.display())
        }
    })?;
    let violations = validate(&doc);
    let mut out = String::new();
    for v in &violations {
        let _ = writeln!(out, "contract: {v}");
    }
    let mut failing = violations.len();
    let (mut errors, mut warnings) = (0, 0);
    for e in doc.events.iter().filter(|e| e.error.is_some()) {
        match e.severity.unwrap_or(Severity::Error) {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
        }
        if e.severity != Some(Severity::Warning) || args.deny_warnings {
            failing += 1;
        }
        out.push_str(&render::violation(e));
    }
    if doc.producer == Producer::Realizar {
        out.push_str(
            "note: realizar history: it records no NaN/Inf counts, elapsed times, severities or hints; \
             every recorded error counts as an error\n",
        );
    }
    let _ = writeln!(
        out,
        "checked {} events: {} contract violations, {errors} errors, {warnings} warnings",
        doc.events.len(),
        violations.len()
    );
    print(&out)?;
    Ok(if failing == 0 { 0 } else { EXIT_FINDING })
}
