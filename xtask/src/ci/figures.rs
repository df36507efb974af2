//! The docs' figures check: every measured figure in `README.md` and `docs/*.md` names the
//! command that reproduces it.
//!
//! The rule, kept simple on purpose:
//! - A **figure** is a number directly followed (optionally after one space or line break) by a
//!   unit: a time (`s`, `ms`, `us`, `µs`, `ns`), a size in decimal units (`KB`, `MB`, `GB`), a
//!   ratio (`x`), a percentage (`%`) or a rate (`records/s`, `/s`). `1.41x`, `509,777/s` and
//!   `0.58 s` are figures; `13 min`, `30 layers` and `64 KiB` are not (binary units are how the
//!   docs write sizes that are settings, not measurements). Text inside inline code spans
//!   (`` `...` ``) is skipped: `--timeout 5s` is an option, not a measurement.
//! - A **block** is a run of non-blank lines (a paragraph, a list, a table); a fenced code
//!   block is one block, blank lines included, and also belongs to the block right before it
//!   (the sentence that introduces it).
//! - A block holding a figure must hold a marker `<!-- source: COMMAND; DATE, LOAD -->` naming
//!   the command that printed it, with the date and the machine load it was measured under (the
//!   marker may span lines).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{Context, Result};
use regex::Regex;

/// A number with a unit; the unit must not run on into a word or another number.
static FIGURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?:^|[^\w.])                      # not the tail of a word or of another number
        (?P<fig>
          [0-9][0-9,]*(?:\.[0-9]+)?       # 3, 1.41, 509,777
          (?:\s?(?:records/s|ns|us|µs|ms|s|KB|MB|GB|x)(?:[^\w/]|$)
            |%|/s(?:[^\w]|$))
        )",
    )
    .expect("a valid regex")
});

/// The marker a block with figures must hold.
static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<!--\s*source:\s*[^;>]+;\s*[^,>]+,\s*[^>]*load[^>]*-->").expect("a valid regex")
});

/// Inline code spans, which are left out of the prose.
static CODE_SPAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"`[^`]*`").expect("a valid regex"));

/// One figure without a source: where it is and what it says.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsourced {
    /// 1-based line number.
    pub line: usize,
    /// The figure as written.
    pub figure: String,
}

/// The figures of `text` whose block has no marker.
pub fn unsourced(text: &str) -> Vec<Unsourced> {
    let mut out = Vec::new();
    let mut previous_has_marker = false;
    for block in blocks(text) {
        let whole: Vec<&str> = block.lines.iter().map(|(_, l)| *l).collect();
        let has_marker =
            MARKER.is_match(&whole.join("\n")) || (block.fenced && previous_has_marker);
        if !has_marker {
            // One text per block, so a figure broken over two lines is still seen.
            let text: Vec<String> = block
                .lines
                .iter()
                .map(|(_, l)| {
                    if block.fenced {
                        l.to_string()
                    } else {
                        CODE_SPAN.replace_all(l, "``").into_owned()
                    }
                })
                .collect();
            let text = text.join("\n");
            for c in FIGURE.captures_iter(&text) {
                let m = c.name("fig").expect("the regex has a `fig` group");
                let before = text[..m.start()].matches('\n').count();
                let figure = m
                    .as_str()
                    .trim_end_matches(|ch: char| !(ch.is_alphanumeric() || ch == '%' || ch == '/'));
                out.push(Unsourced {
                    line: block.lines[before].0,
                    figure: figure.split_whitespace().collect::<Vec<_>>().join(" "),
                });
            }
        }
        previous_has_marker = has_marker;
    }
    out
}

/// A block of lines (numbered from 1) and whether it is a fenced code block.
#[derive(Default)]
struct Block<'a> {
    lines: Vec<(usize, &'a str)>,
    fenced: bool,
}

fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out: Vec<Block<'_>> = Vec::new();
    let mut current = Block::default();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if in_fence {
            current.lines.push((i + 1, line));
            in_fence = !fence;
            if fence {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if (fence || line.trim().is_empty()) && !current.lines.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if fence {
            in_fence = true;
            current.fenced = true;
        }
        if !line.trim().is_empty() {
            current.lines.push((i + 1, line));
        }
    }
    if !current.lines.is_empty() {
        out.push(current);
    }
    out
}

