//! Password login, as `tsh login` does it: `POST /webapi/ssh/certs` (also under `/v1`)
//! with the user's password and public keys; the proxy has the Auth server check the
//! password and sign certificates, and answers Teleport's `SSHLoginResponse`.
//!
//! Failed attempts are limited per user and per client address; the password is never
//! logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tp_client::ErrorKind;
use tp_proto::tp::login::v1::AuthenticateSshUserRequest;

use crate::web::{ApiError, WebState};

/// Failed logins allowed per user, and per client address, in one [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// The window failed logins are counted in.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);

/// The peer address of a web connection, added by the web port.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Counts failed logins per key (a user name or an address) in a sliding window.
#[derive(Debug, Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Limiter {
    fn blocked(&self, key: &str, now: Instant) -> bool {
        let Ok(mut m) = self.failures.lock() else {
            return true;
        };
        match m.get(key) {
            Some((_, since)) if now.duration_since(*since) > WINDOW => {
                m.remove(key);
                false
            }
            Some((n, _)) => *n >= MAX_FAILURES,
            None => false,
        }
    }

    fn fail(&self, key: &str, now: Instant) {
        if let Ok(mut m) = self.failures.lock() {
            // Bound memory: forget old entries once the table grows.
            if m.len() > 100_000 {
                m.retain(|_, (_, since)| now.duration_since(*since) <= WINDOW);
            }
            let e = m.entry(key.to_string()).or_insert((0, now));
            e.0 += 1;
        }
    }

    fn succeed(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }
}

fn b64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|e| serde::de::Error::custom(format!("expected base64: {e}")))
}

/// `CreateSSHCertReq` as `tsh` sends it.
#[derive(Deserialize)]
pub struct SshCertsRequest {
    user: String,
    password: String,
    #[serde(default)]
    otp_token: String,
    #[serde(default, deserialize_with = "b64")]
    ssh_pub_key: Vec<u8>,
    #[serde(default, deserialize_with = "b64")]
    tls_pub_key: Vec<u8>,
    #[serde(default, deserialize_with = "b64")]
    pub_key: Vec<u8>,
    /// Nanoseconds.
    #[serde(default)]
    ttl: i64,
    #[serde(default, rename = "RouteToCluster")]
    route_to_cluster: String,
}

impl std::fmt::Debug for SshCertsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshCertsRequest")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// One cluster's host CA, as `tsh` stores it.
#[derive(Debug, Serialize)]
pub struct HostSigner {
    domain_name: String,
    /// base64 of authorized_keys lines.
    checking_keys: Vec<String>,
    /// base64 of PEM certificates.
    tls_certs: Vec<String>,
}

/// `SSHLoginResponse`.
#[derive(Debug, Serialize)]
pub struct SshLoginResponse {
    username: String,
    /// base64 of the SSH certificate (authorized_keys form).
    cert: String,
    /// base64 of the PEM TLS certificate.
    tls_cert: String,
    host_signers: Vec<HostSigner>,
}

/// The default certificate lifetime when the request names none.
const DEFAULT_TTL: Duration = Duration::from_secs(12 * 3600);

/// `POST /webapi/ssh/certs`.
pub async fn ssh_certs(
    State(state): State<WebState>,
    client: Option<Extension<ClientAddr>>,
    Json(req): Json<SshCertsRequest>,
) -> Result<Json<SshLoginResponse>, ApiError> {
    let auth = state.auth.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Auth server cannot be reached",
        )
    })?;
    if !req.pub_key.is_empty() && (!req.ssh_pub_key.is_empty() || !req.tls_pub_key.is_empty()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "pub_key cannot be combined with ssh_pub_key or tls_pub_key",
        ));
    }
    let (ssh_key, tls_key) = if req.pub_key.is_empty() {
        (req.ssh_pub_key, req.tls_pub_key)
    } else {
        (req.pub_key.clone(), req.pub_key)
    };
    if ssh_key.is_empty() && tls_key.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing public key (ssh_pub_key or tls_pub_key)",
        ));
    }
    let addr = client
        .map(|Extension(ClientAddr(a))| a.to_string())
        .unwrap_or_default();
    let now = Instant::now();
    let user_key = format!("user:{}", req.user);
    let addr_key = format!("addr:{addr}");
    if state.limiter.blocked(&user_key, now)
        || (!addr.is_empty() && state.limiter.blocked(&addr_key, now))
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed login attempts; try again later",
        ));
    }
    let ttl = if req.ttl > 0 {
        Duration::from_nanos(u64::try_from(req.ttl).unwrap_or(u64::MAX))
    } else {
        DEFAULT_TTL
    };
    let expires = std::time::SystemTime::now()
        .checked_add(ttl)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| prost_types::Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        });
    let resp = auth
        .authenticate_ssh_user(AuthenticateSshUserRequest {
            user: req.user.clone(),
            password: req.password.into_bytes(),
            otp_token: req.otp_token,
            ssh_public_key: ssh_key,
            tls_public_key: tls_key,
            expires,
            route_to_cluster: req.route_to_cluster,
            client_addr: addr.clone(),
        })
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::AccessDenied => {
            state.limiter.fail(&user_key, now);
            if !addr.is_empty() {
                state.limiter.fail(&addr_key, now);
            }
            return Err(ApiError::new(StatusCode::FORBIDDEN, e.to_string()));
        }
        Err(e) if e.kind() == ErrorKind::BadParameter => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string()));
        }
        Err(e) => return Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())),
    };
    state.limiter.succeed(&user_key);
    let enc = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    Ok(Json(SshLoginResponse {
        username: resp.username,
        cert: enc(&resp.ssh_cert),
        tls_cert: enc(&resp.tls_cert),
        host_signers: vec![HostSigner {
            domain_name: resp.cluster_name,
            checking_keys: resp.host_ca_ssh_keys.iter().map(|k| enc(k)).collect(),
            tls_certs: resp.host_ca_tls_certs.iter().map(|c| enc(c)).collect(),
        }],
    }))
}
