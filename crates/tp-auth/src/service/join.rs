//! Joining: `proto.JoinService/RegisterUsingToken` and `proto.AuthService/GetClusterCACert`,
//! the two calls open to a caller without a client certificate.
//!
//! A host that has no credentials yet (a proxy started on its own) proves it may join
//! with a provision token, and sends the public keys it generated; the server checks the
//! token (present, unexpired, join method `token`, allowing the role asked for) and
//! answers host certificates signed by the host CA: X.509 (CN `<host id>.<cluster>`, O
//! the system role) and SSH (type host, Teleport's role and authority extensions), with
//! the host CA's certificates and SSH keys to trust. Tokens stay usable until they expire,
//! as Teleport's `token` method does, so several hosts can join with one.
//!
//! Every attempt is audited as `instance.join`, the token masked. A refusal never says
//! whether the token was unknown, expired or for another role. Callers are anonymous, so
//! refused tokens are limited per client address (an IPv6 /64), [`MAX_FAILED_JOINS`] in
//! [`FAILED_JOIN_WINDOW`], each attempt counted before its token is looked up. A
//! connection forwarded by the proxy's web port (TLS routing) shows the proxy's address,
//! so such joins share one allowance; a host joins through the Auth address itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tp_proto::proto::join_service_server::JoinService;
use tp_proto::proto::{Certs, GetClusterCaCertResponse};
use tp_proto::trail::ErrorKind;
use tp_proto::types::{ProvisionTokenV2, RegisterUsingTokenRequest};

use super::{AuthServer, bad, expires_of, spki_from};
use crate::store::Kind;

/// How long a joined host's certificates are valid: ten years, the CAs' own lifetime, as
/// Teleport issues host certificates (they are replaced by rotating the host CA, not by
/// expiry). Deleting the host's identity and joining again also replaces them.
pub const HOST_CERT_TTL: i64 = 3650 * 86400;

/// Teleport's system roles, spelled as certificates carry them. `Admin` and `Auth` are
/// missing on purpose: nothing may join as the cluster's administrator, and a cluster
/// has one Auth server (its state is local).
const JOINABLE_ROLES: &[&str] = &[
    "Node",
    "Proxy",
    "App",
    "Db",
    "Kube",
    "WindowsDesktop",
    "Discovery",
    "Okta",
    "MDM",
];

/// Failed joins allowed per client address in one [`FAILED_JOIN_WINDOW`].
pub const MAX_FAILED_JOINS: u32 = 10;
/// The window failed joins are counted in.
pub const FAILED_JOIN_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Failed joins per client address: the count and when counting started.
#[derive(Debug, Default)]
pub(super) struct JoinFailures(Mutex<HashMap<IpAddr, (u32, Instant)>>);

/// The key failures are counted under: the address, or its /64 for IPv6 (one host
/// commonly holds a whole /64).
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl JoinFailures {
    /// Counts an attempt from `ip` before it is checked (so concurrent guesses cannot
    /// all slip under the limit); false when the limit is already reached.
    fn begin(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut m) = self.0.lock() else {
            return false;
        };
        // Bound memory: forget old entries once the table grows.
        if m.len() > 100_000 {
            m.retain(|_, (_, since)| now.duration_since(*since) <= FAILED_JOIN_WINDOW);
        }
        let e = m.entry(limit_key(ip)).or_insert((0, now));
        if now.duration_since(e.1) > FAILED_JOIN_WINDOW {
            *e = (0, now);
        }
        if e.0 >= MAX_FAILED_JOINS {
            return false;
        }
        e.0 += 1;
        true
    }

    /// Gives back the attempt [`JoinFailures::begin`] counted: it was not a refused
    /// token.
    fn refund(&self, ip: IpAddr) {
        if let Ok(mut m) = self.0.lock()
            && let Some(e) = m.get_mut(&limit_key(ip))
        {
            e.0 = e.0.saturating_sub(1);
        }
    }
}

/// The name clients reach the Auth server by (`*.teleport.cluster.local` too).
const AUTH_DNS: &str = "teleport.cluster.local";

/// A host ID a joiner may have: 1 to 128 letters, digits, `-` or `_`, and not the name
/// of a built-in identity (`admin`, `auth`, `proxy` name the local admin, the Auth
/// server and a co-located proxy in this cluster).
fn valid_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !["admin", "auth", "proxy"]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(id))
}

/// The most principals or DNS names one request may ask for.
const MAX_NAMES: usize = 64;

/// Teleport's spelling of a system role named in any case, if it is one a host may join
/// as.
pub fn canonical_role(role: &str) -> Option<&'static str> {
    JOINABLE_ROLES
        .iter()
        .copied()
        .find(|r| r.eq_ignore_ascii_case(role))
}

/// A name that goes into a certificate: printable ASCII without spaces, 1–253 bytes.
fn check_name(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() || v.len() > 253 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(format!(
            "{field}: expected 1 to 253 printable characters without spaces, got {v:?}"
        )));
    }
    Ok(())
}