/// `README.md` and every `docs/*.md` under `root`.
fn documents(root: &Path) -> Result<Vec<PathBuf>> {
    let mut docs = vec![root.join("README.md")];
    let dir = root.join("docs");
    for entry in fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    Ok(docs)
}

/// `FILE: FIGURE` for every unsourced figure of the project's docs, sorted.
fn found(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for doc in documents(root)? {
        let text = fs::read_to_string(&doc).with_context(|| format!("read {}", doc.display()))?;
        let shown = doc.strip_prefix(root).unwrap_or(&doc).display().to_string();
        out.extend(
            unsourced(&text)
                .into_iter()
                .map(|u| format!("{shown}:{}: {}", u.line, u.figure)),
        );
    }
    Ok(out)
}

/// Fails listing every figure without a source in the project's docs.
pub fn check(root: &Path) -> Result<()> {
    let found = found(root)?;
    anyhow::ensure!(
        found.is_empty(),
        "documented figures without a `<!-- source: COMMAND; DATE, LOAD -->` marker in their \
         paragraph or table (rule: xtask/src/ci/figures.rs):\n  {}",
        found.join("\n  ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check as check_docs, *};

    const MARK: &str = "<!-- source: cargo xtask bench; 2026-12-07, load 1.9 on 2 cores -->";

    /// The figures `text` reports, as written.
    fn check(text: &str, expected: &[&str]) {
        let got: Vec<String> = unsourced(text).into_iter().map(|u| u.figure).collect();
        assert_eq!(got, expected, "in:\n{text}");
    }

    #[test]
    fn numbers_with_units_are_figures() {
        check("capture runs at 1.41x blake3", &["1.41x"]);
        check("untraced 0.42 s, traced 3.42s", &["0.42 s", "3.42s"]);
        check("509,777 records/s and 2 MB", &["509,777 records/s", "2 MB"]);
        check("27% of the samples, 866 us each", &["27%", "866 us"]);
        check("a rate of 50,000/s", &["50,000/s"]);
        check("it took 12 ms.", &["12 ms"]);
        check("from 732,000-764,000\nrecords/s", &["764,000 records/s"]);
    }

    #[test]
    fn other_numbers_are_not() {
        check(
            "30 layers, hidden 576, 9 heads, F32, x86, 0x1F, 64 KiB",
            &[],
        );
        check("3 steps, 2 sessions, 4 bytes, rank-1, blk0/q", &[]);
        check("a 2x2 matrix and version 1.5", &[]);
        check("run with `--timeout 5s` or `bench --ms 3`", &[]);
    }

    #[test]
    fn a_marker_in_the_same_block_sources_every_figure_of_it() {
        check(&format!("ratio 1.4x\nand 0.5 s {MARK}"), &[]);
        check(
            "1.4x <!-- source: cargo xtask\nbench; 2026-12-07,\nload 2 -->",
            &[],
        );
        check(
            &format!("| a | 1.4x |\n| b | 2 s |\n{MARK}\n\nelsewhere 3%"),
            &["3%"],
        );
        // A marker in another paragraph does not count.
        check(&format!("{MARK}\n\nratio 1.4x"), &["1.4x"]);
    }

    #[test]
    fn a_code_block_is_sourced_by_itself_or_the_sentence_before_it() {
        check("Output:\n```\ndone in 2.5s\n```", &["2.5s"]);
        check(
            &format!("Output {MARK}:\n```\ndone in 2.5s\n\n1.2x\n```"),
            &[],
        );
        check(&format!("```\ndone in 2.5s {MARK}\n```"), &[]);
    }

    #[test]
    fn the_docs_hold_no_unsourced_figure() {
        check_docs(&crossval::workspace::project_root()).unwrap();
    }

    #[test]
    fn a_marker_must_say_command_date_and_load() {
        check("1.4x <!-- source: cargo xtask bench -->", &["1.4x"]);
        check(
            "1.4x <!-- source: cargo xtask bench; 2026-12-07 -->",
            &["1.4x"],
        );
        check(
            "1.4x <!-- source: cargo xtask bench; 2026-12-07, load 2.0 -->",
            &[],
        );
    }
}
