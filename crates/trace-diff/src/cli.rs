//! The command-line front end shared by the `trace-diff` binary and `tensor-trace diff`, so the
//! two are one implementation: [`Args`] is the clap definition, [`run`] does the work and returns
//! the exit code (0 agree, 1 diverged or incomplete; errors are `Err`, which callers turn into 2).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use crate::render::{self, TextOptions};
use crate::views;
use crate::{Comparison, DiffOptions, Rules, StreamOptions, Streaming, DEFAULT_MAX_RATIO};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
/// Report format on stdout.
pub enum Format {
    /// Human-readable report (colored on a terminal).
    Text,
    /// The JSON report (schema in docs/FORMAT.md).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
/// When the text report is colored.
pub enum ColorChoice {
    /// Color when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always color.
    Always,
    /// Never color.
    Never,
}

/// Compare two trace directories and name the first divergence in execution order.
#[derive(Debug, Parser)]
#[command(
    name = "trace-diff",
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  trace-diff target/crossval/candle target/crossval/reference\n  trace-diff rust-traces cpp-traces --rules names.toml --format json --html report.html\n  trace-diff engine-bf16 reference-f64 --baseline reference-bf16 --max-ratio 10\n\nExit codes: 0 agree within tolerance, 1 diverged (or records without a partner), 2 error."
)]
pub struct Args {
    /// Trace directory of the run under test (side A; its order defines "first"). A directory of
    /// `rank-N` run directories is a multi-rank run (detected; see `[[shard]]` rules).
    pub dir_a: PathBuf,
    /// Trace directory of the reference run (side B); may be a multi-rank run too.
    pub dir_b: PathBuf,
    /// Rules file (TOML): name mapping, ignore lists, tolerances; or the name of a shipped
    /// preset (hf-llama, hf-bert, llama-cpp) when no such file exists. Without it, each side's
    /// engine view is detected from its record names (see --view-a).
    #[arg(long, short, value_name = "FILE|PRESET")]
    pub rules: Option<PathBuf>,
    /// Side A's engine view (a view file, or a shipped view: `tensor-trace views` lists them)
    /// instead of the one detected from its record names.
    #[arg(long, value_name = "FILE|VIEW", conflicts_with = "rules")]
    pub view_a: Option<String>,
    /// Side B's engine view, as --view-a.
    #[arg(long, value_name = "FILE|VIEW", conflicts_with = "rules")]
    pub view_b: Option<String>,
    /// The baseline's engine view, as --view-a (detected when absent).
    #[arg(
        long,
        value_name = "FILE|VIEW",
        conflicts_with = "rules",
        requires = "baseline"
    )]
    pub view_c: Option<String>,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Make every input problem fatal (exit 2) instead of a warning.
    #[arg(long)]
    pub strict: bool,
    /// Accept records without a partner on the other side (otherwise the outcome is
    /// "incomplete", exit 1, even when every matched record agrees).
    #[arg(long)]
    pub allow_missing: bool,
    /// Ignore saved .npy values and judge on recorded statistics only.
    #[arg(long)]
    pub no_values: bool,
    /// Baseline run C: the reference run again in A's precision. Each record is then judged by
    /// its ratio e_A / max(e_C, floor) (A's error against B over the baseline's) instead of a
    /// tolerance.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: the largest ratio that still agrees.
    #[arg(
        long,
        value_name = "K",
        requires = "baseline",
        value_parser = parse_max_ratio,
        allow_negative_numbers = true,
        default_value_t = DEFAULT_MAX_RATIO
    )]
    pub max_ratio: f64,
    /// Rows per table in the text report (0 = all).
    #[arg(long, default_value_t = 40)]
    pub max_rows: usize,
    /// When to color the text report.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// When to use the streaming diff (for runs of millions of records: memory flat in run
    /// length, the JSON report written as pairs are compared, the text report listing the first
    /// non-agreeing pairs only). `auto`: when either run holds at least --stream-threshold
    /// records (estimated from the size of its records.jsonl or manifest.jsonl) and neither
    /// --baseline, --html nor --junit is given (they need every pair at once). `--stream` alone
    /// means `always`, which refuses those three options.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = StreamMode::Auto,
        default_missing_value = "always"
    )]
    pub stream: StreamMode,
    /// With --stream=auto: the number of records (in either run) from which the diff streams.
    #[arg(long, value_name = "RECORDS", default_value_t = DEFAULT_STREAM_THRESHOLD)]
    pub stream_threshold: u64,
    /// When the diff streams: the most unmatched records of B held while a record of A looks
    /// for its partner (a partner further on is reported missing, with a warning).
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub window: usize,
}

