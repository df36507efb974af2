//! `tensor-trace check`: Jidoka checks and event contracts over a recorded run.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use trace_core::events::{render, validate, Producer, Severity, TraceDocument};
use trace_core::run::RunRecord;
use trace_core::TraceRecord;

use crate::output::print;
use crate::EXIT_FINDING;

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
}

pub fn run(args: Args) -> Result<u8> {
    if args.path.is_dir() {
        check_dir(&args)
    } else {
        check_events(&args)
    }
}

fn check_dir(args: &Args) -> Result<u8> {
    let run = crate::cmd::open_run(&args.path, false)?;
    let findings = trace_core::check::non_finite(&run);
    // Records without stats (bitnet-trace's): their `rms` still answers the question, since the
    // producer writes a NaN or infinite RMS as `null`. Only the counts are unknown.
    let by_rms: Vec<(usize, &RunRecord)> = run
        .records()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.record.stats.is_none())
        .collect();
    let rms_findings: Vec<&(usize, &RunRecord)> = by_rms
        .iter()
        .filter(|(_, r)| r.record.rms.is_none() && r.record.num_elements > 0)
        .collect();
    let origin = findings
        .iter()
        .map(|f| f.position)
        .chain(rms_findings.iter().map(|(p, _)| *p))
        .min();
    let mut out = String::new();
    for f in &findings {
        let _ = writeln!(
            out,
            "{}: #{} {}",
            if Some(f.position) == origin {
                "error"
            } else {
                "note"
            },
            f.position,
            f.location()
        );
        let _ = writeln!(out, "  cause: {}", f.cause);
        let _ = writeln!(out, "  hint:  {}", f.hint);
    }
    for (position, r) in &rms_findings {
        let _ = writeln!(
            out,
            "{}: #{position} {}",
            if Some(*position) == origin {
                "error"
            } else {
                "note"
            },
            location(&r.record)
        );
        let _ = writeln!(
            out,
            "  cause: rms is null over {} elements: a NaN or Inf is present (a record without \
             stats, as bitnet-trace writes them, has no counts)",
            r.record.num_elements
        );
    }
    let problems = run.problems().len();
    let _ = writeln!(
        out,
        "checked {} records: {} with NaN/Inf, {} unreadable{}",
        run.len(),
        findings.len() + rms_findings.len(),
        problems,
        if by_rms.is_empty() {
            String::new()
        } else {
            format!(
                ", {} without stats (seed format) checked by their rms only",
                by_rms.len()
            )
        }
    );
    print(&out)?;
    Ok(if origin.is_none() && problems == 0 {
        0
    } else {
        EXIT_FINDING
    })
}

/// `t0/blk0/attn (layer 0, step 0, stage attn)`, as the findings print it.
fn location(r: &TraceRecord) -> String {
    let mut parts = Vec::new();
    if let Some(l) = r.layer {
        parts.push(format!("layer {l}"));
    }
    if let Some(s) = r.seq {
        parts.push(format!("step {s}"));
    }
    if let Some(s) = &r.stage {
        parts.push(format!("stage {s}"));
    }
    if parts.is_empty() {
        r.name.clone()
    } else {
        format!("{} ({})", r.name, parts.join(", "))
    }
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
