//! The HTML report in a real browser: headless Chromium opens a calibrated report with the
//! `#selftest` fragment, whose script clicks a header of the records table, checks the order,
//! counts the plot's lines and the error map's cells, and clicks the first divergence's cell
//! of the map to open its detail; the test reads the result from the dumped DOM and fails on
//! any console message.
//!
//! The browser is `$TRACE_DIFF_CHROMIUM` when set (`cargo xtask ci` installs Chromium and sets
//! it, so the test never skips there), else `chromium` or `chromium-browser` on the `PATH`. When
//! there is none the test skips and says so in the skips file `cargo xtask ci` prints.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use trace_diff::rules::Rules;
use trace_diff::{render, DiffOptions};

use crate::common::diff_dirs_calibrated;

use crate::common::{three_runs, Fault, Prec, Spec};

/// Chromium flags that keep it headless, unsandboxed (tests run as root in containers) and off
/// the network.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
];

fn find_chromium() -> Option<PathBuf> {
    if let Some(exe) = std::env::var_os("TRACE_DIFF_CHROMIUM") {
        return Some(exe.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|exe| exe.is_file())
}

/// Records a skip where `cargo xtask ci` looks for them (`$CARGO_TARGET_DIR` or the
/// workspace's `target/`, file `test-skips.txt`), and on stderr.
fn record_skip(reason: &str) {
    eprintln!("{reason}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let _ = fs::create_dir_all(&target);
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target.join("test-skips.txt"))
    {
        let _ = writeln!(f, "{reason}");
    }
}

/// Opens `page#selftest` and returns the dumped DOM and the console lines.
fn open(chromium: &Path, page: &Path, profile: &Path) -> (String, Vec<String>) {
    let url = format!("file://{}#selftest", page.display());
    // `timeout` guards against a browser that never exits; it is not a timing assertion.
    let output = Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} exited with {}:\n{stderr}",
        chromium.display(),
        output.status
    );
    let console = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_owned)
        .collect();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        console,
    )
}

#[test]
fn html_report_sorts_and_plots_in_headless_chromium() {
    let Some(chromium) = find_chromium() else {
        record_skip(
            "trace-diff it::browser: skipped: no chromium on PATH (apt-get install chromium, or set TRACE_DIFF_CHROMIUM)",
        );
        return;
    };
    let fault = Fault {
        seq: 0,
        layer: 1,
        index: 5,
        delta: 2e-6,
    };
    let (tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed().fault(fault),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).values(),
    );
    // The rules leave `blk2/q` out on every side: the map draws those records as ignored.
    let options = DiffOptions {
        rules: Rules::from_toml(r#"ignore = ["blk2/q"]"#, Path::new("rules.toml")).unwrap(),
        ..DiffOptions::default()
    };
    let report = diff_dirs_calibrated(&a, &b, &c, &options).unwrap();
    let page = tmp.path().join("report.html");
    fs::write(&page, render::html(&report)).unwrap();

    let (dom, console) = open(&chromium, &page, &tmp.path().join("profile"));
    assert!(console.is_empty(), "console messages: {console:#?}");
    let start = dom
        .find(r#"<pre id="selftest-result">"#)
        .unwrap_or_else(|| panic!("no self-test result in the DOM:\n{dom}"));
    let result = &dom[start..];
    let result = &result[..result.find("</pre>").unwrap()];
    let rows = report.pairs.len();
    // Every pair is a cell of the map (the toy model records each point once per pass), and so
    // is `blk2/q` of each pass, ignored; the first divergence is `blk1/q`, in the prefill, and
    // its detail has the histogram of |a-b| and the worst elements (its nonzero differences, at
    // most `WORST`).
    assert!(
        result.contains(&format!(
            "selftest ok: sorted {rows} rows by ratio both ways; 2 plot lines; map of {} cells in 2 passes, ",
            rows + 2
        )),
        "{result}"
    );
    let worst = report
        .first_divergence_pair()
        .unwrap()
        .values
        .as_ref()
        .unwrap()
        .worst
        .len();
    assert!((1..=trace_diff::detail::WORST).contains(&worst), "{worst}");
    assert!(
        result.contains(&format!(
            "growth bars; detail opened for #3 blk1/q (step 0, layer 1, stage q) with a histogram of {} bins and {worst} worst elements; ignored cell opened: blk2/q (A): ignored by ignore \"blk2/q\" (2 ignored records here)",
            trace_diff::detail::BINS
        )),
        "{result}"
    );

    // The console check is not vacuous: a page with a script error is caught.
    let broken = tmp.path().join("broken.html");
    fs::write(
        &broken,
        render::html(&report).replace("</body>", "<script>no_such_function();</script></body>"),
    )
    .unwrap();
    let (_, console) = open(&chromium, &broken, &tmp.path().join("profile2"));
    assert!(
        console.iter().any(|l| l.contains("no_such_function")),
        "{console:#?}"
    );
}
