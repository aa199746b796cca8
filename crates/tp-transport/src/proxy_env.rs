//! Which HTTP proxy (if any) a connection goes through: `HTTPS_PROXY` and `NO_PROXY` as
//! Teleport's Go client reads them (`golang.org/x/net/http/httpproxy` semantics).
//!
//! - `HTTPS_PROXY` (or `https_proxy`) names the proxy; without a scheme it is `http://`.
//! - `NO_PROXY` (or `no_proxy`) is a comma-separated list: `*` disables proxying; an IP
//!   or CIDR matches addresses; `example.com` matches it and its subdomains,
//!   `.example.com` only its subdomains; an entry with `:port` matches only that port.
//! - `localhost` and loopback addresses are never proxied.

use std::net::IpAddr;

use crate::addr::{HostPort, PortRule, parse_host_port};

/// An HTTP proxy to tunnel through with `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpProxy {
    /// `http` or `https` (TLS to the proxy itself).
    pub scheme: String,
    /// The proxy's address.
    pub addr: HostPort,
    /// `user:password` for `Proxy-Authorization: Basic`, when the URL carries them.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("scheme", &self.scheme)
            .field("addr", &self.addr)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "[redacted]")),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxy {
    All,
    Ip(IpAddr, Option<u16>),
    Cidr(IpAddr, u8),
    /// A domain; `subdomains_only` for a leading dot.
    Domain {
        name: String,
        subdomains_only: bool,
        port: Option<u16>,
    },
}

/// Decides which proxy a destination goes through.
///
/// ```
/// use tp_transport::proxy_env::ProxyMatcher;
/// let m = ProxyMatcher::builder()
///     .https_proxy("corp-proxy:8080")
///     .no_proxy(".internal.example.com,10.0.0.0/8")
///     .build()
///     .unwrap();
/// assert_eq!(m.proxy_for("teleport.example.com", 443).unwrap().addr.to_string(), "corp-proxy:8080");
/// assert!(m.proxy_for("auth.internal.example.com", 3025).is_none());
/// assert!(m.proxy_for("10.1.2.3", 3025).is_none());
/// assert!(m.proxy_for("127.0.0.1", 3025).is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProxyMatcher {
    proxy: Option<HttpProxy>,
    no_proxy: Vec<NoProxy>,
}

/// Builds a [`ProxyMatcher`] from explicit values.
#[derive(Debug, Clone, Default)]
pub struct ProxyMatcherBuilder {
    https_proxy: Option<String>,
    no_proxy: Option<String>,
}

/// Why a proxy URL could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyConfigError(pub String);

impl std::fmt::Display for ProxyConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid proxy setting: {}", self.0)
    }
}

impl std::error::Error for ProxyConfigError {}

impl ProxyMatcherBuilder {
    /// The proxy URL (`HTTPS_PROXY`); empty means none.
    pub fn https_proxy(mut self, url: impl Into<String>) -> Self {
        self.https_proxy = Some(url.into());
        self
    }

    /// The exclusion list (`NO_PROXY`).
    pub fn no_proxy(mut self, list: impl Into<String>) -> Self {
        self.no_proxy = Some(list.into());
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<ProxyMatcher, ProxyConfigError> {
        let proxy = match self
            .https_proxy
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(url) => Some(parse_proxy_url(url)?),
        };
        let no_proxy = self
            .no_proxy
            .as_deref()
            .map(parse_no_proxy)
            .unwrap_or_default();
        Ok(ProxyMatcher { proxy, no_proxy })
    }
}

