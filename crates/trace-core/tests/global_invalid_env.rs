//! An invalid setting is an error at first use, naming the variable, and on every later call.

use trace_core::{dump, TensorView};

#[test]
fn invalid_filter_is_reported_by_every_capture() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("TENSOR_TRACE_DIR", dir.path());
    std::env::set_var("TENSOR_TRACE_FILTER", "blk[0");
    let v = [1.0f32];
    for _ in 0..2 {
        let err = dump("x", TensorView::new(&[1], &v[..]).unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("TENSOR_TRACE_FILTER") && msg.contains("blk[0"),
            "{msg}"
        );
    }
    assert!(trace_core::global().is_err());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
