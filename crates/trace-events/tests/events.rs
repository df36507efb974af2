//! Integration tests of `trace_events`: golden renderings, hand-broken histories, the
//! contract property and realizar's own histories.

#[path = "events/scenario.rs"]
mod scenario;

#[path = "events/broken.rs"]
mod broken;
#[path = "events/golden.rs"]
mod golden;
#[path = "events/props.rs"]
mod props;
#[path = "events/realizar.rs"]
mod realizar;
