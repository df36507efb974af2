//! The `tensor-trace` binary, run for real on runs recorded by the toy engine example.

mod cli {
    mod bisect;
    mod check_events;
    mod library;
    mod record_show_stats;
    mod support;
}
