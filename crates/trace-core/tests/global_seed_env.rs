//! The seed's workflow unchanged: `BITNET_TRACE_DIR` enables tracing, `{name}.trace` appears
//! with the six fields `jq -r .blake3` reads. One test per binary: the global tracer is per process.

use trace_core::{dump, TensorView};

#[test]
fn bitnet_trace_dir_enables_the_global_tracer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces"); // created on first use
    std::env::remove_var("TENSOR_TRACE_DIR");
    std::env::set_var("BITNET_TRACE_DIR", &out);
    assert!(trace_core::enabled());
    let v = [1.0f32, -1.0, 1.0, -1.0];
    dump("blk0/attn_norm", TensorView::new(&[1, 4], &v[..]).unwrap()).unwrap();
    dump("blk0/attn_norm", TensorView::new(&[1, 4], &v[..]).unwrap()).unwrap();
    let text = std::fs::read_to_string(out.join("blk0_attn_norm.trace")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for field in ["name", "shape", "dtype", "blake3", "rms", "num_elements"] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
    assert_eq!(json["rms"], 1.0);
    assert_eq!(json["dtype"], "F32");
    assert_eq!(json["blake3"].as_str().unwrap().len(), 64);
    assert!(
        out.join("blk0_attn_norm.1.trace").exists(),
        "second record kept"
    );
}
