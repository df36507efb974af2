//! The workspace's layering, checked against `cargo metadata` (run by `cargo xtask ci` as a test).
//!
//! trace-core depends on no workspace crate and no tensor or CLI library; trace-events sits on
//! trace-core only; the adapters and the diff depend on trace-core (and trace-candle on
//! trace-events), so the diff never needs candle; only the top (trace-cli, xtask) may depend on
//! everything.

/// Workspace crates each crate may depend on (normal and build dependencies).
const ALLOWED_WORKSPACE_DEPS: &[(&str, &[&str])] = &[
    ("trace-core", &[]),
    ("trace-events", &["trace-core"]),
    ("trace-diff", &["trace-core"]),
    ("trace-candle", &["trace-core", "trace-events"]),
    ("trace-ffi", &["trace-core"]),
    ("reference-engine", &["trace-core"]),
    ("minilm", &["trace-core", "trace-candle"]),
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
        let output = crate::cargo()
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