/// The generic refusal: which check failed stays in the server's log.
fn refused() -> Status {
    ErrorKind::AccessDenied.status(
        "the join token is not valid: it does not exist, has expired, or does not allow this role",
    )
}

impl AuthServer {
    /// Checks `r` against the stored token; the canonical role on success.
    async fn check_join(&self, r: &RegisterUsingTokenRequest) -> Result<&'static str, Status> {
        if r.token.is_empty() {
            return Err(bad("token: a provision token is required to join"));
        }
        if !valid_host_id(&r.host_id) {
            return Err(bad(
                "hostID: expected 1 to 128 letters, digits, '-' or '_' (a UUID), other than \
                 the built-in identities' names (admin, auth, proxy)",
            ));
        }
        let role = canonical_role(&r.role).ok_or_else(|| {
            bad(format!(
                "role: {:?} is not a system role a host can join as (expected one of {})",
                r.role,
                JOINABLE_ROLES.join(", ")
            ))
        })?;
        if !r.node_name.is_empty() {
            check_name("node_name", &r.node_name)?;
        }
        if r.additional_principals.len() > MAX_NAMES || r.dns_names.len() > MAX_NAMES {
            return Err(bad(format!(
                "additional_principals, dns_names: at most {MAX_NAMES} names each"
            )));
        }
        for p in &r.additional_principals {
            check_name("additional_principals", p)?;
        }
        for d in &r.dns_names {
            check_name("dns_names", d)?;
        }
        // The Auth server's own names: a joined host must not be able to pose as it.
        if let Some(n) = r
            .additional_principals
            .iter()
            .chain(&r.dns_names)
            .find(|n| {
                n.eq_ignore_ascii_case(AUTH_DNS)
                    || n.to_ascii_lowercase().ends_with(&format!(".{AUTH_DNS}"))
            })
        {
            return Err(bad(format!(
                "additional_principals, dns_names: {n:?} names the Auth server; a joining host \
                 cannot have it"
            )));
        }
        let item = match self.store.get(Kind::Token, &r.token).await {
            Ok(item) => item,
            Err(crate::store::StoreError::NotFound) => {
                tracing::info!(host_id = %r.host_id, "join refused: no such token");
                return Err(refused());
            }
            Err(e) => return Err(super::store_status(Kind::Token, "", e)),
        };
        let token: ProvisionTokenV2 = item
            .decode()
            .map_err(|e| ErrorKind::ConnectionProblem.status(e.to_string()))?;
        if expires_of(token.metadata.as_ref()).is_some_and(|t| t <= self.now()) {
            tracing::info!(host_id = %r.host_id, "join refused: the token has expired");
            return Err(refused());
        }
        let spec = token.spec.unwrap_or_default();
        if !(spec.join_method.is_empty() || spec.join_method == "token") {
            tracing::info!(host_id = %r.host_id, method = %spec.join_method, "join refused: not a `token` method token");
            return Err(refused());
        }
        if !spec.roles.iter().any(|t| t.eq_ignore_ascii_case(role)) {
            tracing::info!(host_id = %r.host_id, role, "join refused: the token does not allow this role");
            return Err(refused());
        }
        Ok(role)
    }

    /// Issues the host certificates for an accepted join request.
    async fn host_certs(&self, r: &RegisterUsingTokenRequest, role: &str) -> Result<Certs, Status> {
        if r.public_tls_key.is_empty() && r.public_ssh_key.is_empty() {
            return Err(bad("public_tls_key, public_ssh_key: missing public keys"));
        }
        let host_ca = self.ca("host").await?;
        let keys = host_ca
            .spec
            .as_ref()
            .and_then(|s| s.active_keys.clone())
            .unwrap_or_default();
        let now = self.now();
        let fqdn = format!("{}.{}", r.host_id, self.cluster_name);
        let mut names = vec![r.host_id.clone(), fqdn.clone()];
        if !r.node_name.is_empty() {
            names.push(r.node_name.clone());
        }
        names.extend(r.additional_principals.iter().cloned());
        let mut certs = Certs::default();
        if !r.public_tls_key.is_empty() {
            let spki = spki_from(&r.public_tls_key)?;
            let mut sans = names.clone();
            sans.extend(r.dns_names.iter().cloned());
            sans.dedup();
            let der =
                crate::ca::issue_host_for(&host_ca, &fqdn, role, &sans, &spki, now, HOST_CERT_TTL)
                    .map_err(|e| Status::internal(e.to_string()))?;
            certs.tls = tp_creds::pem::encode("CERTIFICATE", &der).into_bytes();
        }
        if !r.public_ssh_key.is_empty() {
            let text = std::str::from_utf8(&r.public_ssh_key)
                .map_err(|_| bad("public_ssh_key: expected an SSH public key line"))?;
            let key = ssh_key::PublicKey::from_openssh(text.trim())
                .map_err(|e| bad(format!("public_ssh_key: {e}")))?;
            let ca_key = keys
                .ssh
                .first()
                .ok_or_else(|| Status::internal("the host CA has no SSH key"))?;
            let ca_key = ssh_key::PrivateKey::from_openssh(&ca_key.private_key)
                .map_err(|e| Status::internal(format!("host CA SSH key: {e}")))?;
            let mut id = tp_creds::SshHostIdentity::new(&r.host_id, &self.cluster_name, role);
            id.principals = names;
            id.principals.dedup();
            let valid_after = u64::try_from(now - 60).unwrap_or(0);
            let valid_before = u64::try_from(now + HOST_CERT_TTL).unwrap_or(u64::MAX);
            let cert = id
                .sign(&key, &ca_key, valid_after, valid_before)
                .map_err(|e| Status::internal(e.to_string()))?;
            certs.ssh = cert
                .to_openssh()
                .map_err(|e| Status::internal(e.to_string()))?
                .into_bytes();
        }
        certs.tlsca_certs = keys.tls.iter().map(|k| k.cert.clone()).collect();
        certs.sshca_certs = keys.ssh.iter().map(|k| k.public_key.clone()).collect();
        Ok(certs)
    }

    /// The host CA's TLS certificates, PEM, one after another: what a joining host
    /// checks its CA pin against.
    pub(super) async fn cluster_ca_cert(&self) -> Result<GetClusterCaCertResponse, Status> {
        let host_ca = self.ca("host").await?;
        let mut tlsca = Vec::new();
        if let Some(keys) = host_ca.spec.as_ref().and_then(|s| s.active_keys.as_ref()) {
            for k in &keys.tls {
                tlsca.extend_from_slice(&k.cert);
                if !k.cert.ends_with(b"\n") {
                    tlsca.push(b'\n');
                }
            }
        }
        Ok(GetClusterCaCertResponse { tlsca })
    }
}

