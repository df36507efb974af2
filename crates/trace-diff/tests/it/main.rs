//! Integration tests of trace-diff: one binary, one module per topic.

mod bad_input;
mod browser;
mod calibrated;
mod cli;
mod common;
mod compare;
mod layout;
mod map;
mod ranks;
mod reports;
mod seed;
mod stream;
mod views;
