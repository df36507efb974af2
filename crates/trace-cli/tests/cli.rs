//! The `tensor-trace` binary, run for real on runs recorded by the toy engine example and on
//! files other tracers wrote.

mod cli {
    mod bisect;
    mod check_events;
    mod producers;
    mod library;
    mod record_show_stats;
    mod support;
}