/// Whether the diff streams (`--stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamMode {
    /// Stream when a run is large (see `--stream-threshold`) and no option needs every pair.
    Auto,
    /// Always stream (plain `--stream`).
    Always,
    /// Never stream: the in-memory diff, whatever the size of the runs.
    Never,
}

/// `--stream-threshold`'s default: the in-memory diff holds about 2.3 KB per record pair (228 MB
/// peak for two 100,000-record runs, 2026-12-07), so 200,000 records cost it about 460 MB, while
/// the streaming diff stays near 14 MB at any length (docs/FORMAT.md, "Streaming diff").
pub const DEFAULT_STREAM_THRESHOLD: u64 = 200_000;

/// Parses a `--max-ratio` value: a finite number above 0 (every front end that takes the flag
/// uses this).
pub fn parse_max_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(k) if k.is_finite() && k > 0.0 => Ok(k),
        _ => Err(format!("expected a finite number > 0, found {s:?}")),
    }
}

/// Whether an error is a closed stdout (`trace-diff A B | head`), which is not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, `context: cause: cause`, each said once: a library
/// error that already prints its source (`list DIR: No such file or directory`) is not followed
/// by that source again.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Runs `fill` on a temporary file beside `path`, then renames it into place: `path` is either
/// what it was before or complete, never half-written (reports, exports).
pub fn write_atomic<T>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // A report is an ordinary file: created as `open(..., 0o666)` would create it (the umask
    // applies), not with the temporary file's private 0o600.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let mut out = io::BufWriter::new(tmp);
    let value = fill(&mut out).with_context(|| format!("writing {}", path.display()))?;
    let tmp = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming the finished file to {}", path.display()))?;
    Ok(value)
}

