//! The gRPC services: `proto.AuthService` (roles, legacy users, join tokens, ping),
//! `teleport.users.v1.UsersService` and `teleport.clusterconfig.v1.ClusterConfigService`,
//! each call authorised with Teleport's RBAC for the caller the client certificate names.
//!
//! Calls this server does not implement answer `UNIMPLEMENTED` (the generated default
//! stubs), which is what makes Teleport's clients fall back to older calls.

use std::future::Future;
use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use tp_proto::GoDefaults;
use tp_proto::proto::Watch;
use tp_proto::proto::auth_service_server::AuthService;
use tp_proto::proto::{
    self, Certs, ChangeUserAuthenticationRequest, ChangeUserAuthenticationResponse,
    CreateResetPasswordTokenRequest, CreateRoleRequest, CreateTokenV2Request, DeleteRoleRequest,
    GetResetPasswordTokenRequest, GetRoleRequest, GetRolesResponse, ListRolesRequest,
    ListRolesResponse, PingRequest, PingResponse, UpdateRoleRequest, UpsertRoleRequest,
    UpsertTokenV2Request, UserCertsRequest,
};
use tp_proto::resource::role_check_and_set_defaults;
use tp_proto::teleport::clusterconfig::v1::GetClusterNameRequest;
use tp_proto::teleport::clusterconfig::v1::cluster_config_service_server::ClusterConfigService;
use tp_proto::teleport::trust::v1::trust_service_server::TrustService;
use tp_proto::teleport::trust::v1::{
    GetCertAuthoritiesRequest, GetCertAuthoritiesResponse, GetCertAuthorityRequest,
};
use tp_proto::teleport::users::v1::users_service_server::UsersService;
use tp_proto::teleport::users::v1::{
    CreateUserRequest, CreateUserResponse, DeleteUserRequest, GetUserRequest, GetUserResponse,
    ListUsersRequest, ListUsersResponse, UpdateUserRequest, UpdateUserResponse, UpsertUserRequest,
    UpsertUserResponse,
};
use tp_proto::tp::audit::v1::audit_service_server::AuditService;
use tp_proto::tp::audit::v1::{
    AuditEvent as WireAuditEvent, ListAuditEventsRequest, ListAuditEventsResponse,
};
use tp_proto::tp::login::v1::login_service_server::LoginService;
use tp_proto::tp::login::v1::{AuthenticateSshUserRequest, AuthenticateSshUserResponse};
use tp_proto::trail::ErrorKind;
use tp_proto::types::{
    CertAuthorityV2, ClusterNameSpecV2, ClusterNameV2, Metadata, ProvisionTokenV2,
    ProvisionTokenV2List, ResourceRequest, RoleV6, UserTokenSpecV3, UserTokenV3, UserV2,
};
use tp_proto::types::{ResourceHeader, WatchStatusSpecV1, WatchStatusV1};

use crate::audit::{AuditEvent, AuditLog, AuditPage};
use crate::identity::{self, Identity, Signer};
use crate::listener::PeerInfo;
use crate::rbac::{AccessContext, RoleSet, presets};
use crate::store::{Item, Kind, Store, StoreError};

mod join;
pub use join::{FAILED_JOIN_WINDOW, HOST_CERT_TTL, MAX_FAILED_JOINS, canonical_role};

/// The Teleport version this server reports (the release line of the reference API).
pub const SERVER_VERSION: &str = "17.0.0";

/// The most items one list call returns.
const MAX_PAGE: usize = 1000;

/// Where the time comes from (seconds since the epoch); a test passes a fixed clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// The Auth server's state shared by its services.
#[derive(Clone)]
pub struct AuthServer {
    cluster_name: String,
    store: Arc<dyn Store>,
    user_cas: Vec<Vec<u8>>,
    host_cas: Vec<Vec<u8>>,
    clock: Clock,
    web_proxy_addr: String,
    caches: Arc<Caches>,
    audit: Arc<AuditLog>,
}

/// What is expensive to derive and rarely changes: decoded caller identities (a
/// signature check each) and the parsed user CA keys.
#[derive(Default)]
struct Caches {
    identities: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Identity>>,
    signer: RevisionSlot<crate::usercert::UserCaSigner>,
    /// The host CA's public parts for `Certs` (TLS certificates, SSH keys), by revision.
    host_ca_public: RevisionSlot<HostCaPublic>,
    /// Decoded roles.
    roles: DecodedCache<RoleV6>,
    /// Decoded users, without their secrets.
    users: DecodedCache<UserV2>,
    /// Failed joins per client address.
    join_failures: join::JoinFailures,
}

/// One value built from a stored resource, with the revision it was built from.
type RevisionSlot<T> = std::sync::Mutex<Option<(String, Arc<T>)>>;

/// Decoded resources by name, with the revision they were decoded at.
type DecodedCache<M> = std::sync::Mutex<std::collections::HashMap<String, (String, Arc<M>)>>;

/// The most decoded resources of one kind kept; the cache starts over when it is full.
const MAX_CACHED_DECODED: usize = 10_000;

/// What certificate responses carry of the host CA: its TLS certificates (PEM) and SSH
/// public keys (authorized_keys form).
#[derive(Default)]
struct HostCaPublic {
    tls: Vec<Vec<u8>>,
    ssh: Vec<Vec<u8>>,
}

/// The most caller identities kept; the cache starts over when it is full.
const MAX_CACHED_IDENTITIES: usize = 10_000;

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("cluster_name", &self.cluster_name)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The caller of a request and what its roles allow.
#[derive(Debug)]
struct Caller {
    identity: Identity,
    roles: RoleSet,
    is_admin: bool,
}

impl Caller {
    fn ctx(&self) -> AccessContext {
        AccessContext::for_user(
            self.identity.username.clone(),
            self.identity.groups.clone(),
            self.identity.traits.clone(),
        )
    }

    /// Whether the caller holds a user certificate (not a host identity).
    fn is_user(&self) -> bool {
        self.identity.signer == Signer::UserCa
    }

    /// Refuses `call` to a host identity: it is about the caller's own user (its user
    /// resource, its certificates), which only a user certificate names.
    fn require_user(&self, call: &str) -> Result<(), Status> {
        if self.is_user() {
            return Ok(());
        }
        Err(ErrorKind::AccessDenied.status(format!(
            "{call} needs a user certificate; {:?} is a host identity (system role {})",
            self.identity.username,
            self.identity.groups.join(", ")
        )))
    }

    fn check(&self, kind: &str, verbs: &[&str]) -> Result<(), Status> {
        self.roles
            .check(&self.ctx(), kind, verbs)
            .map_err(|e| ErrorKind::AccessDenied.status(e.to_string()))
    }
}

fn store_status(kind: Kind, name: &str, e: StoreError) -> Status {
    match e {
        StoreError::NotFound => {
            ErrorKind::NotFound.status(format!("{} {name:?} is not found", kind.as_str()))
        }
        StoreError::AlreadyExists => {
            ErrorKind::AlreadyExists.status(format!("{} {name:?} already exists", kind.as_str()))
        }
        StoreError::CompareFailed => ErrorKind::CompareFailed.status(format!(
            "{} {name:?} has been modified since it was read (revision mismatch)",
            kind.as_str()
        )),
        other => ErrorKind::ConnectionProblem.status(other.to_string()),
    }
}

/// The user an audit event names: the caller's user name, or empty when the caller
/// could not be identified.
fn who(caller: &Result<Caller, Status>) -> String {
    caller
        .as_ref()
        .map(|c| c.identity.username.clone())
        .unwrap_or_default()
}

fn bad(msg: impl Into<String>) -> Status {
    ErrorKind::BadParameter.status(msg)
}

fn expires_of(md: Option<&Metadata>) -> Option<i64> {
    md.and_then(|m| m.expires.as_ref())
        .filter(|t| **t != tp_proto::GO_ZERO_TIMESTAMP)
        .map(|t| t.seconds)
}

fn name_of(md: Option<&Metadata>) -> &str {
    md.map_or("", |m| m.name.as_str())
}

fn role_name(role: Option<&RoleV6>) -> String {
    name_of(role.and_then(|r| r.metadata.as_ref())).to_string()
}

