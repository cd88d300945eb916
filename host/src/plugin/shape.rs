//! A component's shape, read once from its type: the `murmur:plugin` interfaces it
//! exports and imports, with their versions. One reading serves the API-version check
//! (made before linking, so an incompatible plugin gets a sentence naming both versions
//! instead of the linker's "missing import"), the grant check (capabilities by omission)
//! and `murmur inspect`. This is the one place `murmur:plugin/NAME@VERSION` names are
//! taken apart.

use super::capability::Capability;
use super::version::{API_VERSION, compatible};
use super::world::World;
use wasmtime::Engine;
use wasmtime::component::Component;

const PACKAGE: &str = "murmur:plugin/";

/// What a component exports and imports.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Every export's name.
    pub exports: Vec<String>,
    /// Every import's name.
    pub imports: Vec<String>,
}

/// `murmur:plugin/NAME@VERSION` taken apart: `(NAME, VERSION)`; `None` for other names.
pub fn interface(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(PACKAGE)?.split_once('@')
}

impl Shape {
    /// Read `component`'s type.
    pub fn read(engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        Self {
            exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
            imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
        }
    }

    /// The murmur interfaces it exports, by name.
    fn exported(&self) -> impl Iterator<Item = &str> {
        self.exports
            .iter()
            .filter_map(|n| interface(n))
            .map(|(i, _)| i)
    }

    /// The murmur interfaces it imports, by name.
    fn imported(&self) -> impl Iterator<Item = &str> {
        self.imports
            .iter()
            .filter_map(|n| interface(n))
            .map(|(i, _)| i)
    }

    /// The world whose interface it exports, if any.
    pub fn world(&self) -> Option<World> {
        World::ALL
            .into_iter()
            .find(|w| self.exported().any(|i| i == w.export_interface()))
    }

    /// The capabilities its imports need granted.
    pub fn needs(&self) -> Vec<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.imported().any(|i| i == c.as_str()))
            .collect()
    }

    /// The first import that needs `capability`, by its full name.
    pub fn import_needing(&self, capability: Capability) -> Option<&str> {
        self.imports
            .iter()
            .find(|n| interface(n).is_some_and(|(i, _)| i == capability.as_str()))
            .map(String::as_str)
    }

    /// Its import of wasi:http's outgoing handler (outgoing HTTP), if it has one.
    pub fn imports_http(&self) -> Option<&str> {
        self.imports
            .iter()
            .find(|n| n.starts_with("wasi:http/outgoing-handler@"))
            .map(String::as_str)
    }

    /// Whether it imports `context` (its context on demand).
    pub fn imports_context(&self) -> bool {
        self.imported().any(|i| i == "context")
    }

    /// Check the API version of every murmur interface it uses and that it exports
    /// `world`'s interface. Returns the version found.
    pub fn check(&self, world: World) -> Result<String, String> {
        let mut versions: Vec<(&str, &str)> = self
            .exports
            .iter()
            .chain(&self.imports)
            .filter_map(|n| interface(n))
            .collect();
        versions.sort();
        versions.dedup();
        if let Some((iface, ver)) = versions.iter().find(|(_, v)| !compatible(v)) {
            return Err(format!(
                "it was built against murmur:plugin@{ver} (it uses {PACKAGE}{iface}@{ver}), but this host implements murmur:plugin@{API_VERSION}; rebuild it against {API_VERSION} or use a murmur that speaks {ver}"
            ));
        }
        let wanted = world.export_interface();
        let apis: Vec<&String> = self
            .exports
            .iter()
            .filter(|n| interface(n).is_some_and(|(i, _)| i.ends_with("-api")))
            .collect();
        if !apis
            .iter()
            .any(|n| interface(n).is_some_and(|(i, _)| i == wanted))
        {
            return Err(if apis.is_empty() {
                format!(
                    "it exports no murmur:plugin interface (exports: {}); is it a Murmuration plugin?",
                    self.exports.join(", ")
                )
            } else {
                format!(
                    "the manifest says world '{world}', which exports {PACKAGE}{wanted}, but the component exports {}",
                    apis.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        Ok(versions
            .first()
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| API_VERSION.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(exports: &[&str], imports: &[&str]) -> Shape {
        Shape {
            exports: exports.iter().map(|s| s.to_string()).collect(),
            imports: imports.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_shape_names_its_world_its_grants_and_its_context_import() {
        let s = shape(
            &["murmur:plugin/agent-api@0.1.0"],
            &[
                "murmur:plugin/types@0.1.0",
                "murmur:plugin/log@0.1.0",
                "murmur:plugin/llm@0.1.0",
                "murmur:plugin/context@0.1.0",
                "wasi:io/streams@0.2.0",
            ],
        );
        assert_eq!(s.world(), Some(World::Agent));
        assert_eq!(s.needs(), vec![Capability::Llm]);
        assert_eq!(
            s.import_needing(Capability::Llm),
            Some("murmur:plugin/llm@0.1.0")
        );
        assert!(s.imports_context());
        assert_eq!(s.check(World::Agent), Ok("0.1.0".into()));
        let e = s.check(World::Validator).expect_err("not a validator");
        assert!(e.contains("the manifest says world 'validator'"), "{e}");
    }

    #[test]
    fn an_incompatible_version_is_named_with_both_versions() {
        let s = shape(&["murmur:plugin/agent-api@0.2.0"], &[]);
        let e = s.check(World::Agent).expect_err("0.2 is not 0.1");
        assert!(
            e.contains("murmur:plugin@0.2.0") && e.contains("murmur:plugin@0.1.0"),
            "{e}"
        );
        let none = shape(&["wasi:cli/run@0.2.0"], &[]);
        assert!(none.world().is_none());
        assert!(
            none.check(World::Agent)
                .expect_err("no murmur export")
                .contains("is it a Murmuration plugin?")
        );
    }
}
