//! realizar's own `--trace-output` histories, laid out byte for byte as its hand-printed
//! `to_json` writes them (2-space indent, one key per line, six-decimal floats, NaN as `null`,
//! infinities as `"Infinity"` strings, all-zero stats on events without a tensor, strings as
//! Rust `{:?}` literals): read, validated, rendered and normalized.

use std::path::PathBuf;

use trace_events::{
    render, validate, validate_json, Error, EventType, Producer, Severity, StatsSummary,
    TraceDocument, TraceStep,
};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/events/realizar")
        .join(name)
}

fn text(name: &str) -> String {
    std::fs::read_to_string(path(name)).unwrap()
}

fn read(name: &str) -> TraceDocument {
    TraceDocument::read(&path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn violations(doc: &TraceDocument) -> Vec<String> {
    validate(doc).iter().map(ToString::to_string).collect()
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../data/events/golden");
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn a_clean_realizar_history_is_read_as_written_and_valid() {
    let doc = read("clean.json");
    assert_eq!(doc.producer, Producer::Realizar);
    assert_eq!(doc.version, "1.0");
    assert_eq!(doc.timestamp, "2026-03-14T09:26:54.589793238+00:00");
    assert_eq!(
        (
            doc.model.name.as_str(),
            doc.model.num_layers,
            doc.model.hidden_dim,
            doc.model.vocab_size,
            doc.model.num_heads,
            doc.model.quant_type.as_deref()
        ),
        ("/models/tiny-llama.gguf", 2, 4, 32, 2, None)
    );
    assert_eq!(doc.events.len(), 25);
    assert_eq!((doc.error_count, doc.warning_count), (0, 0));
    assert_eq!(violations(&doc), Vec::<String>::new());

    // Nothing realizar does not write is filled in.
    for e in &doc.events {
        assert_eq!(e.elapsed_us, None, "event {}", e.id);
        assert_eq!(e.stats, None, "event {}", e.id);
        assert_eq!((e.hint.as_ref(), e.error_kind.as_ref()), (None, None));
        assert!(e.details.is_empty() && e.parent_event_id.is_none() && e.name.is_none());
    }
    // Entries and tokenize/decode exits carry realizar's all-zero block: no statistics.
    let tokenize = &doc.events[1];
    assert_eq!(
        (tokenize.step, tokenize.event_type, tokenize.summary),
        (Some(TraceStep::Tokenize), EventType::TaskStateExited, None)
    );
    assert_eq!(
        (
            tokenize.input_shape.as_slice(),
            tokenize.output_shape.as_slice()
        ),
        (&[5][..], &[2][..])
    );
    // A tensor's six statistics, with their six decimals.
    let embed = &doc.events[3];
    assert_eq!(
        embed.summary,
        Some(StatsSummary {
            min: Some(-0.73125),
            max: Some(0.9125),
            mean: Some(0.04375),
            std: Some(0.482173),
            has_nan: false,
            has_inf: false,
        })
    );
    // The kernel launch is a leaf exit without an entry, as realizar records it.
    let kernel = &doc.events[5];
    assert_eq!(
        (
            kernel.step,
            kernel.previous_event_id,
            kernel.layer,
            kernel.duration_us
        ),
        (Some(TraceStep::KernelLaunch), None, Some(0), 87)
    );
    let decode_step_1 = doc
        .events
        .iter()
        .rfind(|e| e.step == Some(TraceStep::Decode))
        .unwrap();
    assert_eq!(
        (decode_step_1.iteration, decode_step_1.previous_event_id),
        (1, Some(24))
    );
}

#[test]
fn a_nan_layer_and_string_infinities_are_read_and_reported() {
    let doc = read("nan_layer.json");
    assert_eq!(violations(&doc), Vec::<String>::new());
    assert_eq!(doc.error_count, 3);
    let errors: Vec<(u64, Option<u64>, &str, Option<Severity>)> = doc
        .events
        .iter()
        .filter_map(|e| {
            e.error
                .as_deref()
                .map(|err| (e.id, e.layer, err, e.severity))
        })
        .collect();
    assert_eq!(
        errors,
        [
            (
                6,
                Some(0),
                "Inf values detected in layer 0",
                Some(Severity::Error)
            ),
            (
                8,
                Some(1),
                "NaN values detected in layer 1",
                Some(Severity::Error)
            ),
            (10, None, "NaN values detected", Some(Severity::Error)),
        ]
    );
    let inf_layer = doc.events[5].summary.unwrap();
    assert_eq!(
        (inf_layer.max, inf_layer.has_inf, inf_layer.has_finite()),
        (Some(65504.0), true, true)
    );
    // An all-NaN layer: realizar's min and max stay at their starting infinities.
    let nan_layer = doc.events[7].summary.unwrap();
    assert_eq!(
        (
            nan_layer.min,
            nan_layer.max,
            nan_layer.mean,
            nan_layer.has_nan
        ),
        (
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(0.0),
            true
        )
    );
    assert!(!nan_layer.has_finite());
    // realizar records no error on SAMPLE even with NaN logits; the summary still says so.
    let sample = &doc.events[11];
    assert_eq!(sample.step, Some(TraceStep::Sample));
    assert!(sample.error.is_none() && sample.summary.unwrap().has_nan);

    let text = render::text(&doc, false);
    settings().bind(|| insta::assert_snapshot!("realizar_nan_layer_text", text));
    assert!(text.contains(
        "layer  1 #8 219us in [2, 4] out [2, 4] no finite values has_nan=true has_inf=false  ERROR"
    ));
}

#[test]
fn a_run_level_failure_with_rust_escapes_is_read() {
    // realizar prints strings with `{:?}`: the cause holds `\u{1b}`, which is not JSON.
    let raw = text("failed.json");
    assert!(raw.contains(r"\u{1b}[1m"));
    assert!(serde_json::from_str::<serde_json::Value>(&raw).is_err());
    let doc = read("failed.json");
    let failure = doc.events.last().unwrap();
    assert_eq!(failure.event_type, EventType::ExecutionFailed);
    // realizar's placeholder step TOKENIZE on a run-level failure reads as no step.
    assert_eq!((failure.step, failure.previous_event_id), (None, None));
    assert_eq!(
        failure.error.as_deref(),
        Some("Execution failed: Initialization Failure")
    );
    assert_eq!(
        failure.cause.as_deref(),
        Some("Missing \u{1b}[1mconfig.json\u{1b}[0m next to /models/tiny-llama.gguf")
    );
    // The EMBED entry the failure interrupted was never exited: a contract violation.
    assert_eq!(
        violations(&doc),
        ["event 3: no-open-entry: entry of step EMBED is never exited"]
    );
}

#[test]
fn broken_links_are_contract_violations() {
    let doc = read("broken_links.json");
    assert_eq!(
        violations(&doc),
        [
            "event 3: exit-links-entry: TaskStateExited without previous_event_id",
            "event 4: exit-links-entry: previous_event_id 9 names no earlier event",
            "event 5: no-open-entry: entry of step SAMPLE is never exited",
        ]
    );
}

#[test]
fn an_empty_history_is_valid() {
    // realizar prints an empty event list as "[", an empty line, "  ]".
    assert!(text("empty.json").contains("\"events\": [\n\n  ],"));
    let doc = read("empty.json");
    assert!(doc.events.is_empty() && validate(&doc).is_empty());
    assert!(render::text(&doc, false).ends_with("trace complete: no errors ===\n"));
}

#[test]
fn normalized_json_round_trips_and_keeps_what_is_unknown_unknown() {
    for name in [
        "clean.json",
        "nan_layer.json",
        "failed.json",
        "broken_links.json",
        "empty.json",
    ] {
        let doc = read(name);
        let json = doc.to_json();
        let back = TraceDocument::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, doc, "{name}");
        assert_eq!(validate(&back), validate(&doc), "{name}");
        assert!(json.contains("\"producer\": \"realizar\""), "{name}");
        assert!(!json.contains("nan_count") && !json.contains("elapsed_us"));
    }
    let json = read("nan_layer.json").to_json();
    settings().bind(|| insta::assert_snapshot!("realizar_nan_layer_json", json));
}

#[test]
fn chrome_trace_times_come_from_the_wall_clock() {
    let chrome = render::chrome(&read("clean.json"));
    settings().bind(|| insta::assert_snapshot!("realizar_clean_chrome", chrome));
    let v: serde_json::Value = serde_json::from_str(&chrome).unwrap();
    let block = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TRANSFORMER_BLOCK L0" && e["args"]["iteration"] == 0)
        .unwrap();
    // Entry 5 at 09:26:53.517, 4 ms after the first event at .513; realizar's duration.
    assert_eq!(
        (block["ts"].as_u64(), block["dur"].as_u64()),
        (Some(4000), Some(230))
    );
}

#[test]
fn realizar_layout_errors_name_the_field_and_value() {
    let clean = text("clean.json");
    let err = TraceDocument::from_json(&clean.replacen("\"1.0\"", "\"2.0\"", 1)).unwrap_err();
    assert!(matches!(err, Error::RealizarVersion { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "realizar history `version` \"2.0\" is not supported, this reader knows \"1.0\""
    );

    let no_flag = clean.replacen(",\n        \"has_inf\": false", "", 1);
    let err = validate_json(&no_flag).unwrap_err().to_string();
    assert!(
        err.starts_with("not a valid event history (no `format_version`, so read as realizar's --trace-output layout): missing field `has_inf`"),
        "{err}"
    );

    let nan_string = text("nan_layer.json").replacen("\"Infinity\"", "\"NaN\"", 1);
    let err = validate_json(&nan_string).unwrap_err().to_string();
    assert!(
        err.contains(r#"invalid value: string "NaN", expected a number, null (NaN), "Infinity" or "-Infinity""#),
        "{err}"
    );

    let truncated = &clean[..clean.len() / 2];
    let err = validate_json(truncated).unwrap_err().to_string();
    assert!(err.contains("EOF while parsing"), "{err}");
}

mod props {
    use proptest::prelude::*;
    use trace_events::TraceDocument;

    use super::text;

    /// How realizar prints an f32 (as the issue describes its `format_json_float`).
    fn realizar_float(x: f32) -> String {
        if x.is_nan() {
            "null".to_owned()
        } else if x == f32::INFINITY {
            "\"Infinity\"".to_owned()
        } else if x == f32::NEG_INFINITY {
            "\"-Infinity\"".to_owned()
        } else {
            format!("{x:.6}")
        }
    }

    proptest! {
        /// realizar prints `error` and `cause` with Rust's `{:?}`; any string reads back.
        #[test]
        fn any_debug_printed_string_reads_back(
            s in prop_oneof![
                any::<String>(),
                // Mostly characters `{:?}` escapes: controls, NUL, private use, combining marks.
                "[\\x00-\\x1f\\x7f-\\x9f\\u{e000}\\u{301}\\u{200b}\"'\\\\a{}u0-9]{0,16}",
            ]
        ) {
            let file = text("failed.json").replacen(
                r#""Execution failed: Initialization Failure""#,
                &format!("{s:?}"),
                1,
            );
            let doc = TraceDocument::from_json(&file).unwrap();
            prop_assert_eq!(doc.events.last().unwrap().error.as_deref(), Some(s.as_str()));
        }

        /// Any f32 realizar prints reads back as NaN (`None`), the same infinity, or within the
        /// six decimals printed.
        #[test]
        fn any_realizar_float_reads_back(x in any::<f32>()) {
            let file = text("clean.json")
                .replacen("\"min\": -0.731250", &format!("\"min\": {}", realizar_float(x)), 1);
            let doc = TraceDocument::from_json(&file).unwrap();
            let min = doc.events[3].summary.unwrap().min;
            match min {
                None => prop_assert!(x.is_nan()),
                Some(m) if x.is_infinite() => prop_assert_eq!(m, f64::from(x)),
                Some(m) => {
                    let x = f64::from(x);
                    prop_assert!((m - x).abs() <= 5e-7 + 1e-15 * x.abs(), "{} read as {}", x, m);
                }
            }
        }
    }
}