fn user_name(user: Option<&UserV2>) -> String {
    name_of(user.and_then(|u| u.metadata.as_ref())).to_string()
}

/// A join token's name for the audit log: the name is the secret, so it is masked.
fn token_name(token: Option<&ProvisionTokenV2>) -> String {
    crate::audit::mask(name_of(token.and_then(|t| t.metadata.as_ref())))
}

impl AuthServer {
    /// An Auth server for a bootstrapped cluster (see [`crate::bootstrap`]).
    pub fn for_cluster(
        state: &crate::bootstrap::ClusterState,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Self {
        Self::new(
            state.name.clone(),
            store,
            crate::ca::tls_certs_der(&state.user_ca),
            crate::ca::tls_certs_der(&state.host_ca),
            clock,
        )
    }

    /// An Auth server for `cluster_name` over `store`, trusting client certificates the
    /// given user and host CAs (DER) signed.
    pub fn new(
        cluster_name: impl Into<String>,
        store: Arc<dyn Store>,
        user_cas: Vec<Vec<u8>>,
        host_cas: Vec<Vec<u8>>,
        clock: Clock,
    ) -> Self {
        let cluster_name = cluster_name.into();
        let audit = Arc::new(AuditLog::new(store.clone(), cluster_name.clone()));
        Self {
            cluster_name,
            store,
            user_cas,
            host_cas,
            clock,
            web_proxy_addr: String::new(),
            caches: Arc::default(),
            audit,
        }
    }

    /// Up to `limit` audit events (at most [`crate::audit::MAX_AUDIT_PAGE`]) with ids at or after
    /// `start` (from the oldest for an empty `start`; see [`crate::audit::start_at`]),
    /// oldest first.
    ///
    /// It checks no caller: `tp.audit.v1.AuditService/ListAuditEvents` exposes it to
    /// callers allowed `list` and `read` on kind `event`, as Teleport requires.
    pub async fn list_audit_events(&self, start: &str, limit: usize) -> Result<AuditPage, Status> {
        self.audit
            .list(start, limit)
            .await
            .map_err(|e| store_status(Kind::AuditEvent, start, e))
    }

    /// Runs `f` for an identified caller and audits the outcome as `event` on
    /// `kind`/`name`, whether `f` succeeded, was denied or failed, or the caller could
    /// not be identified.
    async fn audited<T, F>(
        &self,
        event: &str,
        kind: &str,
        name: &str,
        caller: Result<Caller, Status>,
        f: impl FnOnce(Caller) -> F,
    ) -> Result<T, Status>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let user = who(&caller);
        let res = match caller {
            Ok(c) => f(c).await,
            Err(e) => Err(e),
        };
        self.audit(event, &user, kind, name, &res).await;
        res
    }

    /// Appends an audit event for `event` by `user` on `kind`/`name` with the call's
    /// outcome. A failure to write it is logged, not returned: the call has happened.
    async fn audit<T>(
        &self,
        event: &str,
        user: &str,
        kind: &str,
        name: &str,
        outcome: &Result<T, Status>,
    ) {
        let outcome = match outcome {
            Ok(_) => Ok(()),
            Err(status) => Err(status.message().to_string()),
        };
        let e = AuditEvent::new(event, user, kind, name, outcome);
        if let Err(err) = self.audit.append(e).await {
            tracing::error!(event, user, kind, name, error = %err, "cannot write an audit event");
        }
    }

    /// The proxy's public web address (`host:port`) used in invite and reset URLs;
    /// without one, `<cluster name>:3080`.
    pub fn with_web_proxy_addr(mut self, addr: impl Into<String>) -> Self {
        self.web_proxy_addr = addr.into();
        self
    }

