//! # trace-diff
//!
//! Compares two trace directories and names the first record, in execution order, where the run
//! under test (side **A**) parts from the reference (side **B**).
//!
//! ## One front door
//!
//! Every comparison is a [`Comparison`]: the runs A and B (directories, or runs already read),
//! an optional baseline C, the [`DiffOptions`] (rules, strictness, values, missing records, the
//! largest ratio) and a [`Streaming`] policy. The `trace-diff` binary, `tensor-trace diff` and
//! `bisect` and the crossval all build one and [`Comparison::run`] it.
//!
//! ## Design
//!
//! 1. **Read** both directories with [`trace_core::run::Run`]: manifest order for our runs, a
//!    documented guess for seed-format directories (with a warning that execution order is
//!    unknown). Records are small and held; raw values are not. A directory of `rank-N` runs is
//!    a multi-rank run ([`shard`]): compared rank by rank, or reassembled in memory into one
//!    logical run by the `[[shard]]` rules.
//! 2. **Match** records by `(name, occurrence)` after mapping A's names through the [`Rules`]
//!    (regex captures), skipping ignored names; records without a partner are reported as
//!    missing, never dropped.
//! 3. **Judge** each pair ([`Verdict`]): identical (same hash), within tolerance, diverged,
//!    incompatible (element counts differ), on the best [`Evidence`] available: raw `.npy`
//!    values on both sides (element-wise: an element fails when `|a-b|` is above `atol`,
//!    `rtol*|b|` and `rtol*RMS(b)` alike, Polygraphy's semantics with the record's scale as a
//!    third term, [`Tolerance`]), else recorded statistics, else RMS. Values are
//!    loaded one pair at a time and dropped, so memory stays flat in run length.
//!    With a third run, the **baseline** C (the reference run in A's precision), each pair is
//!    judged instead by `ratio = e_A / max(e_C, floor)`, A's error against B over C's
//!    ([`Comparison::baseline`], [`calibrate`]): no tolerance is chosen by anyone.
//! 4. **Locate**: the first diverged pair in A's order, what agreed before it, the error profile
//!    along the run and each layer's amplification of the error it received. The in-memory
//!    and the streaming comparison (runs of millions of records, [`Streaming`]) feed their
//!    pairs to the same assembly, so their reports agree.
//! 5. **Render** the same [`Report`] as text, JSON (stable, versioned schema), JUnit or one HTML
//!    page ([`render`]). The comparison never imports a renderer. The command line (`cli`, behind
//!    the `cli` feature, so a library user pulls no clap) only parses arguments and picks a
//!    renderer.
//!
//! Findings are never errors: [`Comparison::run`] returns `Err` only when input cannot be read
//! (or, with [`DiffOptions::strict`], when it has any problem); tolerated problems are
//! [`Report::warnings`].
//!
//! ## Example
//!
//! ```
//! use std::fs;
//! use trace_diff::{render, Comparison, Outcome, Verdict};
//!
//! let tmp = tempfile::tempdir()?;
//! let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
//! let hash = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
//! for (dir, rms) in [(&a, 1.0), (&b, 1.5)] {
//!     fs::create_dir(dir)?;
//!     // Seed-format records: the six plain fields. Same hash for `embed`, different for `out`.
//!     fs::write(dir.join("embed.trace"), format!(
//!         r#"{{"name":"embed","shape":[4],"dtype":"F32","blake3":"{hash}","rms":1.0,"num_elements":4}}"#))?;
//!     let other = if rms == 1.0 { hash.replace('a', "b") } else { hash.to_owned() };
//!     fs::write(dir.join("out.trace"), format!(
//!         r#"{{"name":"out","shape":[4],"dtype":"F32","blake3":"{other}","rms":{rms},"num_elements":4}}"#))?;
//! }
//!
//! let report = Comparison::new(&a, &b).run()?;
//! assert_eq!(report.outcome, Outcome::Diverged);
//! assert_eq!(report.first_divergence.as_ref().unwrap().name, "out");
//! assert_eq!(report.pairs[1].verdict, Verdict::Diverged);
//! let json = render::json(&report);
//! assert!(json.contains(r#""schema_version": 1"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod baseline;
pub mod calibrate;
#[cfg(feature = "cli")]
pub mod cli;
mod compare;
pub mod detail;
mod diff;
mod error;
mod format;
mod intern;
pub mod metrics;
mod options;
mod outcome;
mod pair;
pub mod render;
pub mod report;
pub mod rules;
pub mod shard;
mod sides;
pub mod sketch;
mod stream;
mod tolerance;
pub mod transform;
mod values;
pub mod views;

pub use calibrate::DEFAULT_MAX_RATIO;
pub use compare::{Comparison, Input};
pub use error::{Error, Result};
pub use options::{DiffOptions, StreamOptions, Streaming};
pub use report::{Calibration, CalibrationStatus, Evidence, Outcome, Pair, Report, Verdict};
pub use rules::{Rules, ShardSplit, Term, Tolerance, ViewChoice, ViewsUsed};
pub use stream::{estimate_records, RecordEstimate};
#[doc(hidden)]
pub use values::load as load_values;
