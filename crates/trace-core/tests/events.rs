//! Integration tests of `trace_core::events`: golden renderings, hand-broken histories and the
//! contract property.

#[path = "events/scenario.rs"]
mod scenario;

#[path = "events/broken.rs"]
mod broken;
#[path = "events/golden.rs"]
mod golden;
#[path = "events/props.rs"]
mod props;
