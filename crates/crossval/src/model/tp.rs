//! `cargo xtask crossval --tp N`: a tensor-parallel engine against a single-process reference.
//!
//! `python/tp_reference.py` runs a Llama-style block as N torch.distributed processes (gloo, on
//! this machine) traced per rank into `OUT/tp/rank-{r}`, and the same block with the same
//! weights in one process into `OUT/ref`; it writes the block's `[[shard]]` rules to
//! `OUT/rules.toml`. The two runs are then compared with `trace_diff::diff_paths`, which
//! reassembles the ranks by those rules and names, at the first divergence, the rank(s) whose
//! record disagrees. `--bug` plants one of the classic tensor-parallel mistakes. Needs the venv's
//! torch package set (installed on first use, about 4.2 GB).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use trace_diff::render::{self, TextOptions};
use trace_diff::{DiffOptions, Outcome, Report, Rules};

use crate::python::{self, Extra};

/// The planted bugs `python/tp_reference.py --bug` knows, with what each should be found as:
/// the first diverging record and the ranks named.
pub const BUGS: &[(&str, &str, &[u32])] = &[
    ("wrong-slice", "q", &[1]),
    ("skip-allreduce", "o", &[0, 1]),
    ("gather-order", "logits", &[0, 1]),
];

/// `crossval --tp` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Number of processes.
    pub world_size: u32,
    /// A planted bug (a name of [`BUGS`]), or none.
    pub bug: Option<String>,
    /// Where the runs go (emptied first).
    pub out: PathBuf,
    /// Print the JSON report instead of text.
    pub json: bool,
    /// Seconds the N processes may take before they are killed.
    pub timeout: u32,
}

/// The help text.
pub fn help() -> String {
    format!(
        "cargo xtask crossval --tp N [--bug NAME] [--out DIR] [--json] [--timeout SECONDS]\n\n\
         A tensor-parallel Llama-style block on N torch.distributed processes (gloo, loopback), \
         traced per rank, against the same block in one process (python/tp_reference.py); the \
         ranks are reassembled by the block's [[shard]] rules (DIR/rules.toml) and the first \
         divergence names its rank(s). N: 2 or 4.\n\n\
         --bug NAME    plant a bug: {}\n\
         --out DIR     where the runs go (default target/crossval-tp; emptied first)\n\
         --json        print the JSON report\n\
         --timeout S   kill the processes after S seconds (default 180)\n\n\
         Exit: 0 agree, 1 diverged, 2 error. Installs the torch package set into \
         target/python-venv on first use.",
        BUGS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
    )
}

/// Parses `crossval` arguments holding `--tp`; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<Options>> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(None);
    }
    let mut o = Options {
        world_size: 0,
        bug: None,
        out: crate::project_root().join("target/crossval-tp"),
        json: false,
        timeout: 180,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("{flag} needs a value (see --tp --help)"))
        };
        match flag {
            "--tp" => o.world_size = super::number("--tp", &value()?)?,
            "--bug" => {
                let v = value()?;
                if !BUGS.iter().any(|b| b.0 == v) {
                    bail!(
                        "--bug {v:?}: expected one of {}",
                        BUGS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
                    );
                }
                o.bug = Some(v);
            }
            "--out" => o.out = PathBuf::from(value()?),
            "--json" => o.json = true,
            "--timeout" => o.timeout = super::number("--timeout", &value()?)?,
            other => bail!("{other:?}: not a flag of crossval --tp (see --tp --help)"),
        }
    }
    if !matches!(o.world_size, 2 | 4) {
        bail!(
            "--tp {}: expected 2 or 4 (the block's 4 heads and widths split evenly)",
            o.world_size
        );
    }
    Ok(Some(o))
}

