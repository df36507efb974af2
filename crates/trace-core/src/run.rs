//! Reading a trace directory back in capture order (issue 6). Not implemented yet.
