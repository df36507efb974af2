//! The references a crossval compares the candle engines with: one module each, one interface.
//!
//! A reference is a [`Reference`]: a name for `--reference`, the models it can run, the rules
//! (name mapping) the diff needs for its record names, and `run`, which computes a [`Task`] and
//! writes its traces, with raw values, into the job's directory. It also declares what it can
//! do ([`Reference::runs`], [`Reference::computes_in`], [`Reference::calibrates`],
//! [`Reference::bisects`]), which the driver enforces for every model. The models and the driver
//! (`crate::model`, `crate::driver`) own everything else: the model files, the engine run, the
//! diff and the report; a reference never imports them. A reference that runs as a program of
//! ours (`--bisect` needs one) has it next to it (`rust.rs`, run through `crate::side`). Adding a
//! reference is one new module here and one line in [`REFERENCES`].

pub(crate) mod cpp;
mod interface;
mod llamacpp;
pub(crate) mod native;
mod numpy;
pub mod rust;
mod torch;

/// `llama-trace` built against llama.cpp and a release trace-ffi (for `cargo xtask bench engine`).
pub use llamacpp::build_program as llama_trace_program;
/// llama.cpp's sources (for `convert_hf_to_gguf.py`, `crate::fixtures`).
pub use llamacpp::sources as llama_cpp_sources;
/// The pinned llama-cpp-python release whose llama.cpp is built.
pub use llamacpp::LLAMA_CPP_VERSION;

use std::fmt::Write as _;

use anyhow::{bail, Result};

pub use crate::task::{Job, Model, Precision, Task};
pub use interface::Reference;

/// Every reference, in the order `--help` lists them.
pub static REFERENCES: &[&dyn Reference] = &[
    &rust::Rust,
    &cpp::Cpp,
    &numpy::Numpy,
    &torch::Torch,
    &llamacpp::LlamaCpp,
];

/// The reference named `name` that runs `model`.
pub fn find(name: &str, model: Model) -> Result<&'static dyn Reference> {
    let candidates: Vec<&str> = REFERENCES
        .iter()
        .filter(|r| r.runs(model))
        .map(|r| r.name())
        .collect();
    match REFERENCES.iter().find(|r| r.name() == name) {
        Some(r) if r.runs(model) => Ok(*r),
        Some(_) => bail!(
            "reference {name:?} cannot run the {} model: expected one of {}",
            model.name(),
            candidates.join(", ")
        ),
        None => bail!(
            "unknown reference {name:?}: expected one of {}",
            candidates.join(", ")
        ),
    }
}

/// The `--reference` lines of `--help` for `model`.
pub fn help(model: Model) -> String {
    let mut s = String::new();
    for r in REFERENCES.iter().filter(|r| r.runs(model)) {
        let default = if Some(r.name()) == model.default_reference() {
            " (default)"
        } else {
            ""
        };
        let _ = writeln!(s, "  {:<10}  {}{default}", r.name(), r.about());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut names: Vec<&str> = REFERENCES.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REFERENCES.len());
        for model in Model::ALL {
            let Some(d) = model.default_reference() else {
                assert!(REFERENCES.iter().all(|r| !r.runs(model)));
                continue;
            };
            assert_eq!(find(d, model).unwrap().name(), d, "{}", model.name());
        }
        assert_eq!(find("cpp", Model::Synthetic).unwrap().name(), "cpp");
        assert_eq!(find("torch", Model::MiniLm).unwrap().name(), "torch");
    }

    #[test]
    fn unknown_or_unfit_references_are_errors_listing_the_choices() {
        let e = format!("{:#}", find("c++", Model::Synthetic).unwrap_err());
        assert!(
            e.contains("unknown reference \"c++\": expected one of rust, cpp"),
            "{e}"
        );
        let e = format!("{:#}", find("cpp", Model::MiniLm).unwrap_err());
        assert!(
            e.contains("cannot run the minilm model: expected one of numpy, torch"),
            "{e}"
        );
    }

    #[test]
    fn help_marks_the_default() {
        let h = help(Model::Synthetic);
        assert!(
            h.contains("rust") && h.contains("(default)") && h.contains("torch"),
            "{h}"
        );
        assert!(!h.contains("numpy"), "{h}");
    }
}
