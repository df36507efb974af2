//! Pipeline event history (issue 4). Not implemented yet.
