//! The `trace-diff` binary: exit codes in every mode, output files, colors.

use std::fs;

use assert_cmd::Command;
use predicates::prelude::*;

use crate::common::{data, two_runs, Fault, Prec, Spec};

fn trace_diff() -> Command {
    let mut cmd = Command::cargo_bin("trace-diff").unwrap();
    cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    cmd
}

fn faulty() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let fault = Fault {
        seq: 0,
        layer: 2,
        index: 1,
        delta: 1.0,
    };
    two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F32).values(),
    )
}

#[test]
fn exit_0_when_runs_agree_in_every_mode() {
    let (tmp, a, b) = two_runs(Spec::new(Prec::F32), Spec::new(Prec::F64));
    let junit = tmp.path().join("r.xml");
    let html = tmp.path().join("r.html");
    trace_diff()
        .args([&a, &b])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("result: AGREE (exit 0)"));
    trace_diff()
        .args([
            a.as_os_str(),
            b.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ])
        .arg("--junit")
        .arg(&junit)
        .arg("--html")
        .arg(&html)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("\"outcome\": \"agree\""));
    assert!(fs::read_to_string(&junit).unwrap().contains("<testsuites"));
    assert!(fs::read_to_string(&html).unwrap().contains("<svg"));
}

#[test]
fn exit_1_when_runs_diverge_in_every_mode() {
    let (tmp, a, b) = faulty();
    trace_diff()
        .args([&a, &b])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("first divergence: #"))
        .stdout(predicate::str::contains("blk2/q"));
    let out = trace_diff()
        .args([
            a.as_os_str(),
            b.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["first_divergence"]["name"], "blk2/q");
    let junit = tmp.path().join("r.xml");
    trace_diff()
        .args([&a, &b])
        .arg("--junit")
        .arg(&junit)
        .arg("--no-values")
        .assert()
        .code(1);
    assert!(fs::read_to_string(&junit).unwrap().contains("<failure"));
}

#[test]
fn exit_2_on_errors() {
    let (tmp, a, b) = two_runs(Spec::new(Prec::F32), Spec::new(Prec::F32));
    let missing = tmp.path().join("nope");
    let out = trace_diff().arg(&a).arg(&missing).assert().code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("nope"), "{stderr}");
    // The OS's reason once, not once per layer of context.
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    // Bad arguments.
    trace_diff().arg(&a).assert().code(2);
    trace_diff()
        .args([
            a.as_os_str(),
            b.as_os_str(),
            "--format".as_ref(),
            "yaml".as_ref(),
        ])
        .assert()
        .code(2);
    // A bad rules file names the file and key.
    let rules = tmp.path().join("rules.toml");
    fs::write(&rules, "[[map]]\na = '('\nb = 'x'\n").unwrap();
    trace_diff()
        .args([&a, &b])
        .arg("--rules")
        .arg(&rules)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("rules.toml").and(predicate::str::contains("map[0].a")));
    // An unwritable report file.
    trace_diff()
        .args([&a, &b])
        .arg("--html")
        .arg(tmp.path().join("no/such/dir/r.html"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--html"));
}

#[test]
fn strict_turns_warnings_into_exit_2() {
    let (_tmp, a, b) = two_runs(Spec::new(Prec::F32), Spec::new(Prec::F32));
    fs::write(a.join("blk0_q.trace"), "{ \"name\": ").unwrap();
    // The unreadable record leaves its partner in B unmatched: an honest partial answer that is
    // not an agreement (exit 1), unless missing records are explicitly allowed.
    trace_diff().args([&a, &b]).assert().code(1).stdout(
        predicate::str::contains("warning[a]")
            .and(predicate::str::contains("blk0_q.trace"))
            .and(predicate::str::contains("INCOMPLETE")),
    );
    trace_diff()
        .args([&a, &b])
        .arg("--allow-missing")
        .assert()
        .code(0);
    trace_diff()
        .args([&a, &b])
        .arg("--strict")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("blk0_q.trace"));
}

