//! The workspace's layering, checked against `cargo metadata` (run by `cargo xtask ci` as a test).
//!
//! trace-core depends on no workspace crate and no tensor or CLI library; trace-events sits on
//! trace-core only; the adapters and the diff depend on trace-core (and trace-candle on
//! trace-events), so the diff never needs candle; the crossval product (crates/crossval) sits on
//! the engines, the diff and trace-cli's bisect; xtask, automation only, reaches the crossval
//! through its one entry (`crossval::main`) and its venv.

mod imports;

use std::path::{Path, PathBuf};

/// Module-level rules, checked on the file-level import graph: in the crate (or Python package)
/// at `.0`, files under module `.1` never import module `.2`.
const MODULE_RULES: &[(&str, &str, &str)] = &[
    // The capture half of trace-core writes records; reading a run back is a separate job.
    ("crates/trace-core/src", "tracer", "run"),
    ("crates/trace-core/src", "writer", "run"),
    ("crates/trace-core/src", "sink", "run"),
    ("crates/trace-core/src", "global", "run"),
    ("crates/trace-core/src", "fingerprint", "run"),
    // The background writer is handed records; it never reaches back into the tracer.
    ("crates/trace-core/src", "writer", "tracer"),
    // The format types know nothing of the readers built on them.
    ("crates/trace-events/src", "schema", "realizar"),
    ("crates/trace-events/src", "schema", "load"),
    // The contracts judge a document, whoever recorded it.
    ("crates/trace-events/src", "contracts", "tracer"),
    ("crates/trace-events/src", "render", "tracer"),
    // The candle adapter never needs the example engine built on it.
    ("crates/trace-candle/src", "stream", "engine"),
    // The C ABI's data (codes, limits, `TtContext`) knows nothing of the calls that use it.
    ("crates/trace-ffi/src", "abi", "request"),
    ("crates/trace-ffi/src", "abi", "error"),
    // The tokenizer feeds the model; it never reaches into it.
    ("crates/minilm/src", "tokenize", "model"),
    ("crates/minilm/src", "config", "model"),
    // trace-cli's library (engine runs, bisect, repeat) never imports the binary's commands.
    ("crates/trace-cli/src", "bisect", "cmd"),
    ("crates/trace-cli/src", "repeat", "cmd"),
    ("crates/trace-cli/src", "engine", "cmd"),
    // The crossval: models and references share only `task`; neither imports the other, the
    // driver, the flag parser or the diff's caller (the driver enforces, the judge compares).
    ("crates/crossval/src", "reference", "driver"),
    ("crates/crossval/src", "reference", "model"),
    ("crates/crossval/src", "reference", "args"),
    ("crates/crossval/src", "reference", "judge"),
    ("crates/crossval/src", "model", "driver"),
    ("crates/crossval/src", "model", "reference"),
    ("crates/crossval/src", "model", "args"),
    ("crates/crossval/src", "task", "reference"),
    ("crates/crossval/src", "task", "model"),
    // The views' fixtures use the llama.cpp build and the venv, never the crossval's run: no
    // driver, flag parser or judge; and nothing the crossval runs depends on them.
    ("crates/crossval/src", "fixtures", "driver"),
    ("crates/crossval/src", "fixtures", "args"),
    ("crates/crossval/src", "fixtures", "judge"),
    ("crates/crossval/src", "model", "fixtures"),
    ("crates/crossval/src", "reference", "fixtures"),
    ("crates/crossval/src", "driver", "fixtures"),
    // xtask: `ci` runs the steps; a step never calls back into `ci`.
    ("xtask/src", "bench", "ci"),
    ("xtask/src", "browser", "ci"),
    ("xtask/src", "python", "ci"),
];

