//! Integration tests of the C ABI: the header against the Rust code, and C and C++ programs
//! built against the static library against trace-core's own output.

mod header;
mod programs;
mod reference_engine;
mod support;
