//! The API version check made before linking.
//!
//! Every export and import of ours carries the package version in its name
//! (`murmur:plugin/agent-api@0.1.0`). Reading those names from the component's type lets
//! the host refuse an incompatible plugin with a sentence naming both versions, instead
//! of the linker's "missing import" or "no export" message.

use crate::manifest::World;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package version this host implements.
pub const API_VERSION: &str = "0.1.0";
const PACKAGE: &str = "murmur:plugin/";

/// Semver-compatible with [`API_VERSION`]: same major, and for 0.x the same minor.
pub fn compatible(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(version), parse(API_VERSION)) {
        (Some((maj, min)), Some((hmaj, hmin))) => maj == hmaj && (maj != 0 || min == hmin),
        _ => false,
    }
}

/// Check the component's API version and that it exports `world`'s interface.
/// Returns the version found.
pub fn check(engine: &Engine, component: &Component, world: World) -> Result<String, String> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .chain(ty.imports(engine).map(|(n, _)| n.to_string()))
        .collect();
    let mut versions: Vec<(String, String)> = names
        .iter()
        .filter_map(|n| {
            let rest = n.strip_prefix(PACKAGE)?;
            let (iface, ver) = rest.split_once('@')?;
            Some((iface.to_string(), ver.to_string()))
        })
        .collect();
    versions.sort();
    versions.dedup();
    if let Some((iface, ver)) = versions.iter().find(|(_, v)| !compatible(v)) {
        return Err(format!(
            "it was built against murmur:plugin@{ver} (it uses {PACKAGE}{iface}@{ver}), but this host implements murmur:plugin@{API_VERSION}; rebuild it against {API_VERSION} or use a murmur that speaks {ver}"
        ));
    }
    let wanted = world.export_interface();
    let exported: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(PACKAGE) && n.contains("-api@"))
        .collect();
    if !exported
        .iter()
        .any(|n| n.starts_with(&format!("{PACKAGE}{wanted}@")))
    {
        return Err(if exported.is_empty() {
            format!(
                "it exports no murmur:plugin interface (exports: {}); is it a Murmuration plugin?",
                ty.exports(engine)
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "the manifest says world '{world}', which exports {PACKAGE}{wanted}, but the component exports {}",
                exported
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    Ok(versions
        .first()
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| API_VERSION.to_string()))
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn zero_versions_are_compatible_only_within_the_same_minor() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("1.1.0"));
        assert!(!compatible("garbage"));
    }
}
