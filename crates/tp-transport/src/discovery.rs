//! Web-proxy discovery: the JSON a Teleport proxy serves at `/webapi/ping` and
//! `/webapi/find`, reading it safely, and turning it into the address of the reverse
//! tunnel. Sans-IO: the caller fetches the bytes (tp-transport's HTTP client, or a
//! test), this module interprets them.
//!
//! The same types are what tp's proxy serialises, so the two ends cannot drift.

use serde::{Deserialize, Serialize};

use crate::addr::{AddrError, HostPort, PortRule, parse_host_port, port_of};

/// The default reverse-tunnel port (`SSHProxyTunnelListenPort`).
pub const DEFAULT_TUNNEL_PORT: u16 = 3024;
/// The default proxy SSH port (`SSHProxyListenPort`).
pub const DEFAULT_SSH_PORT: u16 = 3023;
/// The web port assumed with TLS routing when none is known (`StandardHTTPSPort`).
pub const STANDARD_HTTPS_PORT: u16 = 443;
/// The environment variable that overrides the tunnel address.
pub const TUNNEL_PUBLIC_ADDR_ENV: &str = "TELEPORT_TUNNEL_PUBLIC_ADDR";

/// The body of `/webapi/ping` and `/webapi/find`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PingResponse {
    /// How users log in (`/webapi/ping` only; `find` leaves it empty).
    pub auth: AuthenticationSettings,
    /// Where the proxy listens.
    pub proxy: ProxySettings,
    /// The proxy's Teleport version.
    pub server_version: String,
    /// The oldest client version the proxy supports.
    pub min_client_version: String,
    /// The cluster name.
    pub cluster_name: String,
    /// `oss`, `ent` or `community` (Teleport 17+).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub edition: String,
    /// Whether the proxy runs in FIPS mode (Teleport 17+).
    pub fips: bool,
}

/// How users authenticate (the `auth` object of `/webapi/ping`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AuthenticationSettings {
    /// `local`, `oidc`, `saml` or `github`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `off`, `otp`, `webauthn`, `on` or `optional`.
    #[serde(
        deserialize_with = "second_factor",
        skip_serializing_if = "String::is_empty"
    )]
    pub second_factor: String,
    /// The local connector, when `kind` is `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalConnector>,
    /// Whether clients should load every CA (not only the cluster's).
    pub load_all_cas: bool,
}

/// The local (password) connector of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LocalConnector {
    /// The connector name (`local`, or `passwordless`).
    pub name: String,
}

/// Teleport accepts a boolean for `second_factor` too (`true` = `on`).
fn second_factor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        Bool(bool),
        Str(String),
    }
    Ok(match S::deserialize(d)? {
        S::Bool(true) => "on".into(),
        S::Bool(false) => "off".into(),
        S::Str(s) => s,
    })
}

/// Where a proxy listens (the `proxy` object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ProxySettings {
    /// SSH, reverse-tunnel and web listeners.
    pub ssh: SshProxySettings,
    /// Whether one port (the web port) carries every protocol, routed by ALPN.
    pub tls_routing_enabled: bool,
}

/// The `proxy.ssh` object. Every field is omitted when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SshProxySettings {
    /// The proxy SSH listener (3023).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub listen_addr: String,
    /// The reverse-tunnel listener (3024).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tunnel_listen_addr: String,
    /// The web listener (3080 or 443).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub web_listen_addr: String,
    /// The public address of the web listener.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub public_addr: String,
    /// The public address of the SSH listener.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ssh_public_addr: String,
    /// The public address of the reverse-tunnel listener.
    #[serde(
        rename = "ssh_tunnel_public_addr",
        skip_serializing_if = "String::is_empty"
    )]
    pub tunnel_public_addr: String,
}

