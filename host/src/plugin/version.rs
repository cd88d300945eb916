//! The API version this host implements, and which versions are compatible with it.
//!
//! Every export and import of ours carries the package version in its name
//! (`murmur:plugin/agent-api@0.1.0`); `shape` reads them and checks them with
//! [`compatible`] before linking.

/// The WIT package version this host implements.
pub const API_VERSION: &str = "0.1.0";

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