/// Runs a comparison as the command line asked; `Ok` carries the exit code (0 or 1).
pub fn run(args: &Args) -> anyhow::Result<u8> {
    let rules = rules_for(args)?;
    let options = DiffOptions {
        rules,
        strict: args.strict,
        use_values: !args.no_values,
        allow_missing: args.allow_missing,
        max_ratio: args.max_ratio,
    };
    let streaming = streaming(args)?;
    let bounds = StreamOptions {
        window: args.window.max(1),
        keep_pairs: if args.max_rows == 0 {
            StreamOptions::default().keep_pairs
        } else {
            args.max_rows
        },
        ..StreamOptions::default()
    };
    let mut comparison = Comparison::new(&args.dir_a, &args.dir_b)
        .options(&options)
        .streaming(streaming)
        .stream_bounds(bounds);
    if let Some(c) = &args.baseline {
        comparison = comparison.baseline(c);
    }
    // A streamed JSON report goes out pair by pair, begun with the first pair.
    let mut json: Option<render::JsonStream<io::BufWriter<io::StdoutLock<'static>>>> = None;
    let mut io_error: Option<io::Error> = None;
    let mut report = comparison.run_with(&mut |p| {
        if args.format != Format::Json || io_error.is_some() {
            return Ok(());
        }
        if json.is_none() {
            match begin_json() {
                Ok(j) => json = Some(j),
                Err(e) => {
                    io_error = Some(e);
                    return Ok(());
                }
            }
        }
        io_error = json.as_mut().and_then(|j| j.pair(p).err());
        Ok(())
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    if let Some(s) = &mut report.streamed {
        if streaming == Streaming::Always {
            s.reason = Some("--stream given".to_owned());
        }
    }

    if let Some(path) = &args.junit {
        write_atomic(path, |out| {
            Ok(out.write_all(render::junit(&report).as_bytes())?)
        })
        .context("cannot write --junit")?;
    }
    if let Some(path) = &args.html {
        write_atomic(path, |out| {
            Ok(out.write_all(render::html(&report).as_bytes())?)
        })
        .context("cannot write --html")?;
    }
    match args.format {
        Format::Json if report.streamed.is_some() => {
            let json = match json {
                Some(j) => j,
                None => begin_json()?,
            };
            json.finish(&report)?;
        }
        Format::Json => {
            // Written as it is serialized: the report of a long run is never one string.
            let mut out = io::BufWriter::new(io::stdout().lock());
            serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::other)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        Format::Text => print_text(args, &report)?,
    }
    Ok(report.outcome.exit_code())
}

/// The rules file given, else the rules the sides' engine views compose into (none when
/// neither side fits a view: records then match by name).
fn rules_for(args: &Args) -> anyhow::Result<Rules> {
    if let Some(path) = &args.rules {
        return Ok(Rules::load_or_preset(path)?);
    }
    let side = views::SideSpec::new;
    let a = side("A", "--view-a", &args.dir_a, args.view_a.as_deref());
    let b = side("B", "--view-b", &args.dir_b, args.view_b.as_deref());
    let c = args
        .baseline
        .as_ref()
        .map(|dir| side("the baseline", "--view-c", dir, args.view_c.as_deref()));
    Ok(views::choose(a, b, c)?.unwrap_or_default())
}

/// The opening of a streamed JSON report on stdout.
fn begin_json() -> io::Result<render::JsonStream<io::BufWriter<io::StdoutLock<'static>>>> {
    render::JsonStream::begin(io::BufWriter::new(io::stdout().lock()))
}

/// Prints the text report to stdout in `args`' colors.
fn print_text(args: &Args, report: &crate::Report) -> io::Result<()> {
    let text_options = TextOptions {
        color: args.color != ColorChoice::Never,
        max_rows: args.max_rows,
        ..TextOptions::default()
    };
    let text = render::text(report, &text_options);
    // anstream strips the colors when stdout is not a terminal or NO_COLOR is set.
    let choice = match args.color {
        ColorChoice::Always => anstream::ColorChoice::Always,
        _ => anstream::ColorChoice::Auto,
    };
    let mut out = anstream::AutoStream::new(io::stdout().lock(), choice);
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// When the comparison streams, from `--stream`: an error for `--stream=always` with an option
/// that needs every pair, and never for `auto` with one of them (the comparison itself then
/// decides from the size of the runs).
fn streaming(args: &Args) -> anyhow::Result<Streaming> {
    let needs_all = [
        ("--baseline", args.baseline.is_some()),
        ("--html", args.html.is_some()),
        ("--junit", args.junit.is_some()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag));
    match (args.stream, needs_all) {
        (StreamMode::Never, _) | (StreamMode::Auto, Some(_)) => Ok(Streaming::Never),
        (StreamMode::Always, Some(flag)) => anyhow::bail!(
            "--stream does not combine with {flag}, which needs every pair at once; \
             leave --stream out (or give --stream=never) for the in-memory diff"
        ),
        (StreamMode::Always, None) => Ok(Streaming::Always),
        (StreamMode::Auto, None) => Ok(Streaming::Auto {
            threshold: args.stream_threshold,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        std::fs::write(&path, "old").unwrap();
        let n = write_atomic(&path, |out| {
            out.write_all(b"new report")?;
            Ok(7)
        })
        .unwrap();
        assert_eq!(n, 7);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new report");
        // A failing fill leaves the old file as it was, and no temporary file beside it.
        let err = write_atomic(&path, |out| -> anyhow::Result<()> {
            out.write_all(b"half")?;
            anyhow::bail!("stopped")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new report");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_gives_the_mode_of_an_ordinary_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // What `File::create` (mode 0o666 minus the umask) gives in the same directory.
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let expected = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let path = dir.path().join("report.json");
        write_atomic(&path, |out| Ok(out.write_all(b"{}")?)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, expected,
            "mode {mode:o}, File::create gives {expected:o}"
        );
    }
}