    fn web_proxy_addr(&self) -> String {
        if self.web_proxy_addr.is_empty() {
            format!("{}:3080", self.cluster_name)
        } else {
            self.web_proxy_addr.clone()
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let peer = req
            .extensions()
            .get::<PeerInfo>()
            .ok_or_else(|| Status::unauthenticated("no client certificate on this connection"))?;
        let leaf = peer.certs.first().ok_or_else(|| {
            ErrorKind::AccessDenied.status(
                "no client certificate: this call needs a certificate signed by the cluster's \
                 user or host CA (without one, only GetClusterCACert and \
                 JoinService/RegisterUsingToken are open)",
            )
        })?;
        let cached = self
            .caches
            .identities
            .lock()
            .ok()
            .and_then(|m| m.get(leaf.as_ref()).cloned());
        let identity = match cached {
            Some(id) => id,
            None => {
                let id = identity::from_certificate(leaf, &self.user_cas, &self.host_cas)
                    .map_err(|e| ErrorKind::AccessDenied.status(e.to_string()))?;
                if let Ok(mut m) = self.caches.identities.lock() {
                    if m.len() >= MAX_CACHED_IDENTITIES {
                        m.clear();
                    }
                    m.insert(leaf.to_vec(), id.clone());
                }
                id
            }
        };
        if identity.not_after < self.now() {
            return Err(ErrorKind::AccessDenied.status("client certificate has expired"));
        }
        match identity.signer {
            Signer::HostCa => {
                static ADMIN: std::sync::LazyLock<RoleSet> =
                    std::sync::LazyLock::new(|| RoleSet::new(vec![presets::admin_role()]));
                static PROXY: std::sync::LazyLock<RoleSet> =
                    std::sync::LazyLock::new(|| RoleSet::new(vec![presets::proxy_role()]));
                if identity.groups.iter().any(|g| g == "Admin") {
                    return Ok(Caller {
                        identity,
                        roles: ADMIN.clone(),
                        is_admin: true,
                    });
                }
                if identity.groups.iter().any(|g| g == "Proxy") {
                    return Ok(Caller {
                        identity,
                        roles: PROXY.clone(),
                        is_admin: false,
                    });
                }
                Err(ErrorKind::AccessDenied.status(format!(
                    "host identity with system roles {:?} has no access to this API",
                    identity.groups
                )))
            }
            _ => {
                // The roles as stored now (not as the certificate was issued), decoded
                // again only when they change.
                let mut roles = Vec::with_capacity(identity.groups.len());
                for name in &identity.groups {
                    roles.push(self.role_shared(name).await?);
                }
                Ok(Caller {
                    identity,
                    roles: RoleSet::shared(roles),
                    is_admin: false,
                })
            }
        }
    }

    fn stored<M: Message + Default + GoDefaults>(
        item: &Item,
        set_revision: impl FnOnce(&mut M, &str),
    ) -> Result<M, Status> {
        let mut m: M = item
            .decode()
            .map_err(|e| ErrorKind::ConnectionProblem.status(e.to_string()))?;
        set_revision(&mut m, &item.revision);
        m.fill_go_defaults();
        Ok(m)
    }

    async fn role(&self, name: &str) -> Result<RoleV6, Status> {
        let item = self
            .store
            .get(Kind::Role, name)
            .await
            .map_err(|e| store_status(Kind::Role, name, e))?;
        Self::stored(&item, |r: &mut RoleV6, rev| {
            r.metadata.get_or_insert_with(Default::default).revision = rev.into()
        })
    }

    async fn user(&self, name: &str, with_secrets: bool) -> Result<UserV2, Status> {
        let item = self
            .store
            .get(Kind::User, name)
            .await
            .map_err(|e| store_status(Kind::User, name, e))?;
        let mut u: UserV2 = Self::stored(&item, |u: &mut UserV2, rev| {
            u.metadata.get_or_insert_with(Default::default).revision = rev.into()
        })?;
        if !with_secrets && let Some(spec) = u.spec.as_mut() {
            spec.local_auth = None;
        }
        Ok(u)
    }

    /// Validates, defaults and writes a role with `write`, returning it as stored.
    async fn write_role(&self, role: Option<RoleV6>, op: WriteOp) -> Result<RoleV6, Status> {
        let mut role = role.ok_or_else(|| bad("missing role"))?;
        role_check_and_set_defaults(&mut role).map_err(|e| bad(e.to_string()))?;
        let name = name_of(role.metadata.as_ref()).to_string();
        let expected = role
            .metadata
            .as_ref()
            .map(|m| m.revision.clone())
            .filter(|r| !r.is_empty());
        if let Some(md) = role.metadata.as_mut() {
            md.revision.clear();
        }
        let expires = expires_of(role.metadata.as_ref());
        self.write(
            Kind::Role,
            &name,
            role.encode_to_vec(),
            expires,
            expected.as_deref(),
            op,
        )
        .await?;
        self.role(&name).await
    }

    /// Writes a resource the way `op` says, mapping store errors to Teleport's kinds.
    async fn write(
        &self,
        kind: Kind,
        name: &str,
        bytes: Vec<u8>,
        expires: Option<i64>,
        expected: Option<&str>,
        op: WriteOp,
    ) -> Result<String, Status> {
        let res = match op {
            WriteOp::Create => self.store.create(kind, name, bytes, expires).await,
            WriteOp::Update => {
                self.store
                    .update(kind, name, bytes, expires, expected)
                    .await
            }
            WriteOp::Upsert => self.store.put(kind, name, bytes, expires).await,
        };
        res.map_err(|e| store_status(kind, name, e))
    }

    /// Every item of a kind, a page at a time.
    async fn all(&self, kind: Kind) -> Result<Vec<Item>, Status> {
        let mut out = Vec::new();
        let mut start = String::new();
        loop {
            let mut page = self
                .store
                .list(kind, &start, MAX_PAGE + 1)
                .await
                .map_err(|e| store_status(kind, "", e))?;
            let next = (page.len() > MAX_PAGE)
                .then(|| page.pop().map(|i| i.name))
                .flatten();
            out.extend(page);
            match next {
                Some(n) => start = n,
                None => return Ok(out),
            }
        }
    }

    async fn users_with_role(&self, role: &str) -> Result<Vec<String>, Status> {
        let mut out = Vec::new();
        for item in self.all(Kind::User).await? {
            let u: UserV2 = item
                .decode()
                .map_err(|e| ErrorKind::ConnectionProblem.status(e.to_string()))?;
            if u.spec
                .as_ref()
                .is_some_and(|s| s.roles.iter().any(|r| r == role))
            {
                out.push(item.name.clone());
            }
        }
        Ok(out)
    }

    async fn write_user(&self, user: Option<UserV2>, op: WriteOp) -> Result<UserV2, Status> {
        let mut user = user.ok_or_else(|| bad("missing user"))?;
        let name = name_of(user.metadata.as_ref()).to_string();
        if name.is_empty() {
            return Err(bad("missing user name"));
        }
        if user.kind.is_empty() {
            user.kind = "user".into();
        }
        if user.version.is_empty() {
            user.version = "v2".into();
        }
        let roles: Vec<String> = user
            .spec
            .as_ref()
            .map(|s| s.roles.clone())
            .unwrap_or_default();
        for r in &roles {
            self.store
                .get(Kind::Role, r)
                .await
                .map_err(|e| store_status(Kind::Role, r, e))?;
        }
        let expected = user
            .metadata
            .as_ref()
            .map(|m| m.revision.clone())
            .filter(|r| !r.is_empty());
        if let Some(md) = user.metadata.as_mut() {
            md.revision.clear();
            if md.namespace.is_empty() {
                md.namespace = "default".into();
            }
        }
        // Keep the stored secrets when a caller writes the user without them.
        if let Ok(old) = self.store.get(Kind::User, &name).await
            && let Ok(old) = old.decode::<UserV2>()
            && let Some(spec) = user.spec.as_mut()
            && spec.local_auth.is_none()
        {
            spec.local_auth = old.spec.and_then(|s| s.local_auth);
        }
        let expires = expires_of(user.metadata.as_ref());
        self.write(
            Kind::User,
            &name,
            user.encode_to_vec(),
            expires,
            expected.as_deref(),
            op,
        )
        .await?;
        self.user(&name, false).await
    }

    async fn list_users_page(
        &self,
        caller: &Caller,
        start: &str,
        limit: i32,
        with_secrets: bool,
    ) -> Result<(Vec<UserV2>, String), Status> {
        caller.check("user", &["list", "read"])?;
        let limit = usize::try_from(limit)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(MAX_PAGE)
            .min(MAX_PAGE);
        let page = self
            .store
            .list(Kind::User, start, limit + 1)
            .await
            .map_err(|e| store_status(Kind::User, "", e))?;
        let more = page.len() > limit;
        let mut users = Vec::with_capacity(limit);
        for item in page.iter().take(limit) {
            users.push(self.user(&item.name, with_secrets).await?);
        }
        let next = if more {
            page[limit].name.clone()
        } else {
            String::new()
        };
        Ok((users, next))
    }

    async fn write_token(
        &self,
        token: Option<ProvisionTokenV2>,
        create: bool,
    ) -> Result<(), Status> {
        let mut token = token.ok_or_else(|| bad("missing token"))?;
        let name = name_of(token.metadata.as_ref()).to_string();
        if name.is_empty() {
            return Err(bad("missing token name"));
        }
        if token.kind.is_empty() {
            token.kind = "token".into();
        }
        if token.version.is_empty() {
            token.version = "v2".into();
        }
        let spec = token.spec.get_or_insert_with(Default::default);
        if spec.roles.is_empty() {
            return Err(bad("a token needs at least one system role"));
        }
        if spec.join_method.is_empty() {
            spec.join_method = "token".into();
        }
        let expires = expires_of(token.metadata.as_ref());
        let bytes = token.encode_to_vec();
        let res = if create {
            self.store.create(Kind::Token, &name, bytes, expires).await
        } else {
            self.store.put(Kind::Token, &name, bytes, expires).await
        };
        res.map(|_| ())
            .map_err(|e| store_status(Kind::Token, &name, e))
    }
}

/// Invite tokens live 1 h by default and at most 48 h; reset tokens 8 h and 24 h.
const INVITE_TTL: (i64, i64) = (3600, 48 * 3600);
const RESET_TTL: (i64, i64) = (8 * 3600, 24 * 3600);

fn random_token_id() -> Result<String, Status> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Status::internal("no randomness available"))?;
    Ok(hex::encode(b))
}

impl AuthServer {
    async fn user_token(&self, id: &str) -> Result<UserTokenV3, Status> {
        let item = self.store.get(Kind::UserToken, id).await.map_err(|_| {
            ErrorKind::NotFound.status("this invite or reset link is unknown, used or expired")
        })?;
        Self::stored(&item, |_: &mut UserTokenV3, _| {})
    }

