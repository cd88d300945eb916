//! Which world imports what: an import the chosen world lacks is a build error that names
//! the worlds to declare instead, before a toolchain fails on it in its own words
//! (componentize-js: `Error loading module "murmur:plugin/llm@0.1.0"`).

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::Path;
use wit_parser::{Resolve, WorldItem, WorldKey};

/// A WIT world: its name, and the interfaces it imports and exports, named
/// `namespace:package/interface@version`.
pub struct World {
    /// The world's name.
    pub name: String,
    /// The interfaces it imports.
    pub imports: BTreeSet<String>,
    /// The interfaces it exports (what kind of plugin it is).
    pub exports: BTreeSet<String>,
}

/// The WIT worlds in `wit` (a directory with `deps/`).
pub fn worlds(wit: &Path) -> Result<Vec<World>> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit)
        .with_context(|| format!("reading the WIT in {}", wit.display()))?;
    let mut out = Vec::new();
    for (_, world) in resolve
        .worlds
        .iter()
        .filter(|(_, w)| w.package == Some(pkg))
    {
        let names = |items: &wit_parser::IndexMap<WorldKey, WorldItem>| {
            let mut names = BTreeSet::new();
            for (key, item) in items {
                if let (WorldKey::Interface(id), WorldItem::Interface { .. }) = (key, item)
                    && let Some(name) = resolve.id_of(*id)
                {
                    names.insert(name);
                }
            }
            names
        };
        out.push(World {
            name: world.name.clone(),
            imports: names(&world.imports),
            exports: names(&world.exports),
        });
    }
    Ok(out)
}

/// The interfaces `source` (JavaScript or Python) imports, with the line of each.
fn imports_of(source: &Path, text: &str) -> Vec<(usize, String)> {
    let python = source.extension().is_some_and(|e| e == "py");
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if python {
            // from wit_world.imports import llm, kv / from wit_world.imports.llm import …
            // import wit_world.imports.llm
            let rest = line
                .strip_prefix("from wit_world.imports")
                .or_else(|| line.strip_prefix("import wit_world.imports"));
            let Some(rest) = rest else { continue };
            let names: Vec<&str> = if let Some(sub) = rest.strip_prefix('.') {
                vec![sub.split([' ', '.']).next().unwrap_or("")]
            } else if let Some(list) = rest.trim().strip_prefix("import ") {
                list.split(',')
                    .map(|n| n.split(" as ").next().unwrap_or("").trim())
                    .collect()
            } else {
                vec![]
            };
            for n in names.into_iter().filter(|n| !n.is_empty() && *n != "types") {
                found.push((i + 1, n.trim_matches(['(', ')']).replace('_', "-")));
            }
        } else {
            for quote in ['\'', '"'] {
                for part in line.split(quote).skip(1).step_by(2) {
                    if part.starts_with("murmur:plugin/") || part.starts_with("wasi:") {
                        found.push((i + 1, part.to_string()));
                    }
                }
            }
        }
    }
    found
}

/// Fail if `source` imports an interface the world `world` of `wit` does not: the error
/// names the file, the line and the worlds that do import it.
pub fn check_imports(source: &Path, wit: &Path, world: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let all = worlds(wit)?;
    let Some(chosen) = all.iter().find(|w| w.name == world) else {
        let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        bail!(
            "there is no world '{world}' in {}; the worlds are: {}",
            wit.display(),
            names.join(", ")
        );
    };
    for (line, wanted) in imports_of(source, &text) {
        // JavaScript names an interface in full; Python by its short name, or (when two
        // packages have one of that name) as `namespace-package-interface`.
        let matches = |i: &String| {
            if wanted.contains(':') {
                return *i == wanted;
            }
            let unversioned = i.split('@').next().unwrap_or(i);
            let short = unversioned.rsplit('/').next().unwrap_or(unversioned);
            short == wanted || unversioned.replace([':', '/'], "-") == wanted
        };
        if chosen.imports.iter().any(matches) {
            continue;
        }
        // The worlds that import it, those of the same kind (exporting what the chosen
        // world exports) first: a basic agent wanting the model is an `agent`, not a
        // router.
        let importing = || all.iter().filter(|w| w.imports.iter().any(matches));
        let mut with: Vec<&str> = importing()
            .filter(|w| w.exports == chosen.exports)
            .map(|w| w.name.as_str())
            .collect();
        if with.is_empty() {
            with = importing().map(|w| w.name.as_str()).collect();
        }
        let hint = if with.is_empty() {
            "no world of this version of the WIT imports it".to_string()
        } else {
            format!(
                "declare a world that does as the plugin's world ({})",
                with.join(", ")
            )
        };
        bail!(
            "{}:{line}: imports {wanted}, which the world '{world}' does not import; {hint}",
            source.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_imports;

    fn wit() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::embedded::write_wit(dir.path()).expect("wit");
        dir
    }

    fn check(file: &str, text: &str, world: &str) -> Result<(), String> {
        let wit = wit();
        let source = wit.path().join(file);
        std::fs::write(&source, text).expect("write");
        check_imports(&source, wit.path(), world).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn an_import_the_world_lacks_names_the_file_line_and_the_worlds_that_have_it() {
        let js = "import { log } from 'murmur:plugin/log@0.1.0';\nimport { complete } from \"murmur:plugin/llm@0.1.0\";\n";
        check("a.js", js, "agent").expect("agent imports llm");
        let e = check("a.js", js, "basic-agent").expect_err("basic-agent does not");
        assert!(e.contains("a.js:2: imports murmur:plugin/llm@0.1.0, which the world 'basic-agent' does not import"), "{e}");
        assert!(
            e.contains("declare a world that does as the plugin's world (agent, http-agent)"),
            "{e}"
        );
        // No world of the context provider's kind has the model: every world that does.
        let e = check("a.js", js, "context-provider").expect_err("no llm");
        assert!(
            e.contains(
                "as the plugin's world (agent, router, validator, retrospective, http-agent)"
            ),
            "{e}"
        );
        let py = "import json\nfrom wit_world.imports import types, log\nfrom wit_world.imports import kv\n";
        check("app.py", py, "agent").expect("agent imports kv");
        let e = check("app.py", py, "basic-agent").expect_err("no kv");
        assert!(
            e.contains("app.py:3: imports kv, which the world 'basic-agent' does not import"),
            "{e}"
        );
        // componentize-py's names: short, or qualified where two packages share one.
        let fetcher = "from wit_world.imports import log, outgoing_handler, streams\nfrom wit_world.imports import murmur_plugin_types as types\nfrom wit_world.imports import wasi_http_types as http\n";
        check("app.py", fetcher, "http-basic-agent").expect("http-basic-agent imports them");
        let e = check("app.py", fetcher, "basic-agent").expect_err("no http");
        assert!(
            e.contains(
                "app.py:1: imports outgoing-handler, which the world 'basic-agent' does not import"
            ),
            "{e}"
        );
        assert!(e.contains("(http-agent, http-basic-agent)"), "{e}");
        let e = check(
            "a.js",
            "import 'wasi:http/outgoing-handler@0.2.12';\n",
            "agent",
        )
        .expect_err("no http");
        assert!(e.contains("http-agent"), "{e}");
    }

    #[test]
    fn an_unknown_world_lists_the_worlds() {
        let e = check("a.js", "", "agnt").expect_err("no such world");
        assert!(e.contains("there is no world 'agnt'"), "{e}");
        assert!(e.contains("basic-agent"), "{e}");
    }
}