#[tonic::async_trait]
impl JoinService for AuthServer {
    async fn register_using_token(
        &self,
        req: Request<RegisterUsingTokenRequest>,
    ) -> Result<Response<Certs>, Status> {
        let ip = req
            .extensions()
            .get::<crate::listener::PeerInfo>()
            .and_then(|p| p.remote_addr)
            .map(|a| a.ip());
        let r = req.into_inner();
        if let Some(ip) = ip
            && !self.caches.join_failures.begin(ip, Instant::now())
        {
            // Not audited: a flood of these must not fill the audit log.
            return Err(ErrorKind::LimitExceeded.status(format!(
                "too many failed join attempts from this address; try again in {} minutes",
                FAILED_JOIN_WINDOW.as_secs() / 60
            )));
        }
        let res = match self.check_join(&r).await {
            Ok(role) => self.host_certs(&r, role).await,
            Err(e) => Err(e),
        };
        // Only a refused token counts against the address.
        if let Some(ip) = ip
            && !matches!(&res, Err(e) if e.code() == tonic::Code::PermissionDenied)
        {
            self.caches.join_failures.refund(ip);
        }
        // The host as the certificate would name it; nothing of a malformed ID.
        let host = if valid_host_id(&r.host_id) {
            format!("{}.{}", r.host_id, self.cluster_name)
        } else {
            String::new()
        };
        self.audit(
            "instance.join",
            &host,
            "token",
            &crate::audit::mask(&r.token),
            &res,
        )
        .await;
        res.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_per_address_and_per_ipv6_64_and_refunds_give_back() {
        let f = JoinFailures::default();
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILED_JOINS {
            assert!(f.begin(a, now));
        }
        assert!(
            !f.begin(a, now),
            "the eleventh attempt in the window is refused"
        );
        // A refunded attempt (not a refused token) frees its slot.
        f.refund(a);
        assert!(f.begin(a, now));
        // Another address has its own allowance; the window's end resets it.
        assert!(f.begin("192.0.2.2".parse().unwrap(), now));
        assert!(f.begin(a, now + FAILED_JOIN_WINDOW + Duration::from_secs(1)));

        // Addresses in one IPv6 /64 share an allowance.
        let b: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        for i in 0..MAX_FAILED_JOINS {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 10).parse().unwrap();
            assert!(f.begin(ip, now));
        }
        assert!(!f.begin(b, now));
        assert!(f.begin("2001:db8:1:3::1".parse().unwrap(), now));
    }

    #[test]
    fn host_ids_must_be_id_like_and_not_a_built_in_name() {
        assert!(valid_host_id("0b5c6a1e-5f3e-4e0c-9d47-1f2a3b4c5d6e"));
        assert!(valid_host_id("i-0123_abc"));
        for bad in [
            "",
            "admin",
            "Auth",
            "proxy",
            "a.b",
            "../etc",
            &"x".repeat(129),
        ] {
            assert!(!valid_host_id(bad), "{bad:?}");
        }
        assert_eq!(canonical_role("proxy"), Some("Proxy"));
        assert_eq!(canonical_role("auth"), None);
        assert_eq!(canonical_role("Admin"), None);
    }
}
