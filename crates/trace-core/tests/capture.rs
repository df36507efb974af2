//! Integration tests of the capture path: directory sink, naming, manifest, threads, goldens,
//! and bitnet-trace's own files.

mod capture {
    mod golden;
    mod producers;
    mod sink;
}
