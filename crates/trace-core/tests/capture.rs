//! Integration tests of the capture path: directory sink, naming, manifest, threads, goldens.

mod capture {
    mod golden;
    mod sink;
}
