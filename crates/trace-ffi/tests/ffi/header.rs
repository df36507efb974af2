//! The hand-written header must match the Rust code: every `extern "C" fn` of `src/lib.rs` has a
//! prototype with the same name and C-equivalent types (and no prototype lacks a function), every
//! `pub const TT_*` has a `#define` of the same value, and `tt_context` has the fields of
//! `TtContext` (both in `src/abi.rs`). The compiled layout is checked in `programs.rs` (`layout`).

use std::collections::BTreeMap;

use crate::support::crate_dir;

/// The C spelling of each Rust type used at the boundary; an unknown type fails the test, so a
/// new parameter type needs an entry here (and thought about its C equivalent).
fn c_type(rust: &str) -> String {
    let c = match rust.trim() {
        "" | "()" => "void",
        "i32" => "int32_t",
        "u32" => "uint32_t",
        "i64" => "int64_t",
        "usize" => "size_t",
        "*const c_char" => "const char*",
        "*const c_void" => "const void*",
        "*const i64" => "const int64_t*",
        "*const TtContext" => "const tt_context*",
        other => panic!("no C equivalent known for Rust type `{other}`: extend c_type"),
    };
    c.to_owned()
}

/// Normalizes a C type: single spaces, `*` attached to the type.
fn norm_c(ty: &str) -> String {
    let spaced = ty.replace('*', " * ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    words.join(" ").replace(" *", "*")
}

fn strip_c_comments(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("*/").expect("a closed comment");
        rest = &rest[i + end + 2..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

type Signature = (String, Vec<String>);

/// `name -> (return type, parameter types)` of the `tt_*` prototypes.
fn header_functions(header: &str) -> BTreeMap<String, Signature> {
    let code: String = strip_c_comments(header)
        .lines()
        .filter(|l| {
            let l = l.trim();
            // Preprocessor lines and the C++ guard's braces are no declarations.
            !l.starts_with('#') && l != "extern \"C\" {" && l != "}"
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let (Some(open), Some(close)) = (stmt.find('('), stmt.rfind(')')) else {
            continue;
        };
        let head = &stmt[..open];
        let Some(name) = head
            .split_whitespace()
            .last()
            .map(|n| n.trim_start_matches('*'))
        else {
            continue;
        };
        if !name.starts_with("tt_") || head.contains("typedef") {
            continue;
        }
        let ret = norm_c(&head[..head.len() - name.len()]);
        let params = stmt[open + 1..close].trim();
        let params = if params == "void" {
            Vec::new()
        } else {
            params
                .split(',')
                .map(|p| {
                    let p = norm_c(p);
                    // Drop the parameter name: the last identifier after the type.
                    let cut = p.rfind([' ', '*']).expect("a named parameter");
                    norm_c(&p[..=cut])
                })
                .collect()
        };
        assert!(
            out.insert(name.to_owned(), (ret, params)).is_none(),
            "{name} declared twice"
        );
    }
    out
}

/// The same for the `extern "C" fn`s of the Rust source, in C spelling.
fn rust_functions(src: &str) -> BTreeMap<String, Signature> {
    let mut out = BTreeMap::new();
    for (i, _) in src.match_indices("extern \"C\" fn ") {
        let rest = &src[i + "extern \"C\" fn ".len()..];
        let open = rest.find('(').expect("a parameter list");
        let name = rest[..open].trim();
        if !name.starts_with("tt_") {
            continue;
        }
        let close = open + rest[open..].find(')').expect("a closed parameter list");
        let params = rest[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| c_type(p.split_once(':').expect("`name: type`").1))
            .collect();
        let after = &rest[close + 1..rest.find('{').expect("a body")];
        let ret = c_type(after.trim().strip_prefix("->").unwrap_or(""));
        out.insert(name.to_owned(), (ret, params));
    }
    out
}

/// `TT_*` `#define`s with integer values (INT64_MIN spelled as Rust's `i64::MIN`).
fn header_constants(header: &str) -> BTreeMap<String, String> {
    strip_c_comments(header)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#define "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (name, value) = (words.next()?, words.next()?);
            let value = if value == "INT64_MIN" {
                "i64::MIN"
            } else {
                value
            };
            (name.starts_with("TT_") && (value.parse::<i64>().is_ok() || value == "i64::MIN"))
                .then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn rust_constants(src: &str) -> BTreeMap<String, String> {
    src.lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter(|l| l.starts_with("TT_"))
        .map(|l| {
            let (name, rest) = l.split_once(':').expect("`NAME: type = value;`");
            let value = rest.split_once('=').expect("a value").1;
            (
                name.to_owned(),
                value.trim().trim_end_matches(';').to_owned(),
            )
        })
        .collect()
}

/// Field names and C types of a `#[repr(C)]` Rust struct / C struct.
fn rust_struct(src: &str, name: &str) -> Vec<(String, String)> {
    let start = src
        .find(&format!("pub struct {name} {{"))
        .expect("the struct");
    let body = &src[start..start + src[start..].find('}').expect("a closed struct")];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':'))
        .map(|(f, t)| (f.trim().to_owned(), c_type(t.trim().trim_end_matches(','))))
        .collect()
}

fn c_struct(header: &str, name: &str) -> Vec<(String, String)> {
    let code = strip_c_comments(header);
    let start = code
        .find(&format!("typedef struct {name} {{"))
        .expect("the struct");
    let body = &code[start + code[start..].find('{').unwrap() + 1..];
    let body = &body[..body.find('}').expect("a closed struct")];
    body.split(';')
        .map(norm_c)
        .filter(|f| !f.is_empty())
        .map(|f| {
            let cut = f.rfind([' ', '*']).expect("a typed field");
            (f[cut + 1..].to_owned(), norm_c(&f[..=cut]))
        })
        .collect()
}

fn sources() -> (String, String) {
    let read = |p: &str| std::fs::read_to_string(crate_dir().join(p)).expect(p);
    // The exports live in `lib.rs`, the constants and `TtContext` in `abi.rs`.
    (
        read("include/tensor_trace.h"),
        read("src/lib.rs") + &read("src/abi.rs"),
    )
}

#[test]
fn header_prototypes_match_the_rust_exports() {
    let (header, lib) = sources();
    let (c, rust) = (header_functions(&header), rust_functions(&lib));
    assert!(rust.len() >= 7, "found only {rust:?}");
    assert_eq!(
        c, rust,
        "tensor_trace.h (left) and src/lib.rs + src/abi.rs (right) disagree"
    );
}

#[test]
fn header_constants_match_the_rust_constants() {
    let (header, lib) = sources();
    let (c, rust) = (header_constants(&header), rust_constants(&lib));
    assert!(
        rust.contains_key("TT_UNSET") && rust.contains_key("TT_DTYPE_U8"),
        "{rust:?}"
    );
    assert_eq!(
        c, rust,
        "tensor_trace.h (left) and src/lib.rs + src/abi.rs (right) disagree"
    );
}

#[test]
fn header_struct_matches_the_rust_struct() {
    let (header, lib) = sources();
    let c = c_struct(&header, "tt_context");
    assert_eq!(c, rust_struct(&lib, "TtContext"));
    assert_eq!(c.len(), 3);
}

#[test]
fn the_parsers_see_what_they_should() {
    let h = "#ifdef __cplusplus\nextern \"C\" {\n#endif\n/* x */ int32_t tt_a(const char *name,\n\
             size_t n);\nconst char *tt_b(void);\n#define TT_X 3 /* c */\n#define TT_Y INT64_MIN\n\
             #define TT_H_ONLY\n#ifdef __cplusplus\n}\n#endif\n";
    let f = header_functions(h);
    assert_eq!(
        f["tt_a"],
        (
            "int32_t".into(),
            vec!["const char*".into(), "size_t".into()]
        )
    );
    assert_eq!(f["tt_b"], ("const char*".into(), vec![]));
    let r =
        "pub unsafe extern \"C\" fn tt_a(\n    name: *const c_char,\n    n: usize,\n) -> i32 {\n\
             }\npub extern \"C\" fn tt_b() -> *const c_char { x }\n";
    assert_eq!(rust_functions(r), f);
    let consts = header_constants(h);
    assert_eq!(consts.len(), 2);
    assert_eq!(consts["TT_Y"], "i64::MIN");
}