/// The entry point: prints the report; `Ok(true)` when the runs agree.
pub fn main(args: &[String]) -> Result<bool> {
    let Some(o) = parse(args)? else {
        println!("{}", help());
        return Ok(true);
    };
    let report = run(&o)?;
    if o.json {
        print!("{}", render::json(&report));
    } else {
        print!(
            "{}",
            render::text(
                &report,
                &TextOptions {
                    color: false,
                    ..TextOptions::default()
                }
            )
        );
    }
    Ok(report.outcome == Outcome::Agree)
}

/// Runs both sides into `o.out` and diffs them.
pub fn run(o: &Options) -> Result<Report> {
    let python = python::ensure_venv(&[Extra::Torch]).context("install torch into the venv")?;
    if o.out.exists() {
        std::fs::remove_dir_all(&o.out).with_context(|| format!("clear {}", o.out.display()))?;
    }
    let mut cmd = Command::new(python);
    cmd.arg(crate::project_root().join("python/tp_reference.py"))
        .arg(&o.out)
        .args(["--world-size", &o.world_size.to_string()])
        .args(["--bug", o.bug.as_deref().unwrap_or("none")])
        .args(["--timeout", &o.timeout.to_string()]);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("TENSOR_TRACE_") || name == "BITNET_TRACE_DIR" {
            cmd.env_remove(&key);
        }
    }
    super::run_program("python/tp_reference.py", &mut cmd)?;
    diff(&o.out)
}

/// Diffs `out/tp` with `out/ref` under `out/rules.toml`.
pub fn diff(out: &Path) -> Result<Report> {
    let rules_path = out.join("rules.toml");
    let options = DiffOptions {
        rules: Rules::load(&rules_path)?,
        ..DiffOptions::default()
    };
    trace_diff::diff_paths(&out.join("tp"), &out.join("ref"), &options).with_context(|| {
        format!(
            "diff {} with {}",
            out.join("tp").display(),
            out.join("ref").display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_flags() {
        let o = parse(&args(&["--tp", "2", "--bug=gather-order", "--json"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.world_size, o.bug.as_deref(), o.json),
            (2, Some("gather-order"), true)
        );
        assert!(parse(&args(&["--tp", "2", "--help"])).unwrap().is_none());
        assert!(parse(&args(&["--tp", "--help"])).unwrap().is_none());
        for (bad, msg) in [
            (&["--tp", "3"][..], "expected 2 or 4"),
            (
                &["--tp", "2", "--bug", "typo"],
                "expected one of wrong-slice",
            ),
            (
                &["--tp", "2", "--model", "minilm"],
                "not a flag of crossval --tp",
            ),
            (&["--tp"], "--tp needs a value"),
        ] {
            let e = format!("{:#}", parse(&args(bad)).unwrap_err());
            assert!(e.contains(msg), "{bad:?}: {e}");
        }
    }

    /// End to end, as `cargo xtask crossval --tp 2 [--bug B]` runs it: the clean run agrees and
    /// each planted bug is found at its record with its rank(s).
    #[test]
    fn tp_crossval_clean_and_bugs() {
        let tmp = tempfile::tempdir().unwrap();
        let o = Options {
            world_size: 2,
            bug: None,
            out: tmp.path().join("clean"),
            json: false,
            timeout: 300,
        };
        let report = run(&o).unwrap();
        let text = render::text(&report, &TextOptions::default());
        assert_eq!(report.outcome, Outcome::Agree, "{text}");
        assert_eq!(report.ranks.as_ref().unwrap().world_size_a, Some(2));
        for &(bug, record, ranks) in BUGS {
            let o = Options {
                bug: Some(bug.to_owned()),
                out: tmp.path().join(bug),
                ..o.clone()
            };
            let report = run(&o).unwrap();
            let text = render::text(&report, &TextOptions::default());
            assert_eq!(report.outcome, Outcome::Diverged, "{bug}: {text}");
            assert_eq!(
                report.first_divergence.as_ref().unwrap().name,
                record,
                "{bug}: {text}"
            );
            assert_eq!(
                report.ranks.as_ref().unwrap().first_divergence_ranks,
                ranks,
                "{bug}: {text}"
            );
        }
    }
}