    /// Creates an invite or reset token for `r.name` on behalf of `caller`.
    async fn user_token_for(
        &self,
        caller: Caller,
        r: CreateResetPasswordTokenRequest,
    ) -> Result<UserTokenV3, Status> {
        caller.check("user", &["update"])?;
        let (kind, (default_ttl, max_ttl), path) = match r.r#type.as_str() {
            "invite" => ("invite", INVITE_TTL, "invite"),
            "password" | "" => ("password", RESET_TTL, "reset"),
            other => {
                return Err(bad(format!(
                    "unknown token type {other:?} (expected invite or password)"
                )));
            }
        };
        let ttl = match r.ttl {
            0 => default_ttl,
            ns if ns < 0 => return Err(bad("negative token TTL")),
            ns => ns / 1_000_000_000,
        };
        if ttl > max_ttl {
            return Err(bad(format!(
                "failed to create {kind} token: maximum TTL is {}h",
                max_ttl / 3600
            )));
        }
        let mut user = self.user(&r.name, true).await?;
        if user
            .spec
            .as_ref()
            .and_then(|s| s.created_by.as_ref())
            .and_then(|c| c.connector.as_ref())
            .is_some()
        {
            return Err(bad(format!(
                "user {:?} logs in through a connector and has no password to set",
                r.name
            )));
        }
        self.delete_user_tokens_of(&r.name).await?;
        if kind == "password" {
            if let Some(spec) = user.spec.as_mut() {
                spec.local_auth = None;
            }
            user.status
                .get_or_insert_with(Default::default)
                .password_state = 1;
            if let Some(md) = user.metadata.as_mut() {
                md.revision.clear();
            }
            self.store
                .put(
                    Kind::User,
                    &r.name,
                    user.encode_to_vec(),
                    expires_of(user.metadata.as_ref()),
                )
                .await
                .map_err(|e| store_status(Kind::User, &r.name, e))?;
        }
        let id = random_token_id()?;
        let now = self.now();
        let mut token = UserTokenV3 {
            kind: "user_token".into(),
            sub_kind: kind.into(),
            version: "v3".into(),
            metadata: Some(Metadata {
                name: id.clone(),
                namespace: "default".into(),
                expires: Some(prost_types::Timestamp {
                    seconds: now + ttl,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            spec: Some(UserTokenSpecV3 {
                user: r.name.clone(),
                url: format!("https://{}/web/{path}/{id}", self.web_proxy_addr()),
                usage: 0,
                created: Some(prost_types::Timestamp {
                    seconds: now,
                    nanos: 0,
                }),
            }),
        };
        self.store
            .create(Kind::UserToken, &id, token.encode_to_vec(), Some(now + ttl))
            .await
            .map_err(|e| store_status(Kind::UserToken, &id, e))?;
        token.fill_go_defaults();
        Ok(token)
    }

    /// Sets the password of the user that invite or reset token `r.token_id` names
    /// (into `name`), and spends the token.
    async fn complete_user_token(
        &self,
        r: &ChangeUserAuthenticationRequest,
        name: &mut String,
    ) -> Result<(), Status> {
        let token = self.user_token(&r.token_id).await?;
        *name = token
            .spec
            .as_ref()
            .map(|s| s.user.clone())
            .unwrap_or_default();
        let name = name.as_str();
        let hash = crate::password::hash(&r.new_password).map_err(|e| bad(e.to_string()))?;
        let mut user = self.user(name, true).await?;
        user.spec
            .get_or_insert_with(Default::default)
            .local_auth
            .get_or_insert_with(Default::default)
            .password_hash = hash;
        user.status
            .get_or_insert_with(Default::default)
            .password_state = 2;
        if let Some(md) = user.metadata.as_mut() {
            md.revision.clear();
        }
        self.store
            .put(
                Kind::User,
                name,
                user.encode_to_vec(),
                expires_of(user.metadata.as_ref()),
            )
            .await
            .map_err(|e| store_status(Kind::User, name, e))?;
        // A token works once.
        let _ = self.store.delete(Kind::UserToken, &r.token_id).await;
        Ok(())
    }

    /// Checks user `r.user`'s password for `caller` (only the proxy may ask) and
    /// issues the user's certificates.
    async fn password_login(
        &self,
        caller: &Caller,
        r: AuthenticateSshUserRequest,
    ) -> Result<AuthenticateSshUserResponse, Status> {
        let is_proxy = caller.identity.signer == Signer::HostCa
            && caller.identity.groups.iter().any(|g| g == "Proxy");
        if !is_proxy {
            return Err(ErrorKind::AccessDenied.status("only the cluster's proxy may log users in"));
        }
        // One answer for every way a login can fail, so it reveals nothing.
        let refused = || ErrorKind::AccessDenied.status("invalid user name or password");
        let user = self.user(&r.user, true).await.map_err(|_| refused())?;
        let spec = user.spec.clone().unwrap_or_default();
        if spec.status.as_ref().is_some_and(|s| s.is_locked) {
            return Err(ErrorKind::AccessDenied.status(format!("user {:?} is locked", r.user)));
        }
        let hash = spec
            .local_auth
            .as_ref()
            .map(|l| l.password_hash.clone())
            .unwrap_or_default();
        if hash.is_empty() || !crate::password::verify(&r.password, &hash) {
            tracing::info!(user = %r.user, client = %r.client_addr, "password login refused");
            return Err(refused());
        }
        let certs_req = UserCertsRequest {
            username: r.user.clone(),
            ssh_public_key: r.ssh_public_key,
            tls_public_key: r.tls_public_key,
            expires: r.expires,
            route_to_cluster: r.route_to_cluster,
            ..Default::default()
        };
        let certs = self.certs_for(&r.user, &certs_req).await?;
        Ok(AuthenticateSshUserResponse {
            username: r.user,
            ssh_cert: certs.ssh,
            tls_cert: certs.tls,
            host_ca_tls_certs: certs.tlsca_certs,
            host_ca_ssh_keys: certs.sshca_certs,
            cluster_name: self.cluster_name.clone(),
        })
    }

    /// Deletes user `name` for `caller` (both user APIs).
    async fn delete_user_as(&self, caller: Caller, name: &str) -> Result<(), Status> {
        caller.check("user", &["delete"])?;
        self.store
            .delete(Kind::User, name)
            .await
            .map_err(|e| store_status(Kind::User, name, e))
    }

    async fn delete_user_tokens_of(&self, user: &str) -> Result<(), Status> {
        for item in self.all(Kind::UserToken).await? {
            if let Ok(t) = item.decode::<UserTokenV3>()
                && t.spec.as_ref().is_some_and(|s| s.user == user)
            {
                let _ = self.store.delete(Kind::UserToken, &item.name).await;
            }
        }
        Ok(())
    }
}

/// The store kind behind a watchable resource kind.
fn watch_kind(kind: &str) -> Option<Kind> {
    Some(match kind {
        "role" => Kind::Role,
        "user" => Kind::User,
        "token" => Kind::Token,
        "cert_authority" => Kind::CertAuthority,
        "cluster_name" => Kind::ClusterName,
        _ => return None,
    })
}

/// Turns a store change into a watch event if some accepted watch kind wants it.
fn to_event(
    change: &crate::store::Change,
    accepted: &[tp_proto::types::WatchKind],
) -> Option<proto::Event> {
    use crate::store::Change;
    let (kind, name) = match change {
        Change::Put { kind, item } => (*kind, item.name.as_str()),
        Change::Delete { kind, name } => (*kind, name.as_str()),
    };
    let watch = accepted
        .iter()
        .find(|w| watch_kind(&w.kind) == Some(kind) && (w.name.is_empty() || w.name == name))?;
    let put = |resource| {
        Some(proto::Event {
            r#type: proto::Operation::Put as i32,
            resource: Some(resource),
        })
    };
    match change {
        Change::Put { item, .. } => {
            use proto::event::Resource as R;
            let set_rev = |md: &mut Option<Metadata>| {
                md.get_or_insert_with(Default::default).revision = item.revision.clone()
            };
            match kind {
                Kind::Role => {
                    let mut r: RoleV6 = item.decode().ok()?;
                    set_rev(&mut r.metadata);
                    r.fill_go_defaults();
                    put(R::Role(r))
                }
                Kind::User => {
                    let mut u: UserV2 = item.decode().ok()?;
                    set_rev(&mut u.metadata);
                    if !watch.load_secrets
                        && let Some(spec) = u.spec.as_mut()
                    {
                        spec.local_auth = None;
                    }
                    u.fill_go_defaults();
                    put(R::User(u))
                }
                Kind::Token => {
                    let mut t: ProvisionTokenV2 = item.decode().ok()?;
                    set_rev(&mut t.metadata);
                    t.fill_go_defaults();
                    put(R::ProvisionToken(t))
                }
                Kind::CertAuthority => {
                    let mut c: CertAuthorityV2 = item.decode().ok()?;
                    set_rev(&mut c.metadata);
                    if !watch.load_secrets {
                        crate::ca::strip_secrets(&mut c);
                    }
                    c.fill_go_defaults();
                    put(R::CertAuthority(c))
                }
                Kind::ClusterName => {
                    let mut c: ClusterNameV2 = item.decode().ok()?;
                    c.fill_go_defaults();
                    put(R::ClusterName(c))
                }
                _ => None,
            }
        }
        _ => {
            let mut header = ResourceHeader {
                kind: watch.kind.clone(),
                metadata: Some(Metadata {
                    name: name.to_string(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            header.fill_go_defaults();
            Some(proto::Event {
                r#type: proto::Operation::Delete as i32,
                resource: Some(proto::event::Resource::ResourceHeader(header)),
            })
        }
    }
}

/// A certificate lives 12 hours unless the caller asks for less (or the roles cap it).
const DEFAULT_CERT_TTL: i64 = 12 * 3600;

/// Turns a public key from a certificate request into a DER SubjectPublicKeyInfo:
/// PKIX (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM, or an SSH authorized_keys line.
fn spki_from(bytes: &[u8]) -> Result<Vec<u8>, Status> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("public key is neither PEM nor an SSH public key"))?;
    tp_creds::key::public_key_spki_der(text, "the request's public key")
        .map_err(|e| bad(e.to_string()))
}

impl AuthServer {
    /// The user CA's signer, parsed again only when the CA's revision changes.
    async fn user_ca_signer(&self) -> Result<Arc<crate::usercert::UserCaSigner>, Status> {
        self.built_from_ca("user", &self.caches.signer, |ca| {
            crate::usercert::UserCaSigner::new(ca).map_err(|e| Status::internal(e.to_string()))
        })
        .await
    }

    /// The host CA's public parts, decoded again only when the CA's revision changes.
    async fn host_ca_public(&self) -> Result<Arc<HostCaPublic>, Status> {
        self.built_from_ca("host", &self.caches.host_ca_public, |ca| {
            let mut public = HostCaPublic::default();
            if let Some(keys) = ca.spec.as_ref().and_then(|s| s.active_keys.as_ref()) {
                public.tls = keys.tls.iter().map(|k| k.cert.clone()).collect();
                public.ssh = keys.ssh.iter().map(|k| k.public_key.clone()).collect();
            }
            Ok(public)
        })
        .await
    }

    /// What `build` makes of this cluster's CA of `kind` (`user`, `host`), kept in `slot`
    /// and built again only when the CA's revision changes.
    async fn built_from_ca<T>(
        &self,
        kind: &str,
        slot: &RevisionSlot<T>,
        build: impl FnOnce(&CertAuthorityV2) -> Result<T, Status>,
    ) -> Result<Arc<T>, Status> {
        let key = format!("{kind}/{}", self.cluster_name);
        let item = self
            .store
            .get(Kind::CertAuthority, &key)
            .await
            .map_err(|e| store_status(Kind::CertAuthority, &key, e))?;
        if let Ok(g) = slot.lock()
            && let Some((rev, built)) = g.as_ref()
            && *rev == item.revision
        {
            return Ok(built.clone());
        }
        let ca: CertAuthorityV2 = item
            .decode()
            .map_err(|e| ErrorKind::ConnectionProblem.status(e.to_string()))?;
        let built = Arc::new(build(&ca)?);
        if let Ok(mut g) = slot.lock() {
            *g = Some((item.revision, built.clone()));
        }
        Ok(built)
    }

    /// User `name` without its secrets, decoded again only when its revision changes
    /// (certificate issuance reads the user each time).
    async fn user_shared(&self, name: &str) -> Result<Arc<UserV2>, Status> {
        self.decoded(
            Kind::User,
            name,
            &self.caches.users,
            |u: &mut UserV2, rev| {
                u.metadata.get_or_insert_with(Default::default).revision = rev.into();
                if let Some(spec) = u.spec.as_mut() {
                    spec.local_auth = None;
                }
            },
        )
        .await
    }

    /// Role `name` with Teleport's defaults filled in, decoded again only when its
    /// revision changes (every call of a user, and certificate issuance, read the
    /// user's roles).
    async fn role_shared(&self, name: &str) -> Result<Arc<RoleV6>, Status> {
        self.decoded(
            Kind::Role,
            name,
            &self.caches.roles,
            |r: &mut RoleV6, rev| {
                r.metadata.get_or_insert_with(Default::default).revision = rev.into();
            },
        )
        .await
    }

    /// Resource `name` of `kind` as [`stored`](Self::stored) decodes it, then
    /// `finish`ed (given the revision); kept in `cache` by revision, so it is decoded
    /// again only when it changes. The cache starts over at [`MAX_CACHED_DECODED`].
    async fn decoded<M: Message + Default + GoDefaults>(
        &self,
        kind: Kind,
        name: &str,
        cache: &DecodedCache<M>,
        finish: impl FnOnce(&mut M, &str),
    ) -> Result<Arc<M>, Status> {
        let item = self
            .store
            .get(kind, name)
            .await
            .map_err(|e| store_status(kind, name, e))?;
        if let Ok(g) = cache.lock()
            && let Some((rev, m)) = g.get(name)
            && *rev == item.revision
        {
            return Ok(m.clone());
        }
        let m = Arc::new(Self::stored(&item, finish)?);
        if let Ok(mut g) = cache.lock() {
            if g.len() >= MAX_CACHED_DECODED {
                g.clear();
            }
            g.insert(name.to_string(), (item.revision, m.clone()));
        }
        Ok(m)
    }

    async fn ca(&self, kind: &str) -> Result<CertAuthorityV2, Status> {
        let key = format!("{kind}/{}", self.cluster_name);
        let item = self
            .store
            .get(Kind::CertAuthority, &key)
            .await
            .map_err(|e| store_status(Kind::CertAuthority, &key, e))?;
        item.decode()
            .map_err(|e| ErrorKind::ConnectionProblem.status(e.to_string()))
    }
}

impl AuthServer {
    /// Issues the certificates `r` asks for to user `target` (already authorised).
    async fn certs_for(&self, target: &str, r: &UserCertsRequest) -> Result<Certs, Status> {
        let target = target.to_string();
        let user = self.user_shared(&target).await?;
        let no_spec = tp_proto::types::UserSpecV2::default();
        let spec = user.spec.as_ref().unwrap_or(&no_spec);
        let mut roles = Vec::with_capacity(spec.roles.len());
        for name in &spec.roles {
            roles.push(self.role_shared(name).await?);
        }
        let traits: std::collections::BTreeMap<String, Vec<String>> = spec
            .traits
            .as_ref()
            .map(|t| {
                t.values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.values.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let now = self.now();
        let requested = r
            .expires
            .filter(|t| *t != tp_proto::GO_ZERO_TIMESTAMP && t.seconds > 0)
            .map_or(now + DEFAULT_CERT_TTL, |t| t.seconds);
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        let mut forward_agent = false;
        let mut port_forwarding = true;
        for role in &roles {
            let Some(s) = role.spec.as_ref() else {
                continue;
            };
            if let Some(a) = &s.allow {
                allowed.extend(crate::rbac::traits::expand_all(&a.logins, &traits));
            }
            if let Some(d) = &s.deny {
                denied.extend(crate::rbac::traits::expand_all(&d.logins, &traits));
            }
            if let Some(o) = &s.options {
                forward_agent |= o.forward_agent;
                if o.port_forwarding.as_ref().is_some_and(|b| !b.value) {
                    port_forwarding = false;
                }
            }
        }
        // The smallest max_session_ttl of the user's roles caps the lifetime.
        let cap = roles
            .iter()
            .filter_map(|r| r.spec.as_ref()?.options.as_ref().map(|o| o.max_session_ttl))
            .filter(|ttl| *ttl > 0)
            .min()
            .map_or(i64::MAX, |ns| now.saturating_add(ns / 1_000_000_000));
        let not_after = requested.min(cap);
        if not_after <= now {
            return Err(bad("the requested expiry is in the past"));
        }
        let mut logins: Vec<String> = Vec::new();
        for l in allowed {
            if !denied.contains(&l) && !logins.contains(&l) {
                logins.push(l);
            }
        }
        if logins.is_empty() {
            // Public once issued, so from the pooled randomness (no system call).
            let mut id = [0u8; 16];
            tp_creds::random::fill_public(&mut id).map_err(|e| Status::internal(e.to_string()))?;
            logins.push(format!("-teleport-nologin-{}", hex::encode(id)));
        }
        let mut id = crate::usercert::UserIdentity::new(
            target.clone(),
            spec.roles.clone(),
            self.cluster_name.clone(),
        );
        id.logins = logins;
        id.traits = traits;
        if !r.route_to_cluster.is_empty() {
            id.route_to_cluster = r.route_to_cluster.clone();
        }
        let signer = self.user_ca_signer().await?;
        let host_ca = self.host_ca_public().await?;
        let tls_key = if r.tls_public_key.is_empty() {
            &r.public_key
        } else {
            &r.tls_public_key
        };
        let ssh_key_bytes = if r.ssh_public_key.is_empty() {
            &r.public_key
        } else {
            &r.ssh_public_key
        };
        let mut certs = Certs::default();
        if !tls_key.is_empty() {
            let spki = spki_from(tls_key)?;
            certs.tls = signer
                .issue_tls(&id, &spki, now - 60, not_after)
                .map_err(|e| Status::internal(e.to_string()))?
                .into_bytes();
        }
        if let Ok(text) = std::str::from_utf8(ssh_key_bytes)
            && !text.trim().is_empty()
            && !text.trim_start().starts_with("-----BEGIN")
        {
            let key = ssh_key::PublicKey::from_openssh(text.trim())
                .map_err(|e| bad(format!("SSH public key: {e}")))?;
            certs.ssh = signer
                .issue_ssh(
                    &id,
                    &key,
                    now - 60,
                    not_after,
                    forward_agent,
                    port_forwarding,
                )
                .map_err(|e| Status::internal(e.to_string()))?
                .into_bytes();
        }
        if certs.tls.is_empty() && certs.ssh.is_empty() {
            return Err(bad("missing public key"));
        }
        certs.tlsca_certs = host_ca.tls.clone();
        certs.sshca_certs = host_ca.ssh.clone();
        Ok(certs)
    }
}

/// How a write treats an existing resource.
#[derive(Debug, Clone, Copy)]
enum WriteOp {
    Create,
    Update,
    Upsert,
}

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuthService for AuthServer {
    async fn ping(&self, req: Request<PingRequest>) -> Rpc<PingResponse> {
        self.caller(&req).await?;
        Ok(Response::new(PingResponse {
            cluster_name: self.cluster_name.clone(),
            server_version: SERVER_VERSION.into(),
            server_features: Some(proto::Features::default()),
            remote_addr: req
                .extensions()
                .get::<PeerInfo>()
                .and_then(|p| p.remote_addr)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            ..Default::default()
        }))
    }

    async fn get_role(&self, req: Request<GetRoleRequest>) -> Rpc<RoleV6> {
        let caller = self.caller(&req).await?;
        let name = &req.get_ref().name;
        if name.is_empty() {
            return Err(bad("missing name"));
        }
        // A user may always read the roles it holds.
        if !(caller.is_user() && caller.identity.groups.iter().any(|g| g == name)) {
            caller.check("role", &["read"])?;
        }
        Ok(Response::new(self.role(name).await?))
    }

    async fn get_roles(&self, req: Request<()>) -> Rpc<GetRolesResponse> {
        let caller = self.caller(&req).await?;
        caller.check("role", &["list", "read"])?;
        let mut roles = Vec::new();
        for item in self.all(Kind::Role).await? {
            roles.push(Self::stored(&item, |r: &mut RoleV6, rev| {
                r.metadata.get_or_insert_with(Default::default).revision = rev.into()
            })?);
        }
        Ok(Response::new(GetRolesResponse { roles }))
    }

    async fn list_roles(&self, req: Request<ListRolesRequest>) -> Rpc<ListRolesResponse> {
        let caller = self.caller(&req).await?;
        caller.check("role", &["list", "read"])?;
        let r = req.get_ref();
        let limit = usize::try_from(r.limit)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(MAX_PAGE)
            .min(MAX_PAGE);
        // StartKey is the first name of the page (inclusive), as Teleport pages.
        let page = self
            .store
            .list(Kind::Role, &r.start_key, limit + 1)
            .await
            .map_err(|e| store_status(Kind::Role, "", e))?;
        let next_key = page.get(limit).map(|i| i.name.clone()).unwrap_or_default();
        let mut roles = Vec::with_capacity(limit);
        for item in page.iter().take(limit) {
            roles.push(Self::stored(item, |r: &mut RoleV6, rev| {
                r.metadata.get_or_insert_with(Default::default).revision = rev.into()
            })?);
        }
        let mut resp = Response::new(ListRolesResponse { roles, next_key });
        resp.metadata_mut().insert(
            "version",
            SERVER_VERSION
                .parse()
                .map_err(|_| Status::internal("version header"))?,
        );
        Ok(resp)
    }

    async fn create_role(&self, req: Request<CreateRoleRequest>) -> Rpc<RoleV6> {
        let caller = self.caller(&req).await;
        let name = role_name(req.get_ref().role.as_ref());
        self.audited("role.created", "role", &name, caller, |caller| async move {
            caller.check("role", &["create"])?;
            self.write_role(req.into_inner().role, WriteOp::Create)
                .await
        })
        .await
        .map(Response::new)
    }

    async fn update_role(&self, req: Request<UpdateRoleRequest>) -> Rpc<RoleV6> {
        let caller = self.caller(&req).await;
        let name = role_name(req.get_ref().role.as_ref());
        self.audited("role.updated", "role", &name, caller, |caller| async move {
            caller.check("role", &["update"])?;
            self.write_role(req.into_inner().role, WriteOp::Update)
                .await
        })
        .await
        .map(Response::new)
    }

    async fn upsert_role_v2(&self, req: Request<UpsertRoleRequest>) -> Rpc<RoleV6> {
        let caller = self.caller(&req).await;
        let name = role_name(req.get_ref().role.as_ref());
        self.audited("role.created", "role", &name, caller, |caller| async move {
            caller.check("role", &["create", "update"])?;
            self.write_role(req.into_inner().role, WriteOp::Upsert)
                .await
        })
        .await
        .map(Response::new)
    }

    async fn upsert_role(&self, req: Request<RoleV6>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let name = role_name(Some(req.get_ref()));
        self.audited("role.created", "role", &name, caller, |caller| async move {
            caller.check("role", &["create", "update"])?;
            self.write_role(Some(req.into_inner()), WriteOp::Upsert)
                .await
                .map(|_| ())
        })
        .await
        .map(Response::new)
    }

    async fn delete_role(&self, req: Request<DeleteRoleRequest>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let name = req.into_inner().name;
        let name = name.as_str();
        self.audited("role.deleted", "role", name, caller, |caller| async move {
            caller.check("role", &["delete"])?;
            if name.is_empty() {
                return Err(bad("missing name"));
            }
            let users = self.users_with_role(name).await?;
            if !users.is_empty() {
                return Err(bad(format!(
                    "role {name:?} is used by user(s) {}; remove it from them first",
                    users.join(", ")
                )));
            }
            self.store
                .delete(Kind::Role, name)
                .await
                .map_err(|e| store_status(Kind::Role, name, e))
        })
        .await
        .map(Response::new)
    }

    async fn get_user(&self, req: Request<proto::GetUserRequest>) -> Rpc<UserV2> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        // A user may always read itself, without secrets.
        if r.name != caller.identity.username || r.with_secrets || !caller.is_user() {
            caller.check("user", &["read"])?;
        }
        Ok(Response::new(self.user(&r.name, r.with_secrets).await?))
    }

    async fn get_current_user(&self, req: Request<()>) -> Rpc<UserV2> {
        let caller = self.caller(&req).await?;
        caller.require_user("GetCurrentUser")?;
        Ok(Response::new(
            self.user(&caller.identity.username, false).await?,
        ))
    }

    async fn create_user(&self, req: Request<UserV2>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let name = user_name(Some(req.get_ref()));
        self.audited("user.create", "user", &name, caller, |caller| async move {
            caller.check("user", &["create"])?;
            self.write_user(Some(req.into_inner()), WriteOp::Create)
                .await
                .map(|_| ())
        })
        .await
        .map(Response::new)
    }

    async fn update_user(&self, req: Request<UserV2>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let name = user_name(Some(req.get_ref()));
        self.audited("user.update", "user", &name, caller, |caller| async move {
            caller.check("user", &["update"])?;
            self.write_user(Some(req.into_inner()), WriteOp::Update)
                .await
                .map(|_| ())
        })
        .await
        .map(Response::new)
    }

    async fn delete_user(&self, req: Request<proto::DeleteUserRequest>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let name = req.into_inner().name;
        self.audited("user.delete", "user", &name, caller, |caller| {
            self.delete_user_as(caller, &name)
        })
        .await
        .map(Response::new)
    }

    async fn get_token(&self, req: Request<ResourceRequest>) -> Rpc<ProvisionTokenV2> {
        let caller = self.caller(&req).await?;
        caller.check("token", &["read"])?;
        let name = &req.get_ref().name;
        let item = self
            .store
            .get(Kind::Token, name)
            .await
            .map_err(|e| store_status(Kind::Token, name, e))?;
        Ok(Response::new(Self::stored(
            &item,
            |t: &mut ProvisionTokenV2, rev| {
                t.metadata.get_or_insert_with(Default::default).revision = rev.into()
            },
        )?))
    }

    async fn get_tokens(&self, req: Request<()>) -> Rpc<ProvisionTokenV2List> {
        let caller = self.caller(&req).await?;
        caller.check("token", &["list", "read"])?;
        let items = self.all(Kind::Token).await?;
        let mut provision_tokens = Vec::with_capacity(items.len());
        for item in &items {
            provision_tokens.push(Self::stored(item, |t: &mut ProvisionTokenV2, rev| {
                t.metadata.get_or_insert_with(Default::default).revision = rev.into()
            })?);
        }
        Ok(Response::new(ProvisionTokenV2List { provision_tokens }))
    }

    async fn create_token_v2(&self, req: Request<CreateTokenV2Request>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let token = req
            .into_inner()
            .token
            .map(|proto::create_token_v2_request::Token::V2(t)| t);
        let name = token_name(token.as_ref());
        self.audited(
            "join_token.create",
            "token",
            &name,
            caller,
            |caller| async move {
                caller.check("token", &["create"])?;
                self.write_token(token, true).await
            },
        )
        .await
        .map(Response::new)
    }

    async fn upsert_token_v2(&self, req: Request<UpsertTokenV2Request>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let token = req
            .into_inner()
            .token
            .map(|proto::upsert_token_v2_request::Token::V2(t)| t);
        let name = token_name(token.as_ref());
        self.audited(
            "join_token.create",
            "token",
            &name,
            caller,
            |caller| async move {
                caller.check("token", &["create", "update"])?;
                self.write_token(token, false).await
            },
        )
        .await
        .map(Response::new)
    }

    async fn create_reset_password_token(
        &self,
        req: Request<CreateResetPasswordTokenRequest>,
    ) -> Rpc<UserTokenV3> {
        let caller = self.caller(&req).await;
        let r = req.into_inner();
        let name = r.name.clone();
        // The event names the user, never the token (its id is the secret).
        self.audited(
            "reset_password_token.create",
            "user",
            &name,
            caller,
            |caller| self.user_token_for(caller, r),
        )
        .await
        .map(Response::new)
    }

    async fn get_reset_password_token(
        &self,
        req: Request<GetResetPasswordTokenRequest>,
    ) -> Rpc<UserTokenV3> {
        // Authorised by possession of the token ID (the proxy asks for the web page).
        self.caller(&req).await?;
        Ok(Response::new(
            self.user_token(&req.get_ref().token_id).await?,
        ))
    }

    async fn change_user_authentication(
        &self,
        req: Request<ChangeUserAuthenticationRequest>,
    ) -> Rpc<ChangeUserAuthenticationResponse> {
        let caller = self.caller(&req).await;
        let who = who(&caller);
        let r = req.into_inner();
        // The user is known once the token is; the token id itself is never logged.
        let mut name = String::new();
        let res = match caller {
            Ok(_) => self.complete_user_token(&r, &mut name).await,
            Err(e) => Err(e),
        };
        self.audit("user.password_change", &who, "user", &name, &res)
            .await;
        res.map(|()| Response::new(ChangeUserAuthenticationResponse::default()))
    }

    async fn generate_user_certs(&self, req: Request<UserCertsRequest>) -> Rpc<Certs> {
        let caller = self.caller(&req).await;
        let r = req.into_inner();
        let target = if r.username.is_empty() {
            who(&caller)
        } else {
            r.username.clone()
        };
        let (target, r) = (target.as_str(), &r);
        self.audited("cert.create", "user", target, caller, |caller| async move {
            if !caller.is_admin {
                caller.require_user("GenerateUserCerts")?;
            } else if r.username.is_empty() {
                return Err(bad(
                    "missing username: the Admin identity issues certificates for a named user",
                ));
            }
            if target != caller.identity.username && !caller.is_admin {
                return Err(ErrorKind::AccessDenied
                    .status(format!("impersonating user {target:?} is not allowed")));
            }
            if !r.role_requests.is_empty() || !r.access_requests.is_empty() || r.use_role_requests {
                return Err(ErrorKind::NotImplemented
                    .status("role and access requests are not supported by this server"));
            }
            self.certs_for(target, r).await
        })
        .await
        .map(Response::new)
    }

    async fn get_cluster_ca_cert(&self, _req: Request<()>) -> Rpc<proto::GetClusterCaCertResponse> {
        self.cluster_ca_cert().await.map(Response::new)
    }

    async fn watch_events(
        &self,
        req: Request<Watch>,
    ) -> Rpc<tonic::codegen::BoxStream<proto::Event>> {
        let caller = self.caller(&req).await?;
        let w = req.into_inner();
        if w.kinds.is_empty() {
            return Err(ErrorKind::AccessDenied.status("can't setup global watch"));
        }
        let mut accepted = Vec::with_capacity(w.kinds.len());
        for k in w.kinds {
            let verbs: &[&str] = if k.kind == "cert_authority" && !k.load_secrets {
                &["readnosecrets"]
            } else {
                &["read"]
            };
            let supported = watch_kind(&k.kind).is_some();
            match (supported, caller.check(&k.kind, verbs)) {
                (true, Ok(())) => accepted.push(k),
                (_, Err(e)) if !w.allow_partial_success => return Err(e),
                (false, Ok(())) if !w.allow_partial_success => {
                    return Err(bad(format!(
                        "watching {:?} is not supported by this server",
                        k.kind
                    )));
                }
                _ => {}
            }
        }
        if accepted.is_empty() {
            return Err(bad("none of the requested kinds can be watched"));
        }
        // Watch before the INIT event so no change between them is lost.
        let mut changes = self
            .store
            .watch()
            .await
            .map_err(|e| store_status(Kind::Role, "", e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<proto::Event, Status>>(64);
        let init = proto::Event {
            r#type: proto::Operation::Init as i32,
            resource: Some(proto::event::Resource::WatchStatus(WatchStatusV1 {
                kind: "watch_status".into(),
                version: "v1".into(),
                metadata: Some(Metadata {
                    name: "watch_status".into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                spec: Some(WatchStatusSpecV1 {
                    kinds: accepted.clone(),
                }),
                ..Default::default()
            })),
        };
        tx.send(Ok(init))
            .await
            .map_err(|_| Status::cancelled("watcher went away"))?;
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            loop {
                // A slow client fills `tx`, this loop stops reading, and the store's
                // bounded watch closes it with `Lagged`: memory never grows unbounded.
                let change = tokio::select! {
                    () = tx.closed() => return,
                    c = changes.next() => c,
                };
                let change = match change {
                    Some(Ok(c)) => c,
                    Some(Err(StoreError::Lagged(why))) => {
                        let _ = tx
                            .send(Err(ErrorKind::LimitExceeded.status(format!(
                                "this watcher fell too far behind and was closed ({why}); watch again and re-read the state"
                            ))))
                            .await;
                        return;
                    }
                    Some(Err(e)) => {
                        let _ = tx
                            .send(Err(
                                ErrorKind::ConnectionProblem.status(format!("watch ended: {e}"))
                            ))
                            .await;
                        return;
                    }
                    None => return,
                };
                let Some(event) = to_event(&change, &accepted) else {
                    continue;
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delete_token(&self, req: Request<ResourceRequest>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let name = req.into_inner().name;
        let masked = crate::audit::mask(&name);
        let (name, masked) = (name.as_str(), masked.as_str());
        self.audited(
            "join_token.delete",
            "token",
            masked,
            caller,
            |caller| async move {
                caller.check("token", &["delete"])?;
                self.store
                    .delete(Kind::Token, name)
                    .await
                    .map_err(|e| store_status(Kind::Token, masked, e))
            },
        )
        .await
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl UsersService for AuthServer {
    async fn get_user(&self, req: Request<GetUserRequest>) -> Rpc<GetUserResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let name = if r.name.is_empty() && r.current_user {
            caller.require_user("GetUser(current_user)")?;
            caller.identity.username.clone()
        } else {
            r.name.clone()
        };
        if name.is_empty() {
            return Err(bad("missing username"));
        }
        // A user may always read itself, without secrets.
        if name != caller.identity.username || r.with_secrets || !caller.is_user() {
            caller.check("user", &["read"])?;
        }
        Ok(Response::new(GetUserResponse {
            user: Some(self.user(&name, r.with_secrets).await?),
        }))
    }

    async fn list_users(&self, req: Request<ListUsersRequest>) -> Rpc<ListUsersResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let (users, next_page_token) = self
            .list_users_page(&caller, &r.page_token, r.page_size, r.with_secrets)
            .await?;
        let mut resp = Response::new(ListUsersResponse {
            users,
            next_page_token,
        });
        resp.metadata_mut().insert(
            "version",
            SERVER_VERSION
                .parse()
                .map_err(|_| Status::internal("version header"))?,
        );
        Ok(resp)
    }

    async fn create_user(&self, req: Request<CreateUserRequest>) -> Rpc<CreateUserResponse> {
        let caller = self.caller(&req).await;
        let name = user_name(req.get_ref().user.as_ref());
        self.audited("user.create", "user", &name, caller, |caller| async move {
            caller.check("user", &["create"])?;
            self.write_user(req.into_inner().user, WriteOp::Create)
                .await
        })
        .await
        .map(|user| Response::new(CreateUserResponse { user: Some(user) }))
    }

    async fn update_user(&self, req: Request<UpdateUserRequest>) -> Rpc<UpdateUserResponse> {
        let caller = self.caller(&req).await;
        let name = user_name(req.get_ref().user.as_ref());
        self.audited("user.update", "user", &name, caller, |caller| async move {
            caller.check("user", &["update"])?;
            self.write_user(req.into_inner().user, WriteOp::Update)
                .await
        })
        .await
        .map(|user| Response::new(UpdateUserResponse { user: Some(user) }))
    }

    async fn upsert_user(&self, req: Request<UpsertUserRequest>) -> Rpc<UpsertUserResponse> {
        let caller = self.caller(&req).await;
        let name = user_name(req.get_ref().user.as_ref());
        self.audited("user.create", "user", &name, caller, |caller| async move {
            caller.check("user", &["create", "update"])?;
            self.write_user(req.into_inner().user, WriteOp::Upsert)
                .await
        })
        .await
        .map(|user| Response::new(UpsertUserResponse { user: Some(user) }))
    }

    async fn delete_user(&self, req: Request<DeleteUserRequest>) -> Rpc<()> {
        let caller = self.caller(&req).await;
        let name = req.into_inner().name;
        self.audited("user.delete", "user", &name, caller, |caller| {
            self.delete_user_as(caller, &name)
        })
        .await
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl TrustService for AuthServer {
    async fn get_cert_authority(
        &self,
        req: Request<GetCertAuthorityRequest>,
    ) -> Rpc<CertAuthorityV2> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let verbs: &[&str] = if r.include_key {
            &["read"]
        } else {
            &["readnosecrets"]
        };
        caller.check("cert_authority", verbs)?;
        let key = format!("{}/{}", r.r#type, r.domain);
        let item = self
            .store
            .get(Kind::CertAuthority, &key)
            .await
            .map_err(|e| store_status(Kind::CertAuthority, &key, e))?;
        let mut ca: CertAuthorityV2 = Self::stored(&item, |c: &mut CertAuthorityV2, rev| {
            c.metadata.get_or_insert_with(Default::default).revision = rev.into()
        })?;
        if !r.include_key {
            crate::ca::strip_secrets(&mut ca);
        }
        Ok(Response::new(ca))
    }

    async fn get_cert_authorities(
        &self,
        req: Request<GetCertAuthoritiesRequest>,
    ) -> Rpc<GetCertAuthoritiesResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let verbs: &[&str] = if r.include_key {
            &["list", "read"]
        } else {
            &["list", "readnosecrets"]
        };
        caller.check("cert_authority", verbs)?;
        let mut cert_authorities_v2 = Vec::new();
        for item in self.all(Kind::CertAuthority).await? {
            let mut ca: CertAuthorityV2 = Self::stored(&item, |c: &mut CertAuthorityV2, rev| {
                c.metadata.get_or_insert_with(Default::default).revision = rev.into()
            })?;
            if ca.sub_kind != r.r#type && !r.r#type.is_empty() {
                continue;
            }
            if !r.include_key {
                crate::ca::strip_secrets(&mut ca);
            }
            cert_authorities_v2.push(ca);
        }
        Ok(Response::new(GetCertAuthoritiesResponse {
            cert_authorities_v2,
        }))
    }
}

#[tonic::async_trait]
impl AuditService for AuthServer {
    async fn list_audit_events(
        &self,
        req: Request<ListAuditEventsRequest>,
    ) -> Rpc<ListAuditEventsResponse> {
        let caller = self.caller(&req).await?;
        caller.check("event", &["list", "read"])?;
        let r = req.into_inner();
        let limit = match usize::try_from(r.page_size) {
            Ok(0) => crate::audit::MAX_AUDIT_PAGE,
            Ok(n) => n.min(crate::audit::MAX_AUDIT_PAGE),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "page_size {} is negative",
                    r.page_size
                )));
            }
        };
        let page = self.list_audit_events(&r.start_key, limit).await?;
        let events = page
            .events
            .into_iter()
            .map(|e| {
                let time = time::OffsetDateTime::parse(
                    &e.time,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|err| {
                    Status::internal(format!(
                        "audit event {}: stored time {:?} is not RFC 3339: {err}",
                        e.id, e.time
                    ))
                })?;
                Ok(WireAuditEvent {
                    id: e.id,
                    event: e.event,
                    time: Some(prost_types::Timestamp {
                        seconds: time.unix_timestamp(),
                        nanos: i32::try_from(time.nanosecond()).unwrap_or(0),
                    }),
                    user: e.user,
                    kind: e.kind,
                    name: e.name,
                    success: e.success,
                    error: e.error,
                    cluster_name: e.cluster_name,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(ListAuditEventsResponse {
            events,
            next_key: page.next.unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl LoginService for AuthServer {
    async fn authenticate_ssh_user(
        &self,
        req: Request<AuthenticateSshUserRequest>,
    ) -> Rpc<AuthenticateSshUserResponse> {
        let caller = self.caller(&req).await;
        let r = req.into_inner();
        let login = r.user.clone();
        let res = match caller {
            Ok(caller) => self.password_login(&caller, r).await,
            Err(e) => Err(e),
        };
        // The person logging in is the event's user (the caller is the proxy).
        self.audit("user.login", &login, "user", &login, &res).await;
        if res.is_ok() {
            self.audit("cert.create", &login, "user", &login, &res)
                .await;
        }
        res.map(Response::new)
    }
}

#[tonic::async_trait]
impl ClusterConfigService for AuthServer {
    async fn get_cluster_name(&self, req: Request<GetClusterNameRequest>) -> Rpc<ClusterNameV2> {
        let caller = self.caller(&req).await?;
        caller.check("cluster_name", &["read"])?;
        let mut cn = ClusterNameV2 {
            kind: "cluster_name".into(),
            version: "v2".into(),
            metadata: Some(Metadata {
                name: "cluster-name".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ClusterNameSpecV2 {
                cluster_name: self.cluster_name.clone(),
                cluster_id: String::new(),
            }),
            ..Default::default()
        };
        if let Ok(item) = self.store.get(Kind::ClusterName, "cluster-name").await {
            cn = Self::stored(&item, |c: &mut ClusterNameV2, rev| {
                c.metadata.get_or_insert_with(Default::default).revision = rev.into()
            })?;
        }
        cn.fill_go_defaults();
        Ok(Response::new(cn))
    }
}
