//! # trace-candle
//!
//! The candle adapter. Not implemented yet (issue 5): this crate only reserves its place in the
//! workspace and exposes nothing.
#![deny(missing_docs)]
