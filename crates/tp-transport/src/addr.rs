//! `host[:port]` addresses as Teleport parses them (`webclient.ParseHostPort`).

use std::fmt;

/// A host and port, printed as `host:port` (IPv6 hosts in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host name or IP address, without brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What to do with the port of a parsed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRule {
    /// Use this port when the address has none.
    Default(u16),
    /// Use this port whatever the address says.
    Override(u16),
}

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddrError {
    /// The address as given.
    pub addr: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "address {:?}: {}", self.addr, self.reason)
    }
}

impl std::error::Error for AddrError {}

/// Parses `host[:port]`, `[v6]:port`, or a `tcp://`, `http://` or `https://` URL (any
/// path is ignored), applying `rule` to the port.
///
/// ```
/// use tp_transport::addr::{parse_host_port, PortRule};
/// let a = parse_host_port("https://proxy.example.com/web", PortRule::Default(443)).unwrap();
/// assert_eq!(a.to_string(), "proxy.example.com:443");
/// let a = parse_host_port("proxy.example.com:3080", PortRule::Override(3024)).unwrap();
/// assert_eq!(a.to_string(), "proxy.example.com:3024");
/// assert!(parse_host_port("ftp://x", PortRule::Default(1)).is_err());
/// ```
pub fn parse_host_port(addr: &str, rule: PortRule) -> Result<HostPort, AddrError> {
    let err = |reason: &str| AddrError {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    if addr.is_empty() {
        return Err(err("missing address"));
    }
    let rest = match addr.split_once("://") {
        Some((scheme, rest)) => match scheme {
            "tcp" | "http" | "https" => rest,
            _ => {
                return Err(err(&format!(
                    "unsupported scheme {scheme:?} (expected tcp, http or https)"
                )));
            }
        },
        None => addr,
    };
    // Drop any path, query or user info.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| err("unclosed '[' in an IPv6 address"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(err("unexpected text after ']'")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            // Several colons without brackets: a bare IPv6 address, no port.
            Some(_) => (authority, None),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(err("missing host"));
    }
    let port = match (port, rule) {
        (_, PortRule::Override(p)) => p,
        (None | Some(""), PortRule::Default(p)) => p,
        (Some(p), PortRule::Default(_)) => {
            p.parse().map_err(|_| err(&format!("invalid port {p:?}")))?
        }
    };
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// The port of an address, if it has a valid one (Go's `parsePort`).
pub fn port_of(addr: &str) -> Option<u16> {
    if addr.is_empty() {
        return None;
    }
    // Parse with a sentinel default and see whether the address supplied its own port.
    let a = parse_host_port(addr, PortRule::Default(0)).ok()?;
    (a.port != 0).then_some(a.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_teleport_accepts() {
        let d = PortRule::Default(3080);
        for (input, want) in [
            ("proxy", "proxy:3080"),
            ("proxy:443", "proxy:443"),
            ("tcp://proxy:1", "proxy:1"),
            ("https://proxy", "proxy:3080"),
            ("http://user@proxy:8080/path?q", "proxy:8080"),
            ("[::1]:3024", "[::1]:3024"),
            ("[::1]", "[::1]:3080"),
            ("::1", "[::1]:3080"),
            ("127.0.0.1", "127.0.0.1:3080"),
        ] {
            assert_eq!(
                parse_host_port(input, d).unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        for (input, want) in [
            ("", "missing address"),
            ("ssh://proxy", "unsupported scheme"),
            ("proxy:http", "invalid port"),
            (":3080", "missing host"),
            ("[::1", "unclosed"),
            ("proxy:99999", "invalid port"),
        ] {
            let e = parse_host_port(input, PortRule::Default(1)).unwrap_err();
            assert!(e.to_string().contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn port_of_reads_only_explicit_ports() {
        assert_eq!(port_of("0.0.0.0:3024"), Some(3024));
        assert_eq!(port_of("proxy"), None);
        assert_eq!(port_of(""), None);
    }
}
