//! Disabled: nothing is evaluated, nothing is written, every call is `Ok`.

use std::cell::Cell;

use trace_core::{trace_tensor, Context, TensorView};

#[test]
fn disabled_tracing_evaluates_nothing() {
    std::env::remove_var("TENSOR_TRACE_DIR");
    std::env::remove_var("BITNET_TRACE_DIR");
    assert!(!trace_core::enabled());
    let formatted = Cell::new(0);
    let name = || {
        formatted.set(formatted.get() + 1);
        "never".to_owned()
    };
    let v = [1.0f32];
    trace_tensor!(name(), TensorView::new(&[1], &v[..]).unwrap()).unwrap();
    trace_tensor!(
        name(),
        TensorView::new(&[1], &v[..]).unwrap(),
        Context::default().seq(1)
    )
    .unwrap();
    assert_eq!(
        formatted.get(),
        0,
        "the name is not built when tracing is off"
    );
    trace_core::dump("x", TensorView::new(&[1], &v[..]).unwrap()).unwrap();
    assert!(trace_core::global().unwrap().is_none());
    trace_core::flush().unwrap();
    // Installing a tracer after the environment was read is refused, not silently ignored.
    assert!(trace_core::install(trace_core::Tracer::in_memory()).is_err());
}
