//! The version numbers of the event format, apart so that both the format types and the errors
//! that name them can use them.

/// Version of the event format (`format_version` field); bumped on incompatible changes.
pub const EVENTS_FORMAT_VERSION: u32 = 1;

/// The `version` string realizar readers check; kept constant for compatibility.
pub const REALIZAR_VERSION: &str = "1.0";
