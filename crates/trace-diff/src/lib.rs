//! # trace-diff
//!
//! Compares two trace directories. Not implemented yet (issue 6): this crate only reserves its
//! place in the workspace and exposes nothing.
#![deny(missing_docs)]
