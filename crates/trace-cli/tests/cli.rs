//! The `tensor-trace` binary, run for real on runs recorded by the toy engine example and on
//! files other tracers wrote.

mod cli {
    mod bisect;
    mod check_events;
    mod export;
    mod gguf;
    mod library;
    mod producers;
    mod record_show_stats;
    mod support;
    mod views;
}
