//! `tpd start --config FILE`: the part of Teleport's `teleport.yaml` that `tpd` honours,
//! so an operator who knows Teleport's file finds the same names.
//!
//! ```yaml
//! version: v3
//! teleport:
//!   data_dir: /var/lib/tp
//!   diag_addr: 127.0.0.1:3000
//!   # A proxy started alone (auth_service.enabled: no) joins through these:
//!   # auth_server: auth.example.com:3025
//!   # auth_token: /var/lib/tp/join-token      # a file, never the token itself
//!   # ca_pin: sha256:...
//!   log:
//!     severity: INFO          # DEBUG, INFO, WARN, ERROR
//!     format:
//!       output: json          # text or json
//! auth_service:
//!   enabled: yes
//!   listen_addr: 127.0.0.1:3025
//!   cluster_name: example.com
//!   proxy_listener_mode: multiplex    # or separate
//!   authentication:
//!     signature_algorithm_suite: balanced-v1   # or legacy
//! proxy_service:
//!   enabled: yes
//!   web_listen_addr: 127.0.0.1:3080
//!   tunnel_listen_addr: 127.0.0.1:3024
//!   public_addr: proxy.example.com:443
//!   https_keypairs:                   # the web certificate, from your CA
//!     - cert_file: /etc/tp/web.crt
//!       key_file: /etc/tp/web.key
//! ```
//!
//! Flags given on the command line win over the file. A field `tpd` does not know is an
//! error naming it (silently ignoring a setting would run something other than what the
//! file says). `enabled: no` turns a service off (Teleport's `--roles`); turning both
//! off is an error. `teleport.join_params` (`token_name` a file, `method: token`) is read
//! as `auth_token` is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::CliError;
use crate::cluster::{ListenerMode, SignatureAlgorithmSuite};

