//! Allow-list entries: `scheme://host[:port]`, and which addresses a name may resolve to.
//!
//! A rule names a scheme (`http` or `https`), a host (a name, `*.` and a domain for its
//! subdomains, or an IP address) and a port (a number, `*` for any, or the scheme's
//! default when left out). Paths are not part of a rule: a grant is per destination, and
//! a plugin that may reach a host may reach any of its paths.
//!
//! Names are checked twice: the URL against the rules, and then the addresses the name
//! resolves to. An address that is not public (loopback, private, link-local, shared,
//! unspecified, multicast) is refused unless a rule names it as an IP address, or the name
//! is `localhost` and a rule names `localhost`: otherwise any allowed name whose DNS an
//! attacker controls would reach the machine's own services.

use std::fmt;
use std::net::IpAddr;

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host pattern.
    pub host: HostPattern,
    /// The port, or `None` for any.
    pub port: Option<u16>,
}

/// The two schemes a rule may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
    /// Its port when a URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A rule's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// One name, lowercase.
    Name(String),
    /// Any subdomain of this domain (`*.example.com`; not `example.com` itself).
    Subdomains(String),
    /// One address.
    Ip(IpAddr),
}

impl Rule {
    /// Parse `scheme://host[:port][/]`; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("'{text}' has no scheme: write it as https://HOST[:PORT]"))?;
        let scheme = Scheme::parse(scheme)
            .ok_or_else(|| format!("'{text}': scheme '{scheme}' is not http or https"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "'{text}': a rule names a scheme, a host and a port, not a path, query or user"
            ));
        }
        let (host, port) =
            split_port(rest).ok_or_else(|| format!("'{text}': the port is not a number or *"))?;
        let port = match port {
            None => Some(scheme.default_port()),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("'{text}': port '{p}' is not 1 to 65535 or *"))?,
            ),
        };
        let host = HostPattern::parse(host).ok_or_else(|| {
            format!("'{text}': '{host}' is not a host name, *.DOMAIN or an IP address")
        })?;
        Ok(Rule { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule (`host` as the
    /// URL has it: a name, or an address, IPv6 in brackets).
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        if scheme != self.scheme || self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match (&self.host, host.parse::<IpAddr>()) {
            (HostPattern::Ip(ip), Ok(asked)) => *ip == asked,
            (_, Ok(_)) | (HostPattern::Ip(_), Err(_)) => false,
            (HostPattern::Name(name), Err(_)) => name.eq_ignore_ascii_case(host),
            (HostPattern::Subdomains(domain), Err(_)) => {
                let host = host.to_ascii_lowercase();
                host.strip_suffix(domain.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
        }
    }
}

impl HostPattern {
    fn parse(host: &str) -> Option<HostPattern> {
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse::<IpAddr>().ok().map(HostPattern::Ip);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(HostPattern::Ip(ip));
        }
        let (wild, name) = match host.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, host),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return None;
        }
        let name = name.to_ascii_lowercase();
        Some(if wild {
            HostPattern::Subdomains(name)
        } else {
            HostPattern::Name(name)
        })
    }
}

/// `host[:port]`, IPv6 in brackets: the host and the port text, if any. `None` when a
/// port is there but empty.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let split = if authority.starts_with('[') {
        authority
            .find(']')
            .map(|end| end + 1)
            .filter(|end| *end < authority.len())
    } else {
        authority.rfind(':')
    };
    match split {
        Some(at) if authority[at..].starts_with(':') => {
            let port = &authority[at + 1..];
            (!port.is_empty()).then_some((&authority[..at], Some(port)))
        }
        _ => Some((authority, None)),
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Name(n) => f.write_str(n)?,
            HostPattern::Subdomains(d) => write!(f, "*.{d}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(p) if p == self.scheme.default_port() => Ok(()),
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        }
    }
}

/// Whether `ip` is an address of the public internet: not loopback, private, link-local,
/// shared (carrier-grade NAT), unspecified, multicast, broadcast or documentation space,
/// nor an IPv4-mapped IPv6 form of one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The addresses and names an allow-list permits beyond the public internet: the IP
/// addresses its rules name, and loopback for `localhost` if a rule names it.
#[derive(Debug, Clone, Default)]
pub struct Private {
    named: Vec<IpAddr>,
    localhost: bool,
}

