//! The file-level import graph of Rust crates and of the Python package, its cycles, and the
//! module-level rules ("files under module X never import module Y") checked on it.
//!
//! Plain text scanning, no parser dependency. Rust: the module tree is followed from
//! `lib.rs`/`main.rs` through `mod x;` (`x.rs` or `x/mod.rs`) and inline `mod x { .. }`; an edge
//! goes from a file to the file that defines what a path names: `use crate::a::b`, `use
//! super::x`, `use child::y`, and `crate::`/`super::`/`self::`/`child::` paths in code. A name
//! re-exported with `pub use` resolves to the file that defines it, so `use crate::Error` is an
//! edge to `error.rs`, not to `lib.rs`, and a `pub use` is no edge by itself (a facade `lib.rs`
//! or `mod.rs` is a table of contents). Items under `#[cfg(test)]` (or `cfg(all(test, ..))`)
//! are left out: a unit test that builds its input with another module is not a layering edge. Python: every `import` and
//! `from .. import` in a module (also inside functions), resolved to the module's file.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// A file-level import graph: nodes are files (named by path), edges "imports from".
#[derive(Debug, Default)]
pub struct Graph {
    /// Each file's module path (`["run", "stream"]`; `[]` for the crate root).
    modules: BTreeMap<String, Vec<String>>,
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn node(&mut self, file: &str, module: Vec<String>) {
        self.modules.insert(file.to_owned(), module);
        self.edges.entry(file.to_owned()).or_default();
    }

    fn edge(&mut self, from: &str, to: &str) {
        if from != to {
            self.edges
                .entry(from.to_owned())
                .or_default()
                .insert(to.to_owned());
        }
    }

    /// Whether some file is module `module` (`a::b`) or under it.
    pub fn has_module(&self, module: &str) -> bool {
        let want: Vec<&str> = module.split("::").collect();
        self.modules
            .values()
            .any(|m| m.len() >= want.len() && m.iter().zip(&want).all(|(a, b)| a == b))
    }

    /// Every import cycle, one line each: `a.rs -> b.rs -> a.rs` (the shortest cycle through
    /// each file of each strongly connected group, without repeats).
    pub fn cycles(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for file in self.edges.keys() {
            if let Some(cycle) = self.shortest_cycle(file) {
                // Rotate so the smallest file comes first: one spelling per cycle.
                let body = &cycle[..cycle.len() - 1];
                let start = (0..body.len()).min_by_key(|&i| &body[i]).unwrap_or(0);
                let mut rotated: Vec<&str> = body[start..]
                    .iter()
                    .chain(&body[..start])
                    .map(String::as_str)
                    .collect();
                rotated.push(rotated[0]);
                out.insert(rotated.join(" -> "));
            }
        }
        out.into_iter().collect()
    }

