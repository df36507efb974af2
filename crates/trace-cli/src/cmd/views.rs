//! `tensor-trace views`: the engine views trace-diff sees runs through (how each engine family
//! names and lays out the canonical points), which one fits a run, and a starting view for an
//! engine none fits.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use trace_diff::views::{self, Detection, View};

use crate::output::print;

/// List the engine views, show one, detect a run's, or draft one for a new engine.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tensor-trace views\n  tensor-trace views show llama-cpp\n  \
                  tensor-trace views detect traces/llama\n  \
                  tensor-trace views draft traces/my-engine -o my-engine.toml\n  \
                  trace-diff traces/my-engine traces/hf --view-a my-engine.toml"
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print a view's canonical points, the engine's name for each and its layout steps.
    Show {
        /// A shipped view's name, or a view file.
        view: String,
    },
    /// Say which view fits a run and why (exit 1 when none or several do).
    Detect {
        /// The run directory.
        dir: PathBuf,
    },
    /// Write a starting view for an engine from one of its runs: its names grouped into
    /// templates with the layer number as {L}, shapes shown, the names a shipped view knows
    /// filled in, the rest listed for a person to map.
    Draft {
        /// The run directory.
        dir: PathBuf,
        /// The view's name.
        #[arg(long, default_value = "my-engine")]
        name: String,
        /// Write the view to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<u8> {
    let shipped = views::presets()?;
    match args.command {
        None => {
            print(&list(&shipped))?;
            Ok(0)
        }
        Some(Command::Show { view }) => {
            print(&show(&View::load_or_preset(&view)?))?;
            Ok(0)
        }
        Some(Command::Detect { dir }) => {
            let seen = views::run_names(&dir)?;
            let names: Vec<&str> = seen.iter().map(|s| s.name.as_str()).collect();
            let (text, code) = match views::detect(&shipped, &names) {
                Detection::Found(v, why) => {
                    (format!("{}: {} ({why})\n", dir.display(), v.name()), 0)
                }
                Detection::Unknown => (
                    format!(
                        "{}: no view fits ({} distinct names); `tensor-trace views draft {}` \
                         writes a starting one\n",
                        dir.display(),
                        names.len(),
                        dir.display()
                    ),
                    1,
                ),
                Detection::Ambiguous(fits) => {
                    let each: Vec<String> = fits
                        .iter()
                        .map(|(v, why)| format!("{} ({why})", v.name()))
                        .collect();
                    (
                        format!(
                            "{}: several views fit: {}\n",
                            dir.display(),
                            each.join("; ")
                        ),
                        1,
                    )
                }
            };
            print(&text)?;
            Ok(code)
        }
        Some(Command::Draft { dir, name, output }) => {
            let seen = views::run_names(&dir)?;
            anyhow::ensure!(
                !seen.is_empty(),
                "{}: the run has no records",
                dir.display()
            );
            let text = views::draft(&name, &seen, &shipped);
            match output {
                Some(path) => {
                    trace_diff::cli::write_atomic(&path, |out| Ok(out.write_all(text.as_bytes())?))
                        .with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print(&text)?,
            }
            Ok(0)
        }
    }
}

/// One paragraph per view: name, what engine, how it is detected.
fn list(shipped: &[View]) -> String {
    let mut out = String::new();
    for v in shipped {
        let detect: Vec<&str> = v.detect_globs().collect();
        let _ = writeln!(
            out,
            "{}\n  {}\n  {} points; detected by {}",
            v.name(),
            v.about(),
            v.points().len(),
            detect.join(", ")
        );
    }
    out.push_str(
        "\ntrace-diff picks each side's view from its record names; --view-a/--view-b/--view-c \
         name one (a shipped view or a file). `tensor-trace views show NAME` prints one.\n",
    );
    out
}

/// A view's points as a table: point, the engine's name, layout steps.
fn show(v: &View) -> String {
    let mut out = format!("{}: {}\n", v.name(), v.about());
    let width = v.points().iter().map(|p| p.point.len()).max().unwrap_or(0);
    for p in v.points() {
        let steps: Vec<String> = p.layout.iter().map(|s| s.inline_toml()).collect();
        let _ = write!(out, "  {:width$}  {}", p.point, p.name);
        if !steps.is_empty() {
            let _ = write!(out, "  [{}]", steps.join(", "));
        }
        out.push('\n');
    }
    out
}