#[test]
fn seed_directories_and_rules_file() {
    trace_diff()
        .arg(data("seed_a"))
        .arg(data("seed_b"))
        .arg("--rules")
        .arg(data("rules.toml"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("execution order unknown"))
        .stdout(predicate::str::contains(
            "first divergence: #1 blk1/attn_norm",
        ));
}

#[test]
fn colors_follow_the_terminal_and_no_color() {
    let (_tmp, a, b) = faulty();
    let esc = predicate::str::contains("\x1b[");
    // Not a terminal: plain.
    trace_diff()
        .args([&a, &b])
        .assert()
        .code(1)
        .stdout(esc.clone().not());
    trace_diff()
        .args([&a, &b])
        .args(["--color", "always"])
        .assert()
        .code(1)
        .stdout(esc.clone());
    trace_diff()
        .args([&a, &b])
        .env("NO_COLOR", "1")
        .args(["--color", "auto"])
        .assert()
        .code(1)
        .stdout(esc.not());
}

#[test]
fn help_exits_0() {
    trace_diff()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("DIR_A"));
}

#[test]
fn calibrated_diffs_exit_codes() {
    use crate::common::three_runs;
    let fault = Fault {
        seq: 0,
        layer: 1,
        index: 5,
        delta: 2e-6,
    };
    let clean = three_runs(
        Spec::new(Prec::F32).values().reversed(),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).values(),
    );
    let (tmp, a, b, c) = &clean;
    let html = tmp.path().join("r.html");
    trace_diff()
        .args([a, b])
        .arg("--baseline")
        .arg(c)
        .arg("--html")
        .arg(&html)
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("C (baseline):")
                .and(predicate::str::contains("calibrated: 16 judged by ratio"))
                .and(predicate::str::contains("result: AGREE (exit 0)")),
        );
    assert_eq!(
        fs::read_to_string(&html)
            .unwrap()
            .matches("<polyline")
            .count(),
        2
    );

    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed().fault(fault),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).values(),
    );
    // The fault passes the F32 tolerance: only the calibrated diff sees it.
    trace_diff().args([&a, &b]).assert().code(0);
    trace_diff()
        .args([&a, &b])
        .arg("--baseline")
        .arg(&c)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("first divergence: #3 blk1/q"));
    let out = trace_diff()
        .args([&a, &b])
        .arg("--baseline")
        .arg(&c)
        .args(["--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["calibration"]["max_ratio"], 10.0);
    assert_eq!(v["first_divergence"]["name"], "blk1/q");
    // K decides: a bound above the fault's ratio accepts it.
    trace_diff()
        .args([&a, &b])
        .arg("--baseline")
        .arg(&c)
        .args(["--max-ratio", "1000"])
        .assert()
        .code(0);

    // Usage and input errors.
    for bad in ["0", "-1", "nan", "inf", "ten"] {
        trace_diff()
            .args([&a, &b])
            .arg("--baseline")
            .arg(&c)
            .args(["--max-ratio", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--max-ratio"));
    }
    trace_diff()
        .args([&a, &b])
        .args(["--max-ratio", "5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--baseline"));
    trace_diff()
        .args([&a, &b])
        .arg("--baseline")
        .arg(a.with_file_name("nope"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope"));

    // A baseline without some records: reported, and not an agreement unless allowed.
    let (_, a, b, c) = &clean;
    fs::remove_file(c.join("manifest.jsonl")).unwrap();
    fs::remove_file(c.join("logits.trace")).unwrap();
    trace_diff()
        .args([a, b])
        .arg("--baseline")
        .arg(c)
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("warning[c]")
                .and(predicate::str::contains("have no record in the baseline"))
                .and(predicate::str::contains("INCOMPLETE")),
        );
    trace_diff()
        .args([a, b])
        .arg("--baseline")
        .arg(c)
        .arg("--allow-missing")
        .assert()
        .code(0);
}

#[test]
fn runs_without_a_common_record_say_nothing_was_compared() {
    // B names its layers as transformers does and no rule maps them; embed and logits, the only
    // names both runs share, are ignored.
    let (tmp, a, b) = two_runs(Spec::new(Prec::F32), Spec::new(Prec::F64).hf_names());
    let rules = tmp.path().join("rules.toml");
    fs::write(&rules, "ignore = [\"embed\", \"logits\"]\n").unwrap();
    trace_diff()
        .args([&a, &b])
        .arg("--rules")
        .arg(&rules)
        .arg("--color=never")
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("summary: 0 compared")
                .and(predicate::str::contains(
                    "nothing compared: no record of A has a partner in B",
                ))
                .and(predicate::str::contains("no divergence").not()),
        );
}
