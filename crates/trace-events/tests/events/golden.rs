//! Golden files for every renderer. The tick clock makes timestamps and durations
//! deterministic, so nothing needs redacting.

use trace_events::{validate, TraceDocument};

use crate::scenario;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../data/events/golden");
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn json_golden_and_round_trip() {
    let t = scenario::run();
    let json = t.to_json();
    settings().bind(|| insta::assert_snapshot!("history_json", json));
    let back = TraceDocument::from_json(&json).unwrap();
    assert_eq!(back, t.document());
    assert_eq!(back.to_json(), json);
    assert!(validate(&back).is_empty(), "{:?}", validate(&back));
}

#[test]
fn text_golden() {
    let t = scenario::run();
    settings().bind(|| {
        insta::assert_snapshot!("history_text", t.format_text());
        insta::assert_snapshot!(
            "history_text_verbose",
            trace_events::render::text(&t.document(), true)
        );
    });
}

#[test]
fn chrome_golden() {
    let t = scenario::run();
    let chrome = t.to_chrome_trace();
    settings().bind(|| insta::assert_snapshot!("history_chrome", chrome));
}

#[test]
fn realizar_keys_are_present() {
    let v: serde_json::Value = serde_json::from_str(&scenario::run().to_json()).unwrap();
    for key in [
        "version",
        "timestamp",
        "model",
        "events",
        "error_count",
        "warning_count",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    for key in [
        "name",
        "num_layers",
        "hidden_dim",
        "vocab_size",
        "num_heads",
    ] {
        assert!(v["model"].get(key).is_some(), "model.{key}");
    }
    for event in v["events"].as_array().unwrap() {
        for key in [
            "id",
            "timestamp",
            "type",
            "previous_event_id",
            "step",
            "iteration",
            "layer",
            "input_shape",
            "output_shape",
            "duration_us",
            "stats",
            "error",
            "cause",
        ] {
            assert!(event.get(key).is_some(), "event {}: {key}", event["id"]);
        }
    }
}