/// trace-diff's module-level rules, written for the layout of the `diff` branch (the comparison
/// builder, `pair`, `tolerance`, `baseline`, `outcome`, `options`, `shard/{merge,attribute}`,
/// `format`, `stream`) with the error map's renderers; the lead enables their test once that
/// branch lands.
const DIFF_MODULE_RULES: &[(&str, &str, &str)] = &[
    // The comparison core never imports a renderer (shared number formats are in `format`).
    ("crates/trace-diff/src", "compare", "render"),
    ("crates/trace-diff/src", "diff", "render"),
    ("crates/trace-diff/src", "stream", "render"),
    ("crates/trace-diff/src", "shard", "render"),
    ("crates/trace-diff/src", "pair", "render"),
    ("crates/trace-diff/src", "tolerance", "render"),
    ("crates/trace-diff/src", "baseline", "render"),
    ("crates/trace-diff/src", "outcome", "render"),
    ("crates/trace-diff/src", "report", "render"),
    ("crates/trace-diff/src", "format", "render"),
    ("crates/trace-diff/src", "sketch", "render"),
    // Nor the command line, which sits behind the `cli` feature.
    ("crates/trace-diff/src", "compare", "cli"),
    ("crates/trace-diff/src", "diff", "cli"),
    ("crates/trace-diff/src", "stream", "cli"),
    ("crates/trace-diff/src", "shard", "cli"),
    ("crates/trace-diff/src", "outcome", "cli"),
    ("crates/trace-diff/src", "render", "cli"),
    // Renderers draw a finished `Report`: they never run a comparison.
    ("crates/trace-diff/src", "render", "compare"),
    ("crates/trace-diff/src", "render", "diff"),
    ("crates/trace-diff/src", "render", "stream"),
    ("crates/trace-diff/src", "render", "shard"),
    ("crates/trace-diff/src", "render", "pair"),
    // The two diffs share the judging of a pair and the outcome; neither imports the other,
    // and the pieces they share import neither.
    ("crates/trace-diff/src", "diff", "stream"),
    ("crates/trace-diff/src", "stream", "diff"),
    ("crates/trace-diff/src", "pair", "diff"),
    ("crates/trace-diff/src", "pair", "stream"),
    ("crates/trace-diff/src", "outcome", "diff"),
    ("crates/trace-diff/src", "outcome", "stream"),
    // Only the front door dispatches: nothing below it imports `compare`.
    ("crates/trace-diff/src", "diff", "compare"),
    ("crates/trace-diff/src", "stream", "compare"),
    ("crates/trace-diff/src", "shard", "compare"),
    ("crates/trace-diff/src", "outcome", "compare"),
    // Engine views choose and compose rules from runs' names, above the comparison: the
    // comparison never imports them, and they never run one or draw a report.
    ("crates/trace-diff/src", "compare", "views"),
    ("crates/trace-diff/src", "diff", "views"),
    ("crates/trace-diff/src", "stream", "views"),
    ("crates/trace-diff/src", "pair", "views"),
    ("crates/trace-diff/src", "baseline", "views"),
    ("crates/trace-diff/src", "outcome", "views"),
    ("crates/trace-diff/src", "rules", "views"),
    ("crates/trace-diff/src", "views", "compare"),
    ("crates/trace-diff/src", "views", "diff"),
    ("crates/trace-diff/src", "views", "stream"),
    ("crates/trace-diff/src", "views", "render"),
    ("crates/trace-diff/src", "views", "cli"),
];

/// The `src/` directory of every workspace crate and xtask, under the workspace root `root`.
fn rust_sources(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("src")))
                .collect()
        })
        .unwrap_or_default();
    dirs.push(root.join("xtask/src"));
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    dirs
}

/// The Python package's compiled submodules (`module-name` in python/pyproject.toml, built by
/// maturin from crates/trace-py): imported by name, no `.py` file.
const PYTHON_NATIVE_MODULES: &[&str] = &["_native"];

/// Every file import cycle under `root` (Rust crates and the Python package), one per line.
pub fn import_cycles(root: &Path) -> Vec<String> {
    let mut cycles = imports::rust_graph(root, &rust_sources(root)).cycles();
    let package = root.join("python/src/tensor_trace");
    cycles.extend(imports::python_graph(root, &package, PYTHON_NATIVE_MODULES).cycles());
    cycles
}