/// Why a discovery answer was not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The answer is not from a Teleport proxy (an HTML page, another service's JSON, ...).
    NotTeleportProxy {
        /// What was received instead.
        detail: String,
    },
    /// The proxy answered with an error.
    ProxyError {
        /// The HTTP status.
        status: u16,
        /// The proxy's message.
        message: String,
    },
    /// An address in the answer is unusable.
    BadAddress(AddrError),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotTeleportProxy { detail } => {
                write!(f, "this is not a Teleport proxy: {detail}")
            }
            Self::ProxyError { status, message } => {
                write!(f, "proxy answered HTTP {status}: {message}")
            }
            Self::BadAddress(e) => write!(f, "proxy advertised an unusable address: {e}"),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadAddress(e) => Some(e),
            _ => None,
        }
    }
}

/// Interprets an HTTP answer from `/webapi/find` or `/webapi/ping`.
///
/// Checks what Go's client does not: the content type must be JSON and the body must
/// look like a proxy's (a cluster name or a proxy section), so an HTML page or some
/// other service's JSON becomes "this is not a Teleport proxy" rather than a JSON error.
///
/// ```
/// use tp_transport::discovery::interpret;
/// let body = br#"{"proxy":{"ssh":{"tunnel_listen_addr":"0.0.0.0:3024"}},"cluster_name":"example.com","server_version":"17.0.0"}"#;
/// let ping = interpret(200, Some("application/json"), body).unwrap();
/// assert_eq!(ping.cluster_name, "example.com");
/// let e = interpret(200, Some("text/html; charset=utf-8"), b"<html>hello</html>").unwrap_err();
/// assert!(e.to_string().starts_with("this is not a Teleport proxy"));
/// ```
pub fn interpret(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<PingResponse, DiscoveryError> {
    let is_json = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !is_json {
        let what = content_type.unwrap_or("no content type");
        let preview: String = String::from_utf8_lossy(&body[..body.len().min(60)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        return Err(DiscoveryError::NotTeleportProxy {
            detail: format!("HTTP {status} with {what} ({preview:?})"),
        });
    }
    if status != 200 {
        #[derive(Deserialize)]
        struct ErrBody {
            error: ErrMsg,
        }
        #[derive(Deserialize)]
        struct ErrMsg {
            message: String,
        }
        return match serde_json::from_slice::<ErrBody>(body) {
            Ok(e) => Err(DiscoveryError::ProxyError {
                status,
                message: e.error.message,
            }),
            Err(_) => Err(DiscoveryError::NotTeleportProxy {
                detail: format!("HTTP {status} with a JSON body that is not a Teleport error"),
            }),
        };
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| DiscoveryError::NotTeleportProxy {
            detail: format!("invalid JSON: {e}"),
        })?;
    let looks_like_proxy = v.get("proxy").is_some_and(serde_json::Value::is_object)
        || v.get("cluster_name")
            .is_some_and(serde_json::Value::is_string);
    if !looks_like_proxy {
        return Err(DiscoveryError::NotTeleportProxy {
            detail: "JSON without a proxy section or cluster name".into(),
        });
    }
    serde_json::from_value(v).map_err(|e| DiscoveryError::NotTeleportProxy {
        detail: format!("unexpected JSON shape: {e}"),
    })
}

impl ProxySettings {
    fn web_port(&self) -> u16 {
        port_of(&self.ssh.web_listen_addr).unwrap_or(STANDARD_HTTPS_PORT)
    }

    fn tunnel_port(&self) -> u16 {
        port_of(&self.ssh.tunnel_listen_addr).unwrap_or(DEFAULT_TUNNEL_PORT)
    }

    fn ssh_port(&self) -> u16 {
        port_of(&self.ssh.listen_addr).unwrap_or(DEFAULT_SSH_PORT)
    }

    /// The address of the reverse tunnel, exactly as Teleport's `TunnelAddr` derives
    /// it. `public_addr_override` is the value of `TELEPORT_TUNNEL_PUBLIC_ADDR` (see
    /// [`tunnel_addr_override_from_env`]); when set it wins.
    ///
    /// With TLS routing the tunnel is the web port; otherwise the first set of the
    /// tunnel public address, the SSH public address (port forced to the tunnel port),
    /// the web public address (likewise), the tunnel listen address, the web listen
    /// address.
    pub fn tunnel_addr(
        &self,
        public_addr_override: Option<&str>,
    ) -> Result<HostPort, DiscoveryError> {
        let s = &self.ssh;
        let parsed =
            |addr: &str, rule| parse_host_port(addr, rule).map_err(DiscoveryError::BadAddress);
        if let Some(addr) = public_addr_override.filter(|a| !a.is_empty()) {
            return parsed(addr, PortRule::Default(DEFAULT_TUNNEL_PORT));
        }
        if self.tls_routing_enabled {
            let web = PortRule::Default(self.web_port());
            return if s.public_addr.is_empty() {
                parsed(&s.web_listen_addr, web)
            } else {
                parsed(&s.public_addr, web)
            };
        }
        let port = self.tunnel_port();
        if !s.tunnel_public_addr.is_empty() {
            parsed(&s.tunnel_public_addr, PortRule::Default(port))
        } else if !s.ssh_public_addr.is_empty() {
            parsed(&s.ssh_public_addr, PortRule::Override(port))
        } else if !s.public_addr.is_empty() {
            parsed(&s.public_addr, PortRule::Override(port))
        } else if !s.tunnel_listen_addr.is_empty() {
            parsed(&s.tunnel_listen_addr, PortRule::Default(port))
        } else {
            parsed(&s.web_listen_addr, PortRule::Default(port))
        }
    }

    /// The proxy's SSH address (`SSHProxyHostPort`).
    pub fn ssh_proxy_addr(&self) -> Result<HostPort, DiscoveryError> {
        let s = &self.ssh;
        let parsed =
            |addr: &str, rule| parse_host_port(addr, rule).map_err(DiscoveryError::BadAddress);
        if self.tls_routing_enabled {
            let web = PortRule::Default(self.web_port());
            return if s.public_addr.is_empty() {
                parsed(&s.web_listen_addr, web)
            } else {
                parsed(&s.public_addr, web)
            };
        }
        let port = self.ssh_port();
        if !s.ssh_public_addr.is_empty() {
            parsed(&s.ssh_public_addr, PortRule::Default(port))
        } else if !s.public_addr.is_empty() {
            parsed(&s.public_addr, PortRule::Override(port))
        } else if !s.listen_addr.is_empty() {
            parsed(&s.listen_addr, PortRule::Default(port))
        } else {
            parsed(&s.web_listen_addr, PortRule::Default(port))
        }
    }
}

/// Reads `TELEPORT_TUNNEL_PUBLIC_ADDR`, the override for [`ProxySettings::tunnel_addr`].
pub fn tunnel_addr_override_from_env() -> Option<String> {
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the from_env constructor for the override"
    )]
    std::env::var(TUNNEL_PUBLIC_ADDR_ENV)
        .ok()
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(f: impl FnOnce(&mut SshProxySettings), tls_routing: bool) -> ProxySettings {
        let mut p = ProxySettings {
            tls_routing_enabled: tls_routing,
            ..Default::default()
        };
        f(&mut p.ssh);
        p
    }

    fn tunnel(p: &ProxySettings) -> String {
        p.tunnel_addr(None).unwrap().to_string()
    }

    #[test]
    fn tunnel_address_derivation_follows_teleport() {
        // The override wins over everything.
        let p = settings(|s| s.tunnel_public_addr = "t.example.com:1".into(), false);
        assert_eq!(
            p.tunnel_addr(Some("over.example.com")).unwrap().to_string(),
            "over.example.com:3024"
        );

        // TLS routing: the web address and port.
        let p = settings(
            |s| {
                s.web_listen_addr = "0.0.0.0:3080".into();
                s.public_addr = "proxy.example.com".into();
            },
            true,
        );
        assert_eq!(tunnel(&p), "proxy.example.com:3080");
        let p = settings(|s| s.public_addr = "proxy.example.com".into(), true);
        assert_eq!(tunnel(&p), "proxy.example.com:443");
        let p = settings(|s| s.web_listen_addr = "127.0.0.1:3080".into(), true);
        assert_eq!(tunnel(&p), "127.0.0.1:3080");

        // Separate ports: the order of preference and the port rules.
        let p = settings(
            |s| {
                s.tunnel_listen_addr = "0.0.0.0:4024".into();
                s.tunnel_public_addr = "t.example.com".into();
                s.ssh_public_addr = "s.example.com:22".into();
            },
            false,
        );
        assert_eq!(tunnel(&p), "t.example.com:4024");
        let p = settings(
            |s| {
                s.tunnel_listen_addr = "0.0.0.0:4024".into();
                s.ssh_public_addr = "s.example.com:22".into();
                s.public_addr = "w.example.com:443".into();
            },
            false,
        );
        assert_eq!(
            tunnel(&p),
            "s.example.com:4024",
            "ssh public addr: port forced to the tunnel port"
        );
        let p = settings(|s| s.public_addr = "w.example.com:443".into(), false);
        assert_eq!(
            tunnel(&p),
            "w.example.com:3024",
            "web public addr: port forced"
        );
        let p = settings(|s| s.tunnel_listen_addr = "127.0.0.1:5024".into(), false);
        assert_eq!(tunnel(&p), "127.0.0.1:5024");
        let p = settings(|s| s.web_listen_addr = "127.0.0.1:3080".into(), false);
        // As in Go, the web listen address keeps its own port (the tunnel port is only
        // its default).
        assert_eq!(tunnel(&p), "127.0.0.1:3080");
        let p = settings(|s| s.web_listen_addr = "127.0.0.1".into(), false);
        assert_eq!(tunnel(&p), "127.0.0.1:3024");
    }

    #[test]
    fn ssh_proxy_address() {
        let p = settings(
            |s| {
                s.listen_addr = "0.0.0.0:3023".into();
                s.public_addr = "w.example.com:443".into();
            },
            false,
        );
        assert_eq!(
            p.ssh_proxy_addr().unwrap().to_string(),
            "w.example.com:3023"
        );
    }

    #[test]
    fn not_a_proxy_is_said_plainly() {
        let e = interpret(
            200,
            Some("text/html"),
            b"<!doctype html><title>Grafana</title>",
        )
        .unwrap_err();
        assert!(matches!(e, DiscoveryError::NotTeleportProxy { .. }), "{e}");
        let e = interpret(200, Some("application/json"), br#"{"status":"ok"}"#).unwrap_err();
        assert!(e.to_string().contains("not a Teleport proxy"), "{e}");
        let e = interpret(200, Some("application/json"), b"{not json").unwrap_err();
        assert!(e.to_string().contains("invalid JSON"), "{e}");
        let e = interpret(200, None, b"").unwrap_err();
        assert!(e.to_string().contains("no content type"), "{e}");
    }

    #[test]
    fn proxy_errors_carry_the_message() {
        let e = interpret(
            404,
            Some("application/json"),
            br#"{"error":{"message":"connector \"okta\" not found"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            DiscoveryError::ProxyError {
                status: 404,
                message: "connector \"okta\" not found".into()
            }
        );
    }

    #[test]
    fn ping_json_round_trips_and_reads_teleport_shapes() {
        let body = br#"{"auth":{"type":"local","second_factor":true,"local":{"name":""}},
            "proxy":{"kube":{"enabled":false},"ssh":{"listen_addr":"0.0.0.0:3023","tunnel_listen_addr":"0.0.0.0:3024","web_listen_addr":"0.0.0.0:3080","public_addr":"proxy.example.com:3080"},"tls_routing_enabled":false},
            "server_version":"17.4.2","min_client_version":"16.0.0","cluster_name":"example.com","automatic_upgrades":false,"edition":"oss","fips":false}"#;
        let p = interpret(200, Some("application/json; charset=utf-8"), body).unwrap();
        assert_eq!(p.auth.second_factor, "on");
        assert_eq!(
            p.proxy.tunnel_addr(None).unwrap().to_string(),
            "proxy.example.com:3024"
        );
        let again: PingResponse = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }
}
