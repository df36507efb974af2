//! Status codes, the error type behind them and the per-thread message of the last failure.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use crate::abi::{
    TT_ERR_ARG, TT_ERR_CONFIG, TT_ERR_INTERNAL, TT_ERR_IO, TT_ERR_NULL, TT_ERR_PANIC, TT_ERR_SHAPE,
    TT_OK,
};

/// Why a C call failed; each variant maps to one status code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FfiError {
    /// A required pointer argument was NULL.
    #[error("argument `{arg}` is NULL, expected {expected}")]
    Null {
        /// The parameter name, as in the header.
        arg: &'static str,
        /// What the caller should have passed.
        expected: &'static str,
    },
    /// An argument has an invalid value (dtype code, encoding, context field).
    #[error("argument `{arg}`: {problem}")]
    Arg {
        /// The parameter name, as in the header.
        arg: &'static str,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// The shape or strides cannot describe a tensor in memory.
    #[error("shape {dims:?}: {problem}")]
    Shape {
        /// The dimensions given.
        dims: Vec<i64>,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// trace-core refused the capture (configuration, I/O).
    #[error(transparent)]
    Core(#[from] trace_core::Error),
    /// A panic inside the library, caught at the boundary.
    #[error("internal panic: {0}")]
    Panic(String),
}

impl FfiError {
    /// The status code the C caller sees.
    pub fn status(&self) -> i32 {
        match self {
            FfiError::Null { .. } => TT_ERR_NULL,
            FfiError::Arg { .. } => TT_ERR_ARG,
            FfiError::Shape { .. } => TT_ERR_SHAPE,
            FfiError::Core(e) => core_status(e),
            FfiError::Panic(_) => TT_ERR_PANIC,
        }
    }

    /// Converts a caught panic payload.
    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        FfiError::Panic(msg)
    }
}

fn core_status(e: &trace_core::Error) -> i32 {
    use trace_core::Error;
    match e {
        Error::Config { .. } => TT_ERR_CONFIG,
        Error::Io { .. } | Error::Writer(_) | Error::Record(_) => TT_ERR_IO,
        Error::Shape(_) | Error::ElementCount { .. } => TT_ERR_SHAPE,
        _ => TT_ERR_INTERNAL,
    }
}

/// The symbolic name of a status code (`"TT_ERR_NULL"`), for messages.
pub fn status_name(status: i32) -> &'static std::ffi::CStr {
    match status {
        TT_OK => c"TT_OK",
        TT_ERR_NULL => c"TT_ERR_NULL",
        TT_ERR_ARG => c"TT_ERR_ARG",
        TT_ERR_SHAPE => c"TT_ERR_SHAPE",
        TT_ERR_CONFIG => c"TT_ERR_CONFIG",
        TT_ERR_IO => c"TT_ERR_IO",
        TT_ERR_PANIC => c"TT_ERR_PANIC",
        TT_ERR_INTERNAL => c"TT_ERR_INTERNAL",
        _ => c"TT_ERR_UNKNOWN",
    }
}

thread_local! {
    /// The message of the last failed call on this thread (errno-like: success leaves it).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `msg` (prefixed with the function name) as this thread's last error.
pub(crate) fn set_last_error(function: &str, err: &FfiError) {
    // Interior NULs cannot come from C strings, but a panic message might hold one.
    let text = format!("{function}: {err}").replace('\0', "\\0");
    let text = CString::new(text).expect("NULs were replaced");
    // `try_with` fails only while the thread is being torn down; the message is lost then.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

/// A pointer to this thread's last error message, valid until the next failing call on the
/// thread (or its exit); `""` when no call has failed.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs an entry point body: catches panics, records the error message, returns the status.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<(), FfiError>) -> i32 {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(FfiError::from_panic(payload.as_ref())));
    match result {
        Ok(()) => TT_OK,
        Err(e) => {
            set_last_error(function, &e);
            e.status()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last() -> String {
        // SAFETY: `last_error_ptr` points at this thread's live, NUL-terminated message.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn guard_converts_errors_and_panics() {
        assert_eq!(guard("f", || Ok(())), TT_OK);
        let null = || {
            Err(FfiError::Null {
                arg: "name",
                expected: "a string",
            })
        };
        assert_eq!(guard("f", null), TT_ERR_NULL);
        assert_eq!(last(), "f: argument `name` is NULL, expected a string");
        assert_eq!(guard("g", || panic!("boom\0x")), TT_ERR_PANIC);
        assert_eq!(last(), "g: internal panic: boom\\0x");
        // Success leaves the message of the last failure in place (errno-like).
        assert_eq!(guard("h", || Ok(())), TT_OK);
        assert!(last().starts_with("g:"));
    }

    #[test]
    fn last_error_is_per_thread() {
        assert_eq!(
            guard("main", || Err(FfiError::Panic("x".into()))),
            TT_ERR_PANIC
        );
        let other = std::thread::spawn(last).join().unwrap();
        assert_eq!(other, "");
        assert_eq!(last(), "main: internal panic: x");
    }

    #[test]
    fn status_names() {
        for (code, name) in [
            (TT_OK, "TT_OK"),
            (TT_ERR_NULL, "TT_ERR_NULL"),
            (TT_ERR_INTERNAL, "TT_ERR_INTERNAL"),
            (-7, "TT_ERR_UNKNOWN"),
        ] {
            assert_eq!(status_name(code).to_str().unwrap(), name);
        }
    }
}