/// Violations of `rules` (see [`MODULE_RULES`]) under `root`, and rules naming no module.
fn module_rule_violations(root: &Path, rules: &[(&str, &str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for &(src, module, forbidden) in rules {
        let graph = imports::rust_graph(root, &[root.join(src)]);
        for name in [module, forbidden] {
            if !graph.has_module(name) {
                out.push(format!("{src}: rule names no module {name}"));
            }
        }
        for edge in graph.forbidden_edges(module, forbidden) {
            out.push(format!(
                "{src}: {module} must not import {forbidden}: {edge}"
            ));
        }
    }
    out
}

/// Workspace crates each crate may depend on (normal and build dependencies).
const ALLOWED_WORKSPACE_DEPS: &[(&str, &[&str])] = &[
    ("trace-core", &[]),
    ("trace-events", &["trace-core"]),
    ("trace-diff", &["trace-core"]),
    ("trace-candle", &["trace-core", "trace-events"]),
    ("trace-ffi", &["trace-core"]),
    // The Python extension reuses the C ABI's checked, strided capture (`record_strided`).
    ("trace-py", &["trace-core", "trace-ffi"]),
    ("reference-engine", &["trace-core"]),
    ("minilm", &["trace-core", "trace-candle"]),
    (
        "crossval",
        &[
            "trace-core",
            "trace-events",
            "trace-candle",
            "trace-diff",
            "trace-cli",
            "reference-engine",
            "minilm",
        ],
    ),
    ("xtask", &["crossval", "trace-core"]),
];

/// External crates a crate must never depend on (normal dependencies).
const FORBIDDEN_EXTERNAL: &[(&str, &[&str])] = &[
    (
        "trace-core",
        &["candle-core", "clap", "anstream", "owo-colors", "anyhow"],
    ),
    (
        "trace-events",
        &["candle-core", "clap", "anstream", "owo-colors", "anyhow"],
    ),
    ("trace-diff", &["candle-core"]),
    ("reference-engine", &["candle-core"]),
    ("trace-ffi", &["candle-core", "clap"]),
    ("trace-py", &["candle-core", "clap"]),
    // candle-core is known to trace-candle, minilm, the crossval and trace-cli's `gguf` (its
    // GGUF dequantizer) only.
    ("xtask", &["candle-core"]),
];

/// Violations of the layering in `metadata` (the JSON of `cargo metadata --no-deps`).
pub fn violations(metadata: &serde_json::Value) -> Vec<String> {
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let workspace: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut out = Vec::new();
    for package in &packages {
        let name = package["name"].as_str().unwrap_or_default();
        let deps = package["dependencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for dep in &deps {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let kind = dep["kind"].as_str(); // null = normal, "dev", "build"
            if kind == Some("dev") {
                continue;
            }
            if workspace.contains(&dep_name) {
                if let Some((_, allowed)) = ALLOWED_WORKSPACE_DEPS.iter().find(|(p, _)| *p == name)
                {
                    if !allowed.contains(&dep_name) {
                        out.push(format!(
                            "{name} must not depend on workspace crate {dep_name}"
                        ));
                    }
                }
            } else if let Some((_, forbidden)) = FORBIDDEN_EXTERNAL.iter().find(|(p, _)| *p == name)
            {
                if forbidden.contains(&dep_name) {
                    out.push(format!("{name} must not depend on {dep_name}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_layering_holds() {
        let output = crossval::workspace::cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let found = violations(&metadata);
        assert!(
            found.is_empty(),
            "layering violations:\n{}",
            found.join("\n")
        );
        let names: Vec<&str> = metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"trace-core") && names.contains(&"trace-diff"));
    }

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn no_file_import_cycles() {
        let root = workspace_root();
        let cycles = import_cycles(&root.canonicalize().unwrap());
        assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    }

    #[test]
    fn no_import_cycles_in_trace_core_and_trace_events() {
        let root = workspace_root().canonicalize().unwrap();
        let srcs = [
            root.join("crates/trace-core/src"),
            root.join("crates/trace-events/src"),
        ];
        let graph = imports::rust_graph(&root, &srcs);
        assert!(graph.has_module("run::stream") && graph.has_module("load"));
        let cycles = graph.cycles();
        assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    }

    /// Every crate but trace-diff (whose restructuring on the `diff` branch removes its cycles;
    /// `no_file_import_cycles` covers it and the Python package once that lands).
    #[test]
    fn no_import_cycles_outside_trace_diff() {
        let root = workspace_root().canonicalize().unwrap();
        let mut srcs = rust_sources(&root);
        srcs.retain(|d| !d.ends_with("crates/trace-diff/src"));
        assert!(srcs.iter().any(|d| d.ends_with("crates/minilm/src")) && srcs.len() >= 10);
        let cycles = imports::rust_graph(&root, &srcs).cycles();
        assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    }

    #[test]
    fn module_rules_hold() {
        let root = workspace_root().canonicalize().unwrap();
        let found = module_rule_violations(&root, MODULE_RULES);
        assert!(
            found.is_empty(),
            "module rules broken:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn diff_module_rules_hold() {
        let root = workspace_root().canonicalize().unwrap();
        let found = module_rule_violations(&root, DIFF_MODULE_RULES);
        assert!(
            found.is_empty(),
            "module rules broken:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn a_broken_module_rule_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("core")).unwrap();
        std::fs::write(src.join("lib.rs"), "mod core;\nmod render;\n").unwrap();
        std::fs::write(src.join("core/mod.rs"), "mod diff;\n").unwrap();
        std::fs::write(
            src.join("core/diff.rs"),
            "fn f() { crate::render::text(); }\n",
        )
        .unwrap();
        std::fs::write(src.join("render.rs"), "pub fn text() {}\n").unwrap();
        let rules = [
            ("src", "core", "render"),
            ("src", "render", "core"),
            ("src", "core", "html"),
        ];
        assert_eq!(
            module_rule_violations(dir.path(), &rules),
            [
                "src: core must not import render: src/core/diff.rs -> src/render.rs",
                "src: rule names no module html",
            ]
        );
    }

    #[test]
    fn a_forbidden_edge_is_reported() {
        let metadata = serde_json::json!({"packages": [
            {"name": "trace-core", "dependencies": [{"name": "trace-diff", "kind": null}, {"name": "candle-core", "kind": null}]},
            {"name": "trace-diff", "dependencies": [{"name": "trace-core", "kind": null}, {"name": "candle-core", "kind": "dev"}]},
        ]});
        assert_eq!(
            violations(&metadata),
            [
                "trace-core must not depend on workspace crate trace-diff",
                "trace-core must not depend on candle-core"
            ]
        );
    }
}
