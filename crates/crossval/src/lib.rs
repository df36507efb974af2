//! Cross-validation of inference engines: an engine and a reference on the same model, both
//! traced, and the first divergence between them. `cargo xtask crossval` is this crate's
//! [`main`].
//!
//! The layout, one job per module:
//! - [`args`]: the one flag parser (clap) into [`options::Options`];
//! - [`driver`]: the one driver, the same stages for every model;
//! - [`model`]: the models ([`task::Model`]), each a [`model::Harness`]: the synthetic Llama, MiniLM,
//!   the tensor-parallel block (`--tp N`) and SmolLM2's Q4_1 GGUF;
//! - [`reference`](mod@reference): the registry of references, each declaring what it can do;
//! - [`judge`]: how runs are judged, and the one place that calls trace-diff's comparison;
//! - [`bisect`]: `--bisect`, through trace-cli's bisect; [`side`]: the side programs it runs;
//! - [`exec`], [`venv`], [`workspace`], [`package`]: running programs, the Python venv, the
//!   workspace, the published models fetched from PyPI;
//! - [`fixtures`]: transformers against llama.cpp on tiny models of each architecture the
//!   engine views name, and on SmolLM2 (issue #24).
//!
//! Imports go one way: the driver uses the models and the references; the models and the
//! references share only [`task`] and never import each other or the driver.
//!
//! ```no_run
//! // `cargo xtask crossval --steps 2 --inject rope-off-by-one`: 0 agree, 1 diverged, 2 error.
//! let code = crossval::main(&["--steps".into(), "2".into(), "--inject".into(), "rope-off-by-one".into()]);
//! # let _ = code;
//! ```

pub mod args;
pub mod bisect;
pub mod driver;
pub mod exec;
pub mod fixtures;
pub mod judge;
pub mod model;
pub mod options;
pub mod package;
pub mod reference;
pub mod side;
pub mod task;
pub mod venv;
pub mod workspace;

use std::process::ExitCode;

/// `cargo xtask crossval ARGS`: prints the report; 0 agree, 1 diverged, 2 error.
pub fn main(args: &[String]) -> ExitCode {
    let result = args::parse(args).and_then(|parsed| match parsed {
        args::Parsed::Help(text) => {
            print!("{text}");
            Ok(true)
        }
        args::Parsed::Run(o) => driver::execute(&o),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask crossval: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
