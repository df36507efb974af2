//! Capture benchmarks (filled in with the capture path).

fn main() {}