    /// The shortest path `file -> .. -> file`, by breadth-first search.
    fn shortest_cycle(&self, file: &str) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue: VecDeque<&str> = VecDeque::from([file]);
        while let Some(at) = queue.pop_front() {
            for next in self.edges.get(at).into_iter().flatten() {
                if next == file {
                    let mut path = vec![file.to_owned()];
                    let mut step = at;
                    while step != file {
                        path.push(step.to_owned());
                        step = came_from[step];
                    }
                    path.push(file.to_owned());
                    path.reverse();
                    return Some(path);
                }
                if !came_from.contains_key(next.as_str()) {
                    came_from.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Edges from a file under module `module` to a file under module `forbidden` (a module
    /// path such as `run` or `render::html`; a file is under a module when its module path
    /// starts with it), one line each: `a.rs -> b.rs`.
    pub fn forbidden_edges(&self, module: &str, forbidden: &str) -> Vec<String> {
        let under = |file: &str, prefix: &str| {
            let prefix: Vec<&str> = prefix.split("::").filter(|s| !s.is_empty()).collect();
            self.modules.get(file).is_some_and(|m| {
                m.len() >= prefix.len() && m.iter().zip(&prefix).all(|(a, b)| a == b)
            })
        };
        let mut out = Vec::new();
        for (from, tos) in &self.edges {
            if !under(from, module) {
                continue;
            }
            for to in tos {
                if under(to, forbidden) && !under(to, module) {
                    out.push(format!("{from} -> {to}"));
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Rust

/// One token of Rust source with comments, strings and character literals removed.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Tokens of `text`: identifiers, `::` and single punctuation; literals and comments dropped.
fn lex(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if let Some(next) = skip_comment_or_literal(text, i) {
            i = next;
            continue;
        }
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if b.get(i) == Some(&b'"') && matches!(&text[start..i], "b" | "c") {
                continue; // b"..": the string is skipped on the next turn
            }
            out.push(Tok::Ident(text[start..i].to_owned()));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push(Tok::Path);
            i += 2;
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
        } else {
            if !c.is_ascii_whitespace() {
                out.push(Tok::Punct(c as char));
            }
            i += 1;
        }
    }
    out
}

/// When a comment, string or character literal starts at `i`: the index after it.
fn skip_comment_or_literal(text: &str, i: usize) -> Option<usize> {
    let b = text.as_bytes();
    let c = b[i];
    if b[i..].starts_with(b"//") {
        return Some(
            b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n),
        );
    }
    if b[i..].starts_with(b"/*") {
        return Some(skip_block_comment(b, i));
    }
    if c == b'"' {
        return Some(skip_string(b, i + 1));
    }
    if c == b'r' || c == b'b' {
        let (hashes, body) = raw_string_start(b, i)?;
        let close: Vec<u8> = std::iter::once(b'"')
            .chain(std::iter::repeat_n(b'#', hashes))
            .collect();
        let end = (body..b.len()).find(|&j| b[j..].starts_with(&close));
        return Some(end.map_or(b.len(), |e| e + close.len()));
    }
    if c != b'\'' {
        return None;
    }
    // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a, lexed as an identifier).
    if b.get(i + 1) == Some(&b'\\') {
        let close = (i + 2..b.len()).find(|&j| b[j] == b'\'');
        return Some(close.map_or(b.len(), |e| e + 1));
    }
    let len = text[i + 1..].chars().next().map_or(0, char::len_utf8);
    Some(if b.get(i + 1 + len) == Some(&b'\'') {
        i + len + 2
    } else {
        i + 1
    })
}

/// Index after the (possibly nested) block comment starting at `i`.
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Index after the closing quote of a string whose body starts at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'"' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// For `r"`, `r#"`, `br##"` at `i`: the number of `#` and the index where the body starts.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i + usize::from(b[i] == b'b');
    if b.get(j) != Some(&b'r') || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
    {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some((hashes, j + hashes + 1))
}

/// A module of a crate: its file and what it declares.
#[derive(Debug, Default)]
struct Module {
    file: String,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    /// Names brought in by `use` (public or not: child modules see private ones): alias ->
    /// (module the `use` is in, the path as written).
    reexports: BTreeMap<String, (usize, Vec<String>)>,
}

/// A path named in a module, to be resolved once every module is known.
struct Reference {
    file: String,
    module: usize,
    path: Vec<String>,
}

/// Scanned crate: its modules and the paths its files name.
#[derive(Default)]
struct Crate {
    modules: Vec<Module>,
    references: Vec<Reference>,
}

/// The file-level import graph of the crates whose `src/` directories are `srcs`; files are
/// named relative to `base`.
pub fn rust_graph(base: &Path, srcs: &[PathBuf]) -> Graph {
    let mut graph = Graph::default();
    for src in srcs {
        for root in ["lib.rs", "main.rs"] {
            let path = src.join(root);
            if path.is_file() {
                let mut krate = Crate::default();
                krate.load(base, &path, None, String::new());
                krate.add_to(&mut graph);
            }
        }
    }
    graph
}

fn display(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

impl Crate {
    /// Reads the module in `path` (and, recursively, the files it declares).
    fn load(&mut self, base: &Path, path: &Path, parent: Option<usize>, name: String) {
        let Ok(text) = fs::read_to_string(path) else {
            return;
        };
        let file = display(base, path);
        let id = self.module(file.clone(), parent, name);
        // `foo.rs` keeps its children in `foo/`; `lib.rs`, `main.rs` and `mod.rs` beside it.
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let dir = match stem {
            "lib" | "main" | "mod" if parent.is_none() || stem == "mod" => {
                path.parent().unwrap_or(Path::new("")).to_owned()
            }
            _ => path.with_extension(""),
        };
        let tokens = lex(&text);
        self.scan(base, &tokens, &file, id, &dir);
    }

    fn module(&mut self, file: String, parent: Option<usize>, name: String) -> usize {
        let id = self.modules.len();
        self.modules.push(Module {
            file,
            parent,
            ..Module::default()
        });
        if let Some(p) = parent {
            self.modules[p].children.insert(name, id);
        }
        id
    }

    /// Walks the tokens of one file, tracking inline modules by brace depth.
    fn scan(&mut self, base: &Path, t: &[Tok], file: &str, top: usize, dir: &Path) {
        // (module, brace depth at which it closes, its directory)
        let mut stack: Vec<(usize, usize, PathBuf)> = vec![(top, 0, dir.to_owned())];
        let mut depth = 0usize;
        let mut i = 0;
        while i < t.len() {
            let (module, _, dir) = stack.last().cloned().unwrap_or((top, 0, dir.to_owned()));
            let next = match &t[i] {
                Tok::Punct('#') if is_cfg_test(t, i) => skip_item(t, skip_attributes(t, i)),
                Tok::Punct('{') => {
                    depth += 1;
                    i + 1
                }
                Tok::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if stack.len() > 1 && stack.last().is_some_and(|s| s.1 > depth) {
                        stack.pop();
                    }
                    i + 1
                }
                Tok::Ident(kw) if kw == "mod" => match (t.get(i + 1), t.get(i + 2)) {
                    (Some(Tok::Ident(name)), Some(Tok::Punct(';'))) => {
                        let candidates = [
                            dir.join(format!("{name}.rs")),
                            dir.join(name).join("mod.rs"),
                        ];
                        if let Some(path) = candidates.iter().find(|p| p.is_file()) {
                            self.load(base, path, Some(module), name.clone());
                        }
                        i + 3
                    }
                    (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) => {
                        let id = self.module(file.to_owned(), Some(module), name.clone());
                        depth += 1;
                        stack.push((id, depth, dir.join(name)));
                        i + 3
                    }
                    _ => i + 1,
                },
                Tok::Ident(kw) if kw == "use" => self.use_item(t, i, file, module),
                Tok::Ident(_)
                    if t.get(i + 1) == Some(&Tok::Path) && (i == 0 || t[i - 1] != Tok::Path) =>
                {
                    self.code_path(t, i, file, module)
                }
                _ => i + 1,
            };
            i = next;
        }
    }

    /// Records the `use` item at `i`; returns the index after it.
    fn use_item(&mut self, t: &[Tok], i: usize, file: &str, module: usize) -> usize {
        // A `pub use` only re-exports: paths through it resolve to the file that defines the
        // name, so a facade `lib.rs` is no edge of its own.
        let reexport = i > 0 && is_public(t, i);
        let end = (i..t.len())
            .find(|&j| t[j] == Tok::Punct(';'))
            .unwrap_or(t.len());
        for (path, alias) in use_paths(&t[i + 1..end]) {
            if let Some(alias) = alias {
                self.modules[module]
                    .reexports
                    .insert(alias, (module, path.clone()));
            }
            if !reexport {
                self.reference(file, module, path);
            }
        }
        end + 1
    }

    /// Records the path `a::b::c` starting at `i` in code; returns the index after it.
    fn code_path(&mut self, t: &[Tok], i: usize, file: &str, module: usize) -> usize {
        let mut path = Vec::new();
        let mut j = i;
        while let Some(Tok::Ident(seg)) = t.get(j) {
            path.push(seg.clone());
            if t.get(j + 1) != Some(&Tok::Path) {
                j += 1;
                break;
            }
            j += 2;
        }
        self.reference(file, module, path);
        j
    }

    fn reference(&mut self, file: &str, module: usize, path: Vec<String>) {
        self.references.push(Reference {
            file: file.to_owned(),
            module,
            path,
        });
    }

    /// The file defining what `path` (written in module `from`) names, if it is in this crate.
    fn resolve(&self, from: usize, path: &[String], hops: usize) -> Option<usize> {
        let (mut at, rest) = match path.first().map(String::as_str) {
            Some("crate") => (0, &path[1..]),
            Some("self") => (from, &path[1..]),
            Some("super") => {
                let mut at = from;
                let mut n = 0;
                while path.get(n).map(String::as_str) == Some("super") {
                    at = self.modules[at].parent?;
                    n += 1;
                }
                (at, &path[n..])
            }
            Some(first)
                if self.modules[from].children.contains_key(first)
                    || self.modules[from].reexports.contains_key(first) =>
            {
                (from, path)
            }
            _ => return None,
        };
        let mut rest = rest;
        while let Some(seg) = rest.first() {
            if let Some(&child) = self.modules[at].children.get(seg) {
                at = child;
                rest = &rest[1..];
            } else if let Some((module, target)) = self.modules[at].reexports.get(seg) {
                if hops > 8 {
                    return Some(at);
                }
                return self.resolve(*module, target, hops + 1).or(Some(at));
            } else {
                break;
            }
        }
        Some(at)
    }

    fn add_to(&self, graph: &mut Graph) {
        let mut paths: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (id, m) in self.modules.iter().enumerate() {
            paths.entry(&m.file).or_insert_with(|| self.module_path(id));
        }
        for (file, module) in paths {
            graph.node(file, module);
        }
        for r in &self.references {
            if let Some(target) = self.resolve(r.module, &r.path, 0) {
                graph.edge(&r.file, &self.modules[target].file);
            }
        }
    }

    fn module_path(&self, mut id: usize) -> Vec<String> {
        let mut names = Vec::new();
        while let Some(parent) = self.modules[id].parent {
            let name = self.modules[parent]
                .children
                .iter()
                .find(|(_, &c)| c == id)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            names.push(name);
            id = parent;
        }
        names.reverse();
        names
    }
}

/// Whether `#` at `i` opens a test-only attribute: `#[cfg(test)]`, `#[cfg(all(test, ..))]`.
fn is_cfg_test(t: &[Tok], i: usize) -> bool {
    if t.get(i + 1) != Some(&Tok::Punct('[')) || t.get(i + 2) != Some(&Tok::Ident("cfg".into())) {
        return false;
    }
    let end = skip_attributes(t, i).min(t.len());
    let ident = |name: &str| t[i..end].contains(&Tok::Ident(name.into()));
    ident("test") && !ident("not") && !ident("any")
}

/// The index after the attributes starting at `i` (`#[..]` groups).
fn skip_attributes(t: &[Tok], mut i: usize) -> usize {
    while t.get(i) == Some(&Tok::Punct('#')) && t.get(i + 1) == Some(&Tok::Punct('[')) {
        i = skip_group(t, i + 1, '[', ']');
    }
    i
}

/// The index after the item starting at `i`: at its `;` or after its `{ .. }` block.
fn skip_item(t: &[Tok], mut i: usize) -> usize {
    while i < t.len() {
        match t[i] {
            Tok::Punct(';') => return i + 1,
            Tok::Punct('{') => return skip_group(t, i, '{', '}'),
            _ => i += 1,
        }
    }
    i
}

/// The index after the `close` that matches the `open` at `i`.
fn skip_group(t: &[Tok], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < t.len() {
        if t[i] == Tok::Punct(open) {
            depth += 1;
        } else if t[i] == Tok::Punct(close) {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// Whether the `use` at `i` is `pub use`, `pub(crate) use`, ...
fn is_public(t: &[Tok], i: usize) -> bool {
    match &t[i - 1] {
        Tok::Ident(p) => p == "pub",
        Tok::Punct(')') => (i.saturating_sub(6)..i).any(|j| t[j] == Tok::Ident("pub".into())),
        _ => false,
    }
}

/// The paths of a use tree (`a::{b, c::d as e, self}`) with the name each brings in scope.
fn use_paths(t: &[Tok]) -> Vec<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    use_tree(t, &mut 0, &[], &mut out);
    out
}

fn use_tree(
    t: &[Tok],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    while *i < t.len() {
        match &t[*i] {
            Tok::Ident(name) if name == "as" => {
                *i += 1;
                if let Some(Tok::Ident(alias)) = t.get(*i) {
                    out.push((path.clone(), Some(alias.clone())));
                    *i += 1;
                }
                return;
            }
            Tok::Ident(name) if name == "self" && !path.is_empty() => {
                out.push((path.clone(), path.last().cloned()));
                *i += 1;
                return;
            }
            Tok::Ident(name) => {
                path.push(name.clone());
                *i += 1;
                if t.get(*i) != Some(&Tok::Path) {
                    let alias = (t.get(*i) != Some(&Tok::Ident("as".into()))).then(|| name.clone());
                    if alias.is_some() {
                        out.push((path.clone(), alias));
                        return;
                    }
                }
            }
            Tok::Path => *i += 1,
            Tok::Punct('*') => {
                out.push((path.clone(), None));
                *i += 1;
                return;
            }
            Tok::Punct('{') => {
                *i += 1;
                while *i < t.len() && t[*i] != Tok::Punct('}') {
                    let before = *i;
                    use_tree(t, i, &path, out);
                    if t.get(*i) == Some(&Tok::Punct(',')) || *i == before {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => return,
        }
    }
    if path.len() > prefix.len() {
        out.push((path.clone(), path.last().cloned()));
    }
}

// ---------------------------------------------------------------------------------------------
// Python

/// The import graph of the Python package in `package` (a directory with `__init__.py`), whose
/// import name is its directory name; files are named relative to `base`. `native` names the
/// package's compiled submodules (`_native`): they have no `.py` file, so `from . import
/// _native` imports that module, not a name of `__init__.py`, and a compiled module imports
/// no file of the package.
pub fn python_graph(base: &Path, package: &Path, native: &[&str]) -> Graph {
    let mut graph = Graph::default();
    let name = package
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let mut files = Vec::new();
    collect_py(package, &mut files);
    for path in &files {
        graph.node(&display(base, path), py_module(package, path));
    }
    for path in &files {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let module = py_module(package, path);
        let is_package = path.file_name().is_some_and(|n| n == "__init__.py");
        let from = display(base, path);
        for (target, names) in py_imports(&strip_py(&text), &name, &module, is_package) {
            // `from x import a, b`: each name that is a module is an edge to it; any other
            // name comes from x itself.
            let mut from_base = names.is_empty();
            for n in &names {
                let mut sub = target.clone();
                sub.push(n.clone());
                if native.contains(&sub.join(".").as_str()) {
                    continue;
                }
                match py_file(package, &sub) {
                    Some(file) => graph.edge(&from, &display(base, &file)),
                    None => from_base = true,
                }
            }
            if let Some(file) = py_file(package, &target).filter(|_| from_base) {
                graph.edge(&from, &display(base, &file));
            }
        }
    }
    graph
}

fn collect_py(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() && path.join("__init__.py").is_file() {
            collect_py(&path, out);
        } else if path.extension().is_some_and(|e| e == "py") {
            out.push(path);
        }
    }
}

/// `pkg/a/b.py` -> `["a", "b"]`; `pkg/a/__init__.py` -> `["a"]`.
fn py_module(package: &Path, path: &Path) -> Vec<String> {
    let rel = path
        .strip_prefix(package)
        .unwrap_or(path)
        .with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "__init__") {
        parts.pop();
    }
    parts
}

/// The file of a module path inside the package (`a/b.py` or `a/b/__init__.py`), if any.
fn py_file(package: &Path, module: &[String]) -> Option<PathBuf> {
    let dir: PathBuf = package.join(module.iter().collect::<PathBuf>());
    let file = dir.with_extension("py");
    if !module.is_empty() && file.is_file() {
        return Some(file);
    }
    Some(dir.join("__init__.py")).filter(|p| p.is_file())
}

/// Source without comments and string literals (docstrings included), lines kept.
fn strip_py(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '#' {
            let end = rest.find('\n').unwrap_or(rest.len());
            rest = &rest[end..];
        } else if rest.starts_with("\"\"\"") || rest.starts_with("'''") {
            let quote = &rest[..3];
            let end = rest[3..].find(quote).map_or(rest.len(), |e| e + 6);
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            rest = &rest[end..];
        } else if c == '"' || c == '\'' {
            let bytes = rest.as_bytes();
            let mut end = 1;
            while end < bytes.len() && bytes[end] != c as u8 && bytes[end] != b'\n' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            rest = &rest[(end + 1).min(rest.len())..];
            out.push_str("''");
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// What a module imports, as (module path inside the package, names imported from it).
fn py_imports(
    text: &str,
    package: &str,
    module: &[String],
    is_package: bool,
) -> Vec<(Vec<String>, Vec<String>)> {
    // The package a relative import starts from: the module itself for `__init__.py`.
    let here = if is_package {
        module
    } else {
        &module[..module.len().saturating_sub(1)]
    };
    let mut out = Vec::new();
    for line in joined_lines(text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["import", rest @ ..] => {
                for name in rest.join(" ").split(',') {
                    let name = name.split_whitespace().next().unwrap_or_default();
                    let mut parts = name.split('.');
                    if parts.next() == Some(package) {
                        out.push((parts.map(String::from).collect(), Vec::new()));
                    }
                }
            }
            ["from", from, "import", names @ ..] => {
                let dots = from.chars().take_while(|&c| c == '.').count();
                let mut base: Vec<String> = if dots > 0 {
                    here[..here.len().saturating_sub(dots - 1)].to_vec()
                } else if from.split('.').next() == Some(package) {
                    Vec::new()
                } else {
                    continue;
                };
                let skip = usize::from(dots == 0);
                base.extend(
                    from[dots..]
                        .split('.')
                        .skip(skip)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                let names = names.join(" ").replace(['(', ')'], " ");
                let names = names
                    .split(',')
                    .filter_map(|n| n.split_whitespace().next())
                    .map(String::from)
                    .collect();
                out.push((base, names));
            }
            _ => {}
        }
    }
    out
}

/// Logical lines: a parenthesized `from x import (a,\n b)` joined into one.
fn joined_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut open = 0i32;
    for line in text.lines() {
        current.push(' ');
        current.push_str(line.trim_end_matches('\\'));
        open += line.matches('(').count() as i32 - line.matches(')').count() as i32;
        if open <= 0 && !line.ends_with('\\') {
            out.push(std::mem::take(&mut current).trim().to_owned());
            open = 0;
        }
    }
    out.push(current.trim().to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path, text) under a fresh directory.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    /// The cycles of the Rust crate in `src/` of `files`.
    fn rust_cycles(files: &[(&str, &str)]) -> Vec<String> {
        let dir = tree(files);
        rust_graph(dir.path(), &[dir.path().join("src")]).cycles()
    }

    #[test]
    fn a_cycle_is_found_in_the_file_layout() {
        let cycles = rust_cycles(&[
            (
                "src/lib.rs",
                "mod tracer;\nmod writer;\npub use tracer::Tracer;\n",
            ),
            (
                "src/tracer.rs",
                "use crate::writer::Writer;\npub struct Tracer;\n",
            ),
            (
                "src/writer.rs",
                "pub struct Writer;\nfn f() { crate::Tracer; }\n",
            ),
        ]);
        assert_eq!(cycles, ["src/tracer.rs -> src/writer.rs -> src/tracer.rs"]);
    }

    #[test]
    fn a_cycle_is_found_in_the_mod_rs_layout_through_super_and_a_child_path() {
        let cycles = rust_cycles(&[
            ("src/lib.rs", "pub mod run;\n"),
            (
                "src/run/mod.rs",
                "mod stream;\npub struct Run;\nfn f() { stream::open(); }\n",
            ),
            ("src/run/stream.rs", "use super::Run;\npub fn open() {}\n"),
        ]);
        assert_eq!(
            cycles,
            ["src/run/mod.rs -> src/run/stream.rs -> src/run/mod.rs"]
        );
    }

    #[test]
    fn foo_rs_keeps_its_children_in_foo_dir() {
        let dir = tree(&[
            ("src/lib.rs", "mod layering;\n"),
            ("src/layering.rs", "mod imports;\nuse imports::Graph;\n"),
            (
                "src/layering/imports.rs",
                "pub struct Graph;\nuse super::*;\n",
            ),
        ]);
        let graph = rust_graph(dir.path(), &[dir.path().join("src")]);
        assert!(graph.has_module("layering::imports"));
        assert_eq!(
            graph.cycles(),
            ["src/layering.rs -> src/layering/imports.rs -> src/layering.rs"]
        );
    }

    #[test]
    fn a_clean_tree_is_clean() {
        let cycles = rust_cycles(&[
            (
                "src/lib.rs",
                "//! Uses crate::b in a comment.\nmod a;\nmod b;\npub use a::A;\npub use b::{self, B as Bee};\n",
            ),
            ("src/a.rs", "use crate::Bee;\npub struct A(Bee);\n"),
            (
                "src/b.rs",
                "pub struct B;\nconst S: &str = \"crate::a::A\";\nconst R: &str = r#\"super::a\"#;\n\
                 fn f<'a>(x: &'a str) -> char { 'a' }\n\
                 #[cfg(test)]\nmod tests {\n    use crate::A;\n}\n",
            ),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }

    #[test]
    fn inline_modules_resolve_super_to_their_file() {
        let dir = tree(&[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            (
                "src/a.rs",
                "pub struct A;\nmod inner {\n    use super::A;\n    fn f() { crate::b::g(); }\n}\n",
            ),
            ("src/b.rs", "pub fn g() {}\nfn h() { crate::a::A; }\n"),
        ]);
        let graph = rust_graph(dir.path(), &[dir.path().join("src")]);
        assert_eq!(graph.cycles(), ["src/a.rs -> src/b.rs -> src/a.rs"]);
        assert_eq!(graph.forbidden_edges("b", "a"), ["src/b.rs -> src/a.rs"]);
    }

    #[test]
    fn python_cycles_through_relative_and_absolute_imports() {
        let dir = tree(&[
            ("pkg/__init__.py", "from ._a import A\nfrom . import _b\n"),
            (
                "pkg/_a.py",
                "\"\"\"from ._b import nothing\"\"\"\nfrom ._b import (\n    B,\n)\n",
            ),
            ("pkg/_b.py", "def f():\n    import pkg._a\n"),
            (
                "pkg/_c.py",
                "# from ._a import A\nfrom . import _b\nimport numpy\n",
            ),
        ]);
        let graph = python_graph(dir.path(), &dir.path().join("pkg"), &[]);
        assert_eq!(graph.cycles(), ["pkg/_a.py -> pkg/_b.py -> pkg/_a.py"]);
        assert_eq!(
            graph.forbidden_edges("_c", "_b"),
            ["pkg/_c.py -> pkg/_b.py"]
        );
        assert!(graph.forbidden_edges("_c", "_a").is_empty());
    }

    #[test]
    fn a_compiled_submodule_is_no_edge_to_the_package() {
        let dir = tree(&[
            (
                "pkg/__init__.py",
                "from . import _native
from ._t import T
",
            ),
            (
                "pkg/_t.py",
                "from . import _native
from ._native import f
",
            ),
        ]);
        let native = python_graph(dir.path(), &dir.path().join("pkg"), &["_native"]);
        assert!(native.cycles().is_empty(), "{:?}", native.cycles());
        // Without the declaration `_native` reads as a name of `__init__.py`.
        let plain = python_graph(dir.path(), &dir.path().join("pkg"), &[]);
        assert_eq!(
            plain.cycles(),
            ["pkg/__init__.py -> pkg/_t.py -> pkg/__init__.py"]
        );
    }

    #[test]
    fn use_trees_name_each_path_and_alias() {
        let t = lex("crate::a::{self, b::{C, D as E}, *};");
        let paths: Vec<(String, Option<String>)> = use_paths(&t[..t.len() - 1])
            .into_iter()
            .map(|(p, a)| (p.join("::"), a))
            .collect();
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            paths,
            [
                ("crate::a".to_owned(), s("a")),
                ("crate::a::b::C".to_owned(), s("C")),
                ("crate::a::b::D".to_owned(), s("E")),
                ("crate::a".to_owned(), None),
            ]
        );
    }
}