/// What a config file sets; `None` where it is silent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileSettings {
    /// `teleport.data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `teleport.diag_addr`.
    pub diag_addr: Option<SocketAddr>,
    /// `teleport.log.severity`, as a tracing filter (`info`, `debug`, ...).
    pub log_level: Option<String>,
    /// `teleport.log.format.output` is `json`.
    pub log_json: Option<bool>,
    /// `auth_service.listen_addr`.
    pub auth_addr: Option<SocketAddr>,
    /// `auth_service.cluster_name`.
    pub cluster_name: Option<String>,
    /// `auth_service.proxy_listener_mode`.
    pub listener_mode: Option<ListenerMode>,
    /// `auth_service.authentication.signature_algorithm_suite`.
    pub signature_algorithm_suite: Option<SignatureAlgorithmSuite>,
    /// `proxy_service.web_listen_addr`.
    pub web_addr: Option<SocketAddr>,
    /// `proxy_service.tunnel_listen_addr`.
    pub tunnel_addr: Option<SocketAddr>,
    /// `proxy_service.public_addr` (the first, when a list).
    pub public_addr: Option<String>,
    /// `proxy_service.https_keypairs` (one pair).
    pub web_keypair: Option<crate::cluster::WebKeyPair>,
    /// `auth_service.enabled` and `proxy_service.enabled`, when either is set.
    pub roles: Option<crate::cluster::Roles>,
    /// `teleport.auth_server` (or the first of `teleport.auth_servers`).
    pub auth_server: Option<String>,
    /// `teleport.auth_token` or `teleport.join_params.token_name`: the token's file.
    pub token_file: Option<PathBuf>,
    /// `teleport.ca_pin` (one or a list).
    pub ca_pins: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    version: Option<String>,
    teleport: Option<Teleport>,
    auth_service: Option<AuthService>,
    proxy_service: Option<ProxyService>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Teleport {
    data_dir: Option<PathBuf>,
    diag_addr: Option<String>,
    log: Option<Log>,
    auth_server: Option<String>,
    auth_servers: Option<Vec<String>>,
    auth_token: Option<PathBuf>,
    join_params: Option<JoinParams>,
    ca_pin: Option<OneOrMany>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JoinParams {
    token_name: Option<PathBuf>,
    method: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Log {
    output: Option<String>,
    severity: Option<String>,
    format: Option<LogFormat>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogFormat {
    output: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuthService {
    enabled: Option<YesNo>,
    listen_addr: Option<String>,
    cluster_name: Option<String>,
    proxy_listener_mode: Option<String>,
    authentication: Option<Authentication>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Authentication {
    signature_algorithm_suite: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProxyService {
    enabled: Option<YesNo>,
    web_listen_addr: Option<String>,
    tunnel_listen_addr: Option<String>,
    public_addr: Option<OneOrMany>,
    https_keypairs: Option<Vec<KeyPairFiles>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPairFiles {
    key_file: PathBuf,
    cert_file: PathBuf,
}

/// Teleport writes `enabled: yes`; YAML 1.2 reads that as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum YesNo {
    Bool(bool),
    Word(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> Result<FileSettings, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            format!("cannot read the config file {}: {e}", path.display()),
            "check the path given to --config",
        )
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<FileSettings, CliError> {
    let hint = "see `tpd start --help` and docs/production.md for the fields tpd reads";
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            // The parser's message, without its multi-line source excerpt: one line.
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            CliError::new(format!("{origin}: {first}"), hint)
        })?
    };
    let bad = |field: &str, what: String| CliError::new(format!("{origin}: {field}: {what}"), hint);
    if let Some(v) = file.version.as_deref()
        && !matches!(v, "v1" | "v2" | "v3")
    {
        return Err(bad("version", format!("expected v1, v2 or v3, got {v:?}")));
    }
    let addr = |field: &str, v: Option<String>| -> Result<Option<SocketAddr>, CliError> {
        v.map(|v| {
            v.parse().map_err(|_| {
                bad(
                    field,
                    format!("expected IP:PORT (for example 127.0.0.1:3025), got {v:?}"),
                )
            })
        })
        .transpose()
    };
    let enabled = |field: &str, v: Option<YesNo>| -> Result<Option<bool>, CliError> {
        Ok(match v {
            None => None,
            Some(YesNo::Bool(b)) => Some(b),
            Some(YesNo::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" => Some(true),
                "no" | "false" | "off" => Some(false),
                _ => return Err(bad(field, format!("expected yes or no, got {w:?}"))),
            },
        })
    };

    let mut s = FileSettings::default();
    let teleport = file.teleport.unwrap_or_default();
    s.data_dir = teleport.data_dir;
    s.diag_addr = addr("teleport.diag_addr", teleport.diag_addr)?;
    s.auth_server = match (teleport.auth_server, teleport.auth_servers) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "teleport.auth_servers",
                "give auth_server or auth_servers, not both".into(),
            ));
        }
        (Some(a), None) => Some(a),
        (None, Some(v)) => v.into_iter().next(),
        (None, None) => None,
    };
    let join = teleport.join_params.unwrap_or_default();
    if let Some(m) = join.method.as_deref()
        && m != "token"
    {
        return Err(bad(
            "teleport.join_params.method",
            format!("tpd joins with the token method only, got {m:?}"),
        ));
    }
    s.token_file = match (teleport.auth_token, join.token_name) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "teleport.join_params.token_name",
                "give auth_token or join_params, not both".into(),
            ));
        }
        (a, b) => a.or(b),
    };
    s.ca_pins = match teleport.ca_pin {
        None => vec![],
        Some(OneOrMany::One(p)) => vec![p],
        Some(OneOrMany::Many(v)) => v,
    };
    for p in &s.ca_pins {
        crate::join::check_ca_pin(p).map_err(|e| bad("teleport.ca_pin", e))?;
    }
    let log = teleport.log.unwrap_or_default();
    if let Some(o) = log.output.as_deref()
        && o != "stderr"
    {
        return Err(bad(
            "teleport.log.output",
            format!("tpd logs to stderr only, got {o:?}"),
        ));
    }
    s.log_level = log
        .severity
        .map(|v| match v.to_ascii_uppercase().as_str() {
            "DEBUG" => Ok("debug".to_string()),
            "INFO" => Ok("info".to_string()),
            "WARN" | "WARNING" => Ok("warn".to_string()),
            "ERROR" => Ok("error".to_string()),
            _ => Err(bad(
                "teleport.log.severity",
                format!("expected DEBUG, INFO, WARN or ERROR, got {v:?}"),
            )),
        })
        .transpose()?;
    s.log_json = log
        .format
        .and_then(|f| f.output)
        .map(|o| match o.as_str() {
            "json" => Ok(true),
            "text" => Ok(false),
            _ => Err(bad(
                "teleport.log.format.output",
                format!("expected text or json, got {o:?}"),
            )),
        })
        .transpose()?;

    let auth = file.auth_service.unwrap_or_default();
    let auth_on = enabled("auth_service.enabled", auth.enabled)?;
    s.auth_addr = addr("auth_service.listen_addr", auth.listen_addr)?;
    s.cluster_name = auth.cluster_name;
    s.listener_mode = auth
        .proxy_listener_mode
        .map(|m| match m.as_str() {
            "multiplex" => Ok(ListenerMode::Multiplex),
            "separate" => Ok(ListenerMode::Separate),
            _ => Err(bad(
                "auth_service.proxy_listener_mode",
                format!("expected multiplex or separate, got {m:?}"),
            )),
        })
        .transpose()?;
    s.signature_algorithm_suite = auth
        .authentication
        .and_then(|a| a.signature_algorithm_suite)
        .map(|v| match v.as_str() {
            "balanced-v1" => Ok(SignatureAlgorithmSuite::BalancedV1),
            "legacy" => Ok(SignatureAlgorithmSuite::Legacy),
            _ => Err(bad(
                "auth_service.authentication.signature_algorithm_suite",
                format!("expected balanced-v1 or legacy, got {v:?}"),
            )),
        })
        .transpose()?;

    let proxy = file.proxy_service.unwrap_or_default();
    let proxy_on = enabled("proxy_service.enabled", proxy.enabled)?;
    if auth_on.is_some() || proxy_on.is_some() {
        let roles = crate::cluster::Roles {
            auth: auth_on.unwrap_or(true),
            proxy: proxy_on.unwrap_or(true),
        };
        if !roles.auth && !roles.proxy {
            return Err(bad(
                "auth_service.enabled, proxy_service.enabled",
                "both services are off; nothing would run".into(),
            ));
        }
        s.roles = Some(roles);
    }
    s.web_addr = addr("proxy_service.web_listen_addr", proxy.web_listen_addr)?;
    s.tunnel_addr = addr("proxy_service.tunnel_listen_addr", proxy.tunnel_listen_addr)?;
    s.public_addr = match proxy.public_addr {
        None => None,
        Some(OneOrMany::One(a)) => Some(a),
        Some(OneOrMany::Many(v)) => v.into_iter().next(),
    };
    let mut pairs = proxy.https_keypairs.unwrap_or_default();
    if pairs.len() > 1 {
        return Err(bad(
            "proxy_service.https_keypairs",
            format!("tpd serves one web certificate, got {}", pairs.len()),
        ));
    }
    s.web_keypair = pairs.pop().map(|p| crate::cluster::WebKeyPair {
        cert: p.cert_file,
        key: p.key_file,
    });
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_teleport_shaped_file_reads_every_field() {
        let s = parse(
            "version: v3\nteleport:\n  data_dir: /var/lib/tp\n  diag_addr: 127.0.0.1:3000\n  log:\n    output: stderr\n    severity: WARN\n    format:\n      output: json\nauth_service:\n  enabled: yes\n  listen_addr: 0.0.0.0:3025\n  cluster_name: example.com\n  proxy_listener_mode: separate\n  authentication:\n    signature_algorithm_suite: legacy\nproxy_service:\n  enabled: \"yes\"\n  web_listen_addr: 0.0.0.0:443\n  tunnel_listen_addr: 0.0.0.0:3024\n  public_addr: [proxy.example.com:443, other:443]\n  https_keypairs:\n    - cert_file: /etc/tp/web.crt\n      key_file: /etc/tp/web.key\n",
            "tp.yaml",
        )
        .unwrap();
        assert_eq!(s.data_dir, Some(PathBuf::from("/var/lib/tp")));
        assert_eq!(s.diag_addr, Some("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(s.log_level.as_deref(), Some("warn"));
        assert_eq!(s.log_json, Some(true));
        assert_eq!(s.auth_addr, Some("0.0.0.0:3025".parse().unwrap()));
        assert_eq!(s.cluster_name.as_deref(), Some("example.com"));
        assert_eq!(s.listener_mode, Some(ListenerMode::Separate));
        assert_eq!(
            s.signature_algorithm_suite,
            Some(SignatureAlgorithmSuite::Legacy)
        );
        assert_eq!(s.web_addr, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(s.tunnel_addr, Some("0.0.0.0:3024".parse().unwrap()));
        assert_eq!(s.public_addr.as_deref(), Some("proxy.example.com:443"));
        assert_eq!(
            s.web_keypair,
            Some(crate::cluster::WebKeyPair {
                cert: "/etc/tp/web.crt".into(),
                key: "/etc/tp/web.key".into(),
            })
        );
        assert_eq!(s.roles, Some(crate::cluster::Roles::default()));
        assert_eq!(parse("", "empty.yaml").unwrap(), FileSettings::default());
    }

    #[test]
    fn a_standalone_proxy_file_reads_its_join_settings() {
        let text = format!(
            "teleport:\n  auth_servers: [10.0.0.5:3025]\n  join_params:\n    token_name: /var/lib/tp/token\n    method: token\n  ca_pin: sha256:{}\nauth_service:\n  enabled: no\n",
            "ab".repeat(32)
        );
        let s = parse(&text, "tp.yaml").unwrap();
        assert_eq!(
            s.roles,
            Some(crate::cluster::Roles {
                auth: false,
                proxy: true
            })
        );
        assert_eq!(s.auth_server.as_deref(), Some("10.0.0.5:3025"));
        assert_eq!(s.token_file, Some(PathBuf::from("/var/lib/tp/token")));
        assert_eq!(s.ca_pins, [format!("sha256:{}", "ab".repeat(32))]);
    }

    #[test]
    fn bad_files_name_the_file_and_the_field() {
        for (text, wants) in [
            (
                "auth_service:\n  listen_addr: localhost:3025\n",
                "tp.yaml: auth_service.listen_addr: expected IP:PORT",
            ),
            ("ssh_service:\n  enabled: yes\n", "ssh_service"),
            (
                "auth_service:\n  enabled: no\nproxy_service:\n  enabled: false\n",
                "tp.yaml: auth_service.enabled, proxy_service.enabled: both services are off",
            ),
            (
                "teleport:\n  ca_pin: [sha256:abcd]\n",
                "tp.yaml: teleport.ca_pin: \"sha256:abcd\": expected sha256: and 64 hex digits",
            ),
            (
                "teleport:\n  join_params:\n    token_name: /t\n    method: iam\n",
                "teleport.join_params.method: tpd joins with the token method only",
            ),
            (
                "proxy_service:\n  enabled: maybe\n",
                "proxy_service.enabled: expected yes or no",
            ),
            ("version: v9\n", "tp.yaml: version: expected v1, v2 or v3"),
            (
                "teleport:\n  log:\n    output: /var/log/tp.log\n",
                "teleport.log.output: tpd logs to stderr only",
            ),
            (
                "teleport:\n  log:\n    severity: LOUD\n",
                "teleport.log.severity",
            ),
            (
                "auth_service:\n  proxy_listener_mode: both\n",
                "expected multiplex or separate",
            ),
            ("auth_service: [\n", "tp.yaml: line 1 column 15: "),
            (
                "ssh_service:\n  enabled: yes\n",
                "tp.yaml: line 1 column 1: unknown field `ssh_service`",
            ),
        ] {
            let e = parse(text, "tp.yaml").unwrap_err();
            assert!(e.message.contains(wants), "{text:?}: {}", e.message);
            assert_eq!(e.message.lines().count(), 1, "{}", e.message);
            assert!(e.hint.is_some());
        }
    }
}