impl Private {
    /// What `rules` name.
    pub fn of<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Private {
        let mut private = Private::default();
        for rule in rules {
            match &rule.host {
                HostPattern::Ip(ip) => private.named.push(*ip),
                HostPattern::Name(name) if name == "localhost" => private.localhost = true,
                _ => {}
            }
        }
        private
    }

    /// Whether the name `name` may be reached at `ip`.
    pub fn permits(&self, name: &str, ip: IpAddr) -> bool {
        is_public(ip)
            || self.named.contains(&ip)
            || (self.localhost && name.eq_ignore_ascii_case("localhost") && ip.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_reads_scheme_host_and_port_and_prints_back() {
        for (text, back) in [
            ("https://api.github.com", "https://api.github.com"),
            ("https://API.GitHub.com/", "https://api.github.com"),
            ("http://127.0.0.1:*", "http://127.0.0.1:*"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://*.example.com:8443", "https://*.example.com:8443"),
            ("https://example.com:443", "https://example.com"),
        ] {
            assert_eq!(Rule::parse(text).expect(text).to_string(), back);
        }
    }

    #[test]
    fn a_malformed_rule_says_what_is_wrong() {
        for (text, says) in [
            ("api.github.com", "has no scheme"),
            ("ftp://example.com", "is not http or https"),
            ("https://example.com/repos", "not a path"),
            ("https://user@example.com", "not a path, query or user"),
            ("https://example.com:", "not a number"),
            ("https://example.com:0", "is not 1 to 65535"),
            ("https://example.com:http", "is not 1 to 65535"),
            ("https://exa mple.com", "is not a host name"),
            ("https://*", "is not a host name"),
        ] {
            let err = Rule::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_rule_allows_its_scheme_host_and_port_only() {
        let gh = Rule::parse("https://api.github.com").expect("test value");
        assert!(gh.allows(Scheme::Https, "api.github.com", 443));
        assert!(gh.allows(Scheme::Https, "API.github.com", 443));
        assert!(!gh.allows(Scheme::Http, "api.github.com", 443));
        assert!(!gh.allows(Scheme::Https, "api.github.com", 8443));
        assert!(!gh.allows(Scheme::Https, "api.github.com.evil.example", 443));
        assert!(!gh.allows(Scheme::Https, "evilapi.github.com", 443));
        let local = Rule::parse("http://127.0.0.1:*").expect("test value");
        assert!(local.allows(Scheme::Http, "127.0.0.1", 39211));
        assert!(!local.allows(Scheme::Http, "127.0.0.2", 39211));
        assert!(!local.allows(Scheme::Http, "localhost", 39211));
        let wild = Rule::parse("https://*.example.com").expect("test value");
        assert!(wild.allows(Scheme::Https, "a.b.example.com", 443));
        assert!(!wild.allows(Scheme::Https, "example.com", 443));
        assert!(!wild.allows(Scheme::Https, "badexample.com", 443));
        let v6 = Rule::parse("http://[::1]:*").expect("test value");
        assert!(v6.allows(Scheme::Http, "[::1]", 80));
    }

    #[test]
    fn only_public_addresses_pass_unless_the_list_names_them() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = private.parse().expect("test value");
            assert!(!is_public(ip), "{private}");
        }
        assert!(is_public("140.82.112.6".parse().expect("test value")));
        assert!(is_public("2606:4700::1111".parse().expect("test value")));
        let rules = [
            Rule::parse("https://api.github.com").expect("test value"),
            Rule::parse("http://127.0.0.1:*").expect("test value"),
        ];
        let private = Private::of(&rules);
        assert!(private.permits(
            "api.github.com",
            "140.82.112.6".parse().expect("test value")
        ));
        assert!(!private.permits("api.github.com", "10.0.0.1".parse().expect("test value")));
        assert!(private.permits("anything", "127.0.0.1".parse().expect("test value")));
        assert!(!private.permits("localhost", "::1".parse().expect("test value")));
        let named = Private::of(&[Rule::parse("http://localhost:*").expect("test value")]);
        assert!(named.permits("localhost", "::1".parse().expect("test value")));
        assert!(!named.permits("rebind.example", "::1".parse().expect("test value")));
    }
}
