//! JUnit XML for CI systems: one test case per record, failures for diverged and incompatible
//! records, `skipped` for records missing on one side.

use std::fmt::Write;

use super::{context, escape};
use crate::report::{Report, Verdict};

/// The report as a JUnit XML document.
pub fn junit(report: &Report) -> String {
    let c = &report.counts;
    let tests = report.pairs.len();
    let failures = c.diverged + c.incompatible;
    let skipped = c.missing_in_a + c.missing_in_b;
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<testsuites name="trace-diff" tests="{tests}" failures="{failures}" errors="0" skipped="{skipped}">"#
    );
    let _ = writeln!(
        out,
        r#"  <testsuite name="trace-diff" tests="{tests}" failures="{failures}" errors="0" skipped="{skipped}">"#
    );
    let _ = writeln!(out, "    <properties>");
    for (k, v) in [
        ("a", report.a.dir.as_str()),
        ("b", report.b.dir.as_str()),
        ("rules", report.rules.as_deref().unwrap_or("")),
    ] {
        let _ = writeln!(out, r#"      <property name="{k}" value="{}"/>"#, escape(v));
    }
    for w in &report.warnings {
        let _ = writeln!(
            out,
            r#"      <property name="warning" value="{}"/>"#,
            escape(&w.message)
        );
    }
    let _ = writeln!(out, "    </properties>");
    for p in &report.pairs {
        let class = match p.layer {
            Some(l) => format!("trace-diff.layer{l}"),
            None => "trace-diff".to_owned(),
        };
        let name = format!("{}#{}", p.display_name(), p.occurrence);
        let _ = write!(
            out,
            r#"    <testcase classname="{}" name="{}""#,
            escape(&class),
            escape(&name)
        );
        let reason = p.reason.as_deref().unwrap_or("");
        match p.verdict {
            Verdict::Identical | Verdict::WithinTolerance => {
                let _ = writeln!(out, "/>");
            }
            Verdict::Diverged | Verdict::Incompatible => {
                let first = report
                    .first_divergence
                    .as_ref()
                    .is_some_and(|f| p.only_in.is_none() && f.pair == p.position);
                let message = format!(
                    "{} on {} evidence{}",
                    p.verdict.name(),
                    p.evidence.name(),
                    if first { " (first divergence)" } else { "" }
                );
                let _ = writeln!(out, ">");
                let _ = writeln!(
                    out,
                    r#"      <failure type="{}" message="{}">{}</failure>"#,
                    p.verdict.name(),
                    escape(&message),
                    escape(&format!("{} | {reason}", context(p)))
                );
                let _ = writeln!(out, "    </testcase>");
            }
            Verdict::Missing => {
                let side = if p.only_in == Some("a") { "B" } else { "A" };
                let _ = writeln!(out, ">");
                let _ = writeln!(
                    out,
                    r#"      <skipped message="{}"/>"#,
                    escape(&format!("missing in {side}"))
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(out, "</testsuites>");
    out
}