fn parse_proxy_url(url: &str) -> Result<HttpProxy, ProxyConfigError> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), url),
    };
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        other => {
            return Err(ProxyConfigError(format!(
                "proxy scheme {other:?} is not supported (expected http or https)"
            )));
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (creds, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let credentials = creds.map(|c| match c.split_once(':') {
        Some((u, p)) => (u.to_string(), p.to_string()),
        None => (c.to_string(), String::new()),
    });
    let addr = parse_host_port(hostport, PortRule::Default(default_port))
        .map_err(|e| ProxyConfigError(e.to_string()))?;
    Ok(HttpProxy {
        scheme,
        addr,
        credentials,
    })
}

fn parse_no_proxy(list: &str) -> Vec<NoProxy> {
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            out.push(NoProxy::All);
            continue;
        }
        if let Some((ip, bits)) = entry.split_once('/')
            && let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>())
        {
            out.push(NoProxy::Cidr(ip, bits));
            continue;
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            out.push(NoProxy::Ip(ip, None));
            continue;
        }
        let (host, port) = match parse_host_port(entry, PortRule::Default(0)) {
            Ok(hp) => (hp.host, (hp.port != 0).then_some(hp.port)),
            Err(_) => continue,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            out.push(NoProxy::Ip(ip, port));
            continue;
        }
        let host = host.to_ascii_lowercase();
        let (name, subdomains_only) = match host.strip_prefix('.') {
            Some(h) => (h.to_string(), true),
            // "*.example.com" behaves like ".example.com".
            None => match host.strip_prefix("*.") {
                Some(h) => (h.to_string(), true),
                None => (host, false),
            },
        };
        out.push(NoProxy::Domain {
            name,
            subdomains_only,
            port,
        });
    }
    out
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl ProxyMatcher {
    /// A builder for explicit values.
    pub fn builder() -> ProxyMatcherBuilder {
        ProxyMatcherBuilder::default()
    }

    /// Reads `HTTPS_PROXY`/`https_proxy` and `NO_PROXY`/`no_proxy`.
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the from_env constructor"
    )]
    pub fn from_env() -> Result<Self, ProxyConfigError> {
        let get = |a: &str, b: &str| {
            std::env::var(a)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| std::env::var(b).ok())
        };
        let mut b = Self::builder();
        if let Some(p) = get("HTTPS_PROXY", "https_proxy") {
            b = b.https_proxy(p);
        }
        if let Some(n) = get("NO_PROXY", "no_proxy") {
            b = b.no_proxy(n);
        }
        b.build()
    }

    /// The proxy for a connection to `host:port`, or `None` to connect directly.
    pub fn proxy_for(&self, host: &str, port: u16) -> Option<&HttpProxy> {
        let proxy = self.proxy.as_ref()?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return None;
        }
        for rule in &self.no_proxy {
            let excluded = match rule {
                NoProxy::All => true,
                NoProxy::Ip(want, p) => ip == Some(*want) && p.is_none_or(|p| p == port),
                NoProxy::Cidr(net, bits) => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
                NoProxy::Domain {
                    name,
                    subdomains_only,
                    port: p,
                } => {
                    let sub = host.ends_with(&format!(".{name}"));
                    let matched = sub || (!subdomains_only && host == *name);
                    matched && p.is_none_or(|p| p == port)
                }
            };
            if excluded {
                return None;
            }
        }
        Some(proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(proxy: &str, no: &str) -> ProxyMatcher {
        ProxyMatcher::builder()
            .https_proxy(proxy)
            .no_proxy(no)
            .build()
            .unwrap()
    }

    #[test]
    fn no_proxy_rules() {
        let m = m(
            "http://user:secret@proxy.corp:3128",
            "example.com, .svc.local, 192.168.0.0/16, 10.0.0.1, db.corp:5432",
        );
        let p = m.proxy_for("teleport.cloud", 443).unwrap();
        assert_eq!(p.addr.to_string(), "proxy.corp:3128");
        assert_eq!(p.credentials, Some(("user".into(), "secret".into())));
        assert!(m.proxy_for("example.com", 443).is_none());
        assert!(
            m.proxy_for("auth.example.com", 443).is_none(),
            "domain covers subdomains"
        );
        assert!(m.proxy_for("a.svc.local", 443).is_none());
        assert!(
            m.proxy_for("svc.local", 443).is_some(),
            "leading dot: subdomains only"
        );
        assert!(m.proxy_for("192.168.4.5", 3025).is_none());
        assert!(m.proxy_for("10.0.0.1", 3025).is_none());
        assert!(m.proxy_for("10.0.0.2", 3025).is_some());
        assert!(m.proxy_for("db.corp", 5432).is_none());
        assert!(m.proxy_for("db.corp", 443).is_some(), "port-specific entry");
        assert!(
            m.proxy_for("localhost", 3080).is_none(),
            "never for localhost"
        );
        assert!(m.proxy_for("[::1]", 3080).is_none(), "never for loopback");
    }

    #[test]
    fn star_disables_and_empty_means_direct() {
        assert!(m("proxy:1", "*").proxy_for("anything", 1).is_none());
        assert!(
            ProxyMatcher::builder()
                .build()
                .unwrap()
                .proxy_for("x", 1)
                .is_none()
        );
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(
            m("proxy.corp", "")
                .proxy_for("x", 1)
                .unwrap()
                .addr
                .to_string(),
            "proxy.corp:80"
        );
        assert_eq!(
            m("https://proxy.corp", "")
                .proxy_for("x", 1)
                .unwrap()
                .scheme,
            "https"
        );
        let e = ProxyMatcher::builder()
            .https_proxy("socks5://p:1080")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("socks5"), "{e}");
    }

    #[test]
    fn debug_hides_the_password() {
        let m = m("http://user:secret@proxy.corp:3128", "");
        let out = format!("{:?}", m.proxy_for("x", 1).unwrap());
        assert!(!out.contains("secret"), "{out}");
    }
}
