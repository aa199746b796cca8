//! The typed Auth API: one async method per call of the supported subset.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tp_proto::proto::auth_service_client::AuthServiceClient;
use tp_proto::proto::{
    self, Certs, ChangeUserAuthenticationRequest, ChangeUserAuthenticationResponse,
    CreateResetPasswordTokenRequest, CreateRoleRequest, CreateTokenV2Request, DeleteRoleRequest,
    GetResetPasswordTokenRequest, GetRoleRequest, ListRolesRequest, ListRolesResponse, PingRequest,
    PingResponse, UpdateRoleRequest, UpsertRoleRequest, UpsertTokenV2Request, UserCertsRequest,
    Watch,
};
use tp_proto::teleport::clusterconfig::v1::GetClusterNameRequest;
use tp_proto::teleport::clusterconfig::v1::cluster_config_service_client::ClusterConfigServiceClient;
use tp_proto::teleport::trust::v1::trust_service_client::TrustServiceClient;
use tp_proto::teleport::trust::v1::{GetCertAuthoritiesRequest, GetCertAuthorityRequest};
use tp_proto::teleport::users::v1::users_service_client::UsersServiceClient;
use tp_proto::teleport::users::v1::{
    CreateUserRequest, DeleteUserRequest, GetUserRequest, ListUsersRequest, ListUsersResponse,
    UpdateUserRequest, UpsertUserRequest,
};
use tp_proto::tp::audit::v1::audit_service_client::AuditServiceClient;
use tp_proto::tp::audit::v1::{ListAuditEventsRequest, ListAuditEventsResponse};
use tp_proto::tp::login::v1::login_service_client::LoginServiceClient;
use tp_proto::tp::login::v1::{AuthenticateSshUserRequest, AuthenticateSshUserResponse};
use tp_proto::types::{
    CertAuthorityV2, ClusterNameV2, ProvisionTokenV2, ResourceRequest, RoleV6, UserTokenV3, UserV2,
};
use tp_transport::connector::{Connector, Target};
use tp_transport::proxy_env::ProxyMatcher;

use crate::{Error, Result};

/// The page size used when a method walks every page for the caller.
const PAGE_SIZE: i32 = 1000;

/// A connected Auth API client. Cheap to clone: clones share the connection.
///
/// Build one from a tonic [`Channel`] with [`Client::from_channel`]; every call then goes
/// over that channel, which may run over any transport (tonic's own, or a connector
/// from `tp-transport`).
#[derive(Debug, Clone)]
pub struct Client {
    auth: AuthServiceClient<Channel>,
    users: UsersServiceClient<Channel>,
    trust: TrustServiceClient<Channel>,
    cluster_config: ClusterConfigServiceClient<Channel>,
    login: LoginServiceClient<Channel>,
    audit: AuditServiceClient<Channel>,
    call_timeout: Option<Duration>,
    read_retries: u32,
}

/// The kind of user token to create with [`Client::create_reset_password_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserTokenType {
    /// A new user sets their first password (`tctl users add`).
    Invite,
    /// An existing user resets their password (`tctl users reset`).
    Password,
}

impl UserTokenType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Password => "password",
        }
    }
}

fn require_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::bad_parameter(format!("missing {what}")));
    }
    Ok(())
}

/// How [`Client::connect`] reaches the Auth server.
#[derive(Debug, Clone)]
pub struct Config {
    targets: Vec<Target>,
    dial_timeout: Duration,
    call_timeout: Option<Duration>,
    read_retries: u32,
    proxy: ProxyMatcher,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            dial_timeout: Duration::from_secs(30),
            call_timeout: None,
            read_retries: DEFAULT_READ_RETRIES,
            proxy: ProxyMatcher::default(),
        }
    }
}

impl Config {
    /// A configuration with no targets yet, a 30 s dial timeout and no HTTP proxy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a way to reach the Auth server; every target is raced on each (re)connect.
    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Bounds each connection attempt (all targets race under one deadline).
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Gives every call a deadline.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// How many times an idempotent read (get, list, ping) is retried after a connection
    /// problem, with jittered exponential backoff; 3 unless set. Writes are never
    /// retried.
    pub fn read_retries(mut self, retries: u32) -> Self {
        self.read_retries = retries;
        self
    }

    /// Uses `HTTPS_PROXY`/`NO_PROXY` (or explicit values) for the dials.
    pub fn proxy(mut self, proxy: ProxyMatcher) -> Self {
        self.proxy = proxy;
        self
    }

    /// Adds targets for `addrs` with the material of `creds` (a profile, an identity
    /// file, a key pair, ...): each address is raced as an Auth server (`direct` mutual
    /// TLS, port 3025 by default), as a proxy's reverse tunnel (`tunnel`: SSH, port 3024
    /// by default, when the credential has SSH material) and as a proxy's web port (port
    /// 443 by default): `tls-routing` to the credential's cluster when the certificate
    /// names one, and `discovery` (`/webapi/find`, then TLS routing if the proxy has it
    /// on, else the tunnel it advertises). With no addresses, the credential's own proxy
    /// address is used (profiles name one) as a web port only, as Teleport's client does.
    ///
    /// The credential is read now and its certificates checked against the clock: an
    /// unreadable credential is a [`crate::ErrorKind::BadParameter`] error and an expired or
    /// not-yet-valid one a [`crate::ErrorKind::CredentialsExpired`] error, both naming the
    /// source — before any dial.
    pub fn credentials(
        mut self,
        creds: &dyn tp_creds::Credentials,
        addrs: &[&str],
    ) -> Result<Self> {
        let material = creds
            .load_valid(std::time::SystemTime::now())
            .map_err(|e| {
                let kind = match e {
                    tp_creds::Error::Expired { .. } | tp_creds::Error::NotYetValid { .. } => {
                        crate::ErrorKind::CredentialsExpired
                    }
                    _ => crate::ErrorKind::BadParameter,
                };
                Error::with_source(kind, e.to_string(), e)
            })?;
        let mut addrs: Vec<String> = addrs.iter().map(|a| (*a).to_string()).collect();
        // The credential's own address is a proxy's web address: reach the Auth server
        // through it (TLS routing), never try it as an Auth server.
        let proxy_only = addrs.is_empty();
        if addrs.is_empty() {
            addrs.extend(material.proxy_addr.clone());
        }
        if addrs.is_empty() {
            return Err(Error::bad_parameter(format!(
                "no address to connect to: {} names no proxy; pass the Auth server or proxy address",
                material.origin
            )));
        }
        let cluster = material
            .identity
            .as_ref()
            .map(|i| {
                if i.route_to_cluster.is_empty() {
                    i.teleport_cluster.clone()
                } else {
                    i.route_to_cluster.clone()
                }
            })
            .unwrap_or_default();
        for a in addrs {
            let bad = |e: tp_transport::addr::AddrError| {
                Error::bad_parameter(format!("address {a:?}: {e}"))
            };
            if !proxy_only {
                let auth = tp_transport::addr::parse_host_port(
                    &a,
                    tp_transport::addr::PortRule::Default(3025),
                )
                .map_err(bad)?;
                self.targets.push(Target::Direct {
                    addr: auth,
                    tls: material.tls.clone(),
                    server_name: material.server_name.clone(),
                    credential: material.origin.clone(),
                });
            }
            if let (false, Some(ssh)) = (proxy_only, &material.ssh) {
                let tunnel = tp_transport::addr::parse_host_port(
                    &a,
                    tp_transport::addr::PortRule::Default(3024),
                )
                .map_err(bad)?;
                self.targets.push(Target::Tunnel {
                    tunnel_addr: tunnel,
                    ssh: Box::new(ssh.clone()),
                    tls: material.tls.clone(),
                    server_name: material.server_name.clone(),
                    credential: material.origin.clone(),
                });
            }
            let web =
                tp_transport::addr::parse_host_port(&a, tp_transport::addr::PortRule::Default(443))
                    .map_err(bad)?;
            if !cluster.is_empty() {
                self.targets.push(Target::TlsRouting {
                    web_addr: web.clone(),
                    cluster: cluster.clone(),
                    tls: material.tls.clone(),
                    server_name: material.server_name.clone(),
                    credential: material.origin.clone(),
                });
            }
            self.targets.push(Target::Discovery {
                web_addr: web,
                cluster: cluster.clone(),
                tls: material.tls.clone(),
                server_name: material.server_name.clone(),
                ssh: material.ssh.clone().map(Box::new),
                credential: material.origin.clone(),
            });
        }
        Ok(self)
    }
}

/// The interval of HTTP/2 keepalive pings; Teleport servers accept one a minute.
const KEEPALIVE: Duration = Duration::from_secs(60);

impl Client {
    /// Connects: races every target, keeps the first that completes mutual TLS with
    /// `h2`, and checks the connection with a Ping. On failure the error lists every
    /// attempt and why it failed. Later reconnects race the targets again.
    pub async fn connect(config: Config) -> Result<Self> {
        let connector = Connector::new(config.targets, config.dial_timeout, config.proxy);
        let channel = Endpoint::from_static("http://teleport.cluster.local")
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_while_idle(true)
            .connect_with_connector(connector)
            .await
            .map_err(connect_error)?;
        let mut client = Self::from_channel(channel);
        client.call_timeout = config.call_timeout;
        client.read_retries = config.read_retries;
        client.ping().await?;
        Ok(client)
    }

    /// A client over an established channel.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            auth: AuthServiceClient::new(channel.clone()),
            users: UsersServiceClient::new(channel.clone()),
            trust: TrustServiceClient::new(channel.clone()),
            cluster_config: ClusterConfigServiceClient::new(channel.clone()),
            login: LoginServiceClient::new(channel.clone()),
            audit: AuditServiceClient::new(channel),
            call_timeout: None,
            read_retries: DEFAULT_READ_RETRIES,
        }
    }

    /// Gives every call a deadline of `timeout` (sent to the server as `grpc-timeout`).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// Retries idempotent reads as [`Config::read_retries`] says.
    pub fn with_read_retries(mut self, retries: u32) -> Self {
        self.read_retries = retries;
        self
    }

    /// Runs an idempotent read, retrying it after a connection problem (the channel
    /// reconnects through the racer on the next try) with jittered exponential backoff.
    async fn read<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if attempt < self.read_retries && crate::error::is_connection_status(&s) => {
                    let wait = backoff(attempt);
                    tracing::debug!(error = %s, ?wait, attempt, "connection problem; retrying the read");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(s) => return Err(s.into()),
            }
        }
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = self.call_timeout {
            r.set_timeout(t);
        }
        r
    }

    /// The cluster name, server version and features. Any authenticated identity may
    /// ask.
    pub async fn ping(&self) -> Result<PingResponse> {
        self.read(|| {
            let mut c = self.auth.clone();
            let r = self.req(PingRequest {});
            async move { c.ping(r).await }
        })
        .await
    }

    // ---- roles ----

    /// One role by name.
    pub async fn get_role(&self, name: &str) -> Result<RoleV6> {
        require_name(name, "name")?;
        let req = GetRoleRequest { name: name.into() };
        self.read(|| {
            let mut c = self.auth.clone();
            let r = self.req(req.clone());
            async move { c.get_role(r).await }
        })
        .await
    }

    /// One page of roles.
    pub async fn list_roles(&self, req: ListRolesRequest) -> Result<ListRolesResponse> {
        self.read(|| {
            let mut c = self.auth.clone();
            let r = self.req(req.clone());
            async move { c.list_roles(r).await }
        })
        .await
    }

    /// Every role, fetched a page at a time as the stream is read.
    pub fn roles(&self) -> BoxStream<'static, Result<RoleV6>> {
        let client = self.clone();
        stream::try_unfold(Some(String::new()), move |key| {
            let client = client.clone();
            async move {
                let Some(start_key) = key else {
                    return Ok::<_, Error>(None);
                };
                let page = client
                    .list_roles(ListRolesRequest {
                        limit: PAGE_SIZE,
                        start_key,
                        filter: None,
                    })
                    .await?;
                let next = (!page.next_key.is_empty()).then_some(page.next_key);
                Ok(Some((
                    stream::iter(page.roles.into_iter().map(Ok::<_, Error>)),
                    next,
                )))
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Every role, as a list.
    pub async fn get_roles(&self) -> Result<Vec<RoleV6>> {
        self.roles().try_collect().await
    }

    /// Creates a role; fails with `AlreadyExists` if it exists.
    pub async fn create_role(&self, role: RoleV6) -> Result<RoleV6> {
        let req = CreateRoleRequest { role: Some(role) };
        Ok(self
            .auth
            .clone()
            .create_role(self.req(req))
            .await?
            .into_inner())
    }

    /// Updates an existing role; with `metadata.revision` set, only if it still matches.
    pub async fn update_role(&self, role: RoleV6) -> Result<RoleV6> {
        let req = UpdateRoleRequest { role: Some(role) };
        Ok(self
            .auth
            .clone()
            .update_role(self.req(req))
            .await?
            .into_inner())
    }

    /// Creates or replaces a role and returns it as stored. Falls back to the legacy
    /// `UpsertRole` and a `GetRole` on servers without `UpsertRoleV2`, as Go does.
    pub async fn upsert_role(&self, role: RoleV6) -> Result<RoleV6> {
        let name = role
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let req = UpsertRoleRequest {
            role: Some(role.clone()),
        };
        match self.auth.clone().upsert_role_v2(self.req(req)).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) if s.code() == Code::Unimplemented => {
                self.auth.clone().upsert_role(self.req(role)).await?;
                self.get_role(&name).await
            }
            Err(s) => Err(s.into()),
        }
    }

    /// Deletes a role.
    pub async fn delete_role(&self, name: &str) -> Result<()> {
        require_name(name, "name")?;
        let req = DeleteRoleRequest { name: name.into() };
        self.auth.clone().delete_role(self.req(req)).await?;
        Ok(())
    }

    // ---- users ----

    /// One user by name; `with_secrets` also returns password hashes and MFA devices
    /// (needs `read`, not just `readnosecrets`).
    pub async fn get_user(&self, name: &str, with_secrets: bool) -> Result<UserV2> {
        require_name(name, "username")?;
        let req = GetUserRequest {
            name: name.into(),
            current_user: false,
            with_secrets,
        };
        let resp = self
            .read(|| {
                let mut c = self.users.clone();
                let r = self.req(req.clone());
                async move { c.get_user(r).await }
            })
            .await?;
        resp.user
            .ok_or_else(|| Error::new(crate::ErrorKind::Other, "server sent no user"))
    }

    /// The caller's own user.
    pub async fn get_current_user(&self) -> Result<UserV2> {
        let req = GetUserRequest {
            name: String::new(),
            current_user: true,
            with_secrets: false,
        };
        let resp = self
            .read(|| {
                let mut c = self.users.clone();
                let r = self.req(req.clone());
                async move { c.get_user(r).await }
            })
            .await?;
        resp.user
            .ok_or_else(|| Error::new(crate::ErrorKind::Other, "server sent no user"))
    }

    /// One page of users.
    pub async fn list_users(&self, req: ListUsersRequest) -> Result<ListUsersResponse> {
        self.read(|| {
            let mut c = self.users.clone();
            let r = self.req(req.clone());
            async move { c.list_users(r).await }
        })
        .await
    }

    /// Every user, fetched a page at a time as the stream is read.
    pub fn users(&self, with_secrets: bool) -> BoxStream<'static, Result<UserV2>> {
        let client = self.clone();
        stream::try_unfold(Some(String::new()), move |token| {
            let client = client.clone();
            async move {
                let Some(page_token) = token else {
                    return Ok::<_, Error>(None);
                };
                let page = client
                    .list_users(ListUsersRequest {
                        page_size: PAGE_SIZE,
                        page_token,
                        with_secrets,
                        filter: None,
                    })
                    .await?;
                let next = (!page.next_page_token.is_empty()).then_some(page.next_page_token);
                Ok(Some((
                    stream::iter(page.users.into_iter().map(Ok::<_, Error>)),
                    next,
                )))
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Every user, as a list.
    pub async fn get_users(&self, with_secrets: bool) -> Result<Vec<UserV2>> {
        self.users(with_secrets).try_collect().await
    }

    /// Creates a user and returns it as stored. Falls back to the legacy
    /// `AuthService/CreateUser` and `GetUser` on servers without `UsersService`.
    pub async fn create_user(&self, user: UserV2) -> Result<UserV2> {
        let name = user
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let req = CreateUserRequest {
            user: Some(user.clone()),
        };
        match self.users.clone().create_user(self.req(req)).await {
            Ok(r) => r
                .into_inner()
                .user
                .ok_or_else(|| Error::new(crate::ErrorKind::Other, "server sent no user")),
            Err(s) if s.code() == Code::Unimplemented => {
                self.auth.clone().create_user(self.req(user)).await?;
                self.legacy_get_user(&name).await
            }
            Err(s) => Err(s.into()),
        }
    }

    /// Updates an existing user and returns it as stored (legacy fallback as
    /// [`create_user`](Self::create_user)).
    pub async fn update_user(&self, user: UserV2) -> Result<UserV2> {
        let name = user
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let req = UpdateUserRequest {
            user: Some(user.clone()),
        };
        match self.users.clone().update_user(self.req(req)).await {
            Ok(r) => r
                .into_inner()
                .user
                .ok_or_else(|| Error::new(crate::ErrorKind::Other, "server sent no user")),
            Err(s) if s.code() == Code::Unimplemented => {
                self.auth.clone().update_user(self.req(user)).await?;
                self.legacy_get_user(&name).await
            }
            Err(s) => Err(s.into()),
        }
    }

    /// Creates or replaces a user.
    pub async fn upsert_user(&self, user: UserV2) -> Result<UserV2> {
        let req = UpsertUserRequest { user: Some(user) };
        let resp = self
            .users
            .clone()
            .upsert_user(self.req(req))
            .await?
            .into_inner();
        resp.user
            .ok_or_else(|| Error::new(crate::ErrorKind::Other, "server sent no user"))
    }

    /// Deletes a user (legacy fallback on servers without `UsersService`).
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        require_name(name, "username")?;
        let req = DeleteUserRequest { name: name.into() };
        match self.users.clone().delete_user(self.req(req)).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::Unimplemented => {
                let req = proto::DeleteUserRequest { name: name.into() };
                self.auth.clone().delete_user(self.req(req)).await?;
                Ok(())
            }
            Err(s) => Err(s.into()),
        }
    }

    async fn legacy_get_user(&self, name: &str) -> Result<UserV2> {
        let req = proto::GetUserRequest {
            name: name.into(),
            with_secrets: false,
        };
        self.read(|| {
            let mut c = self.auth.clone();
            let r = self.req(req.clone());
            async move { c.get_user(r).await }
        })
        .await
    }

    // ---- certificates ----

    /// Signs SSH and/or TLS user certificates for the public keys in `req`.
    pub async fn generate_user_certs(&self, req: UserCertsRequest) -> Result<Certs> {
        Ok(self
            .auth
            .clone()
            .generate_user_certs(self.req(req))
            .await?
            .into_inner())
    }

    // ---- join tokens ----

    /// One join token by name (the token secret).
    pub async fn get_token(&self, name: &str) -> Result<ProvisionTokenV2> {
        require_name(name, "name")?;
        let req = ResourceRequest { name: name.into() };
        self.read(|| {
            let mut c = self.auth.clone();
            let r = self.req(req.clone());
            async move { c.get_token(r).await }
        })
        .await
    }

    /// Every join token.
    pub async fn get_tokens(&self) -> Result<Vec<ProvisionTokenV2>> {
        let resp = self
            .read(|| {
                let mut c = self.auth.clone();
                let r = self.req(());
                async move { c.get_tokens(r).await }
            })
            .await?;
        Ok(resp.provision_tokens)
    }

    /// Creates a join token; fails with `AlreadyExists` if it exists.
    pub async fn create_token(&self, token: ProvisionTokenV2) -> Result<()> {
        let req = CreateTokenV2Request {
            token: Some(proto::create_token_v2_request::Token::V2(token)),
        };
        self.auth.clone().create_token_v2(self.req(req)).await?;
        Ok(())
    }

    /// Creates or replaces a join token.
    pub async fn upsert_token(&self, token: ProvisionTokenV2) -> Result<()> {
        let req = UpsertTokenV2Request {
            token: Some(proto::upsert_token_v2_request::Token::V2(token)),
        };
        self.auth.clone().upsert_token_v2(self.req(req)).await?;
        Ok(())
    }

    /// Deletes a join token.
    pub async fn delete_token(&self, name: &str) -> Result<()> {
        require_name(name, "name")?;
        let req = ResourceRequest { name: name.into() };
        self.auth.clone().delete_token(self.req(req)).await?;
        Ok(())
    }

    // ---- invite and reset-password tokens ----

    /// Creates an invite or password-reset token for `user`, valid for `ttl` (zero: the
    /// server's default, 1 h for invites and 8 h for resets).
    pub async fn create_reset_password_token(
        &self,
        user: &str,
        kind: UserTokenType,
        ttl: Duration,
    ) -> Result<UserTokenV3> {
        require_name(user, "username")?;
        let req = CreateResetPasswordTokenRequest {
            name: user.into(),
            r#type: kind.as_str().into(),
            ttl: i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX),
        };
        Ok(self
            .auth
            .clone()
            .create_reset_password_token(self.req(req))
            .await?
            .into_inner())
    }

    /// Looks up an invite or reset token by its ID.
    pub async fn get_reset_password_token(&self, token_id: &str) -> Result<UserTokenV3> {
        require_name(token_id, "token ID")?;
        let req = GetResetPasswordTokenRequest {
            token_id: token_id.into(),
        };
        self.read(|| {
            let mut c = self.auth.clone();
            let r = self.req(req.clone());
            async move { c.get_reset_password_token(r).await }
        })
        .await
    }

    /// Completes an invite or reset: sets the token's user's password.
    pub async fn change_user_authentication(
        &self,
        req: ChangeUserAuthenticationRequest,
    ) -> Result<ChangeUserAuthenticationResponse> {
        Ok(self
            .auth
            .clone()
            .change_user_authentication(self.req(req))
            .await?
            .into_inner())
    }

    // ---- certificate authorities and cluster name ----

    /// One certificate authority of `ca_type` (`user`, `host`, ...) for cluster `domain`;
    /// private keys only with `include_key` and the right to read secrets.
    pub async fn get_cert_authority(
        &self,
        ca_type: &str,
        domain: &str,
        include_key: bool,
    ) -> Result<CertAuthorityV2> {
        let req = GetCertAuthorityRequest {
            r#type: ca_type.into(),
            domain: domain.into(),
            include_key,
        };
        self.read(|| {
            let mut c = self.trust.clone();
            let r = self.req(req.clone());
            async move { c.get_cert_authority(r).await }
        })
        .await
    }

    /// Every certificate authority of `ca_type`.
    pub async fn get_cert_authorities(
        &self,
        ca_type: &str,
        include_key: bool,
    ) -> Result<Vec<CertAuthorityV2>> {
        let req = GetCertAuthoritiesRequest {
            r#type: ca_type.into(),
            include_key,
        };
        let resp = self
            .read(|| {
                let mut c = self.trust.clone();
                let r = self.req(req.clone());
                async move { c.get_cert_authorities(r).await }
            })
            .await?;
        Ok(resp.cert_authorities_v2)
    }

    /// The cluster name resource.
    pub async fn get_cluster_name(&self) -> Result<ClusterNameV2> {
        let req = GetClusterNameRequest {};
        self.read(|| {
            let mut c = self.cluster_config.clone();
            let r = self.req(req);
            async move { c.get_cluster_name(r).await }
        })
        .await
    }

    // ---- tp's own extensions ----

    /// Password login, for the cluster's Proxy identity only (tp's `LoginService`; not
    /// part of Teleport's API).
    pub async fn authenticate_ssh_user(
        &self,
        req: AuthenticateSshUserRequest,
    ) -> Result<AuthenticateSshUserResponse> {
        Ok(self
            .login
            .clone()
            .authenticate_ssh_user(self.req(req))
            .await?
            .into_inner())
    }

    /// One page of the audit log, oldest first, from `start_key` (empty for the oldest
    /// event; then the previous page's `next_key`), at most `page_size` events (0 for the
    /// server's default). Needs `list` and `read` on kind `event` (the preset `auditor`
    /// role has them). tp's `AuditService`; not part of Teleport's API.
    pub async fn list_audit_events(
        &self,
        start_key: &str,
        page_size: i32,
    ) -> Result<ListAuditEventsResponse> {
        let req = ListAuditEventsRequest {
            page_size,
            start_key: start_key.to_owned(),
        };
        self.read(|| {
            let mut c = self.audit.clone();
            let r = self.req(req.clone());
            async move { c.list_audit_events(r).await }
        })
        .await
    }

    // ---- watching ----

    /// Subscribes to changes of the kinds in `watch`. The stream starts with an `INIT`
    /// event and then carries `PUT` and `DELETE` events.
    ///
    /// **Resuming.** When the connection breaks (the Auth server restarts, the network
    /// drops), the stream does not end: it subscribes again through the client's
    /// connector — retrying with jittered backoff for up to [`WATCH_RESUME_WINDOW`] —
    /// and carries on with the new subscription's `INIT` event. That `INIT` is the
    /// signal to re-read the state, as after the first one: a change made while no
    /// subscription was open is not replayed (Teleport's watchers have no resume point
    /// either). No event is delivered twice: each comes from exactly one subscription.
    ///
    /// The stream ends with an error when the server closes it for another reason (for
    /// example `LimitExceeded` for a watcher too slow to keep up), when access is denied,
    /// or when the server stays unreachable for the whole window.
    pub async fn watch_events(
        &self,
        watch: Watch,
    ) -> Result<BoxStream<'static, Result<proto::Event>>> {
        let first = self.subscribe(watch.clone()).await?;
        let client = self.clone();
        Ok(stream::unfold(
            WatchState::Streaming(Box::new(first)),
            move |mut state| {
                let client = client.clone();
                let watch = watch.clone();
                async move {
                    loop {
                        state = match state {
                            WatchState::Streaming(mut events) => match events.next().await {
                                Some(Ok(ev)) => return Some((Ok(ev), WatchState::Streaming(events))),
                                Some(Err(s)) if crate::error::is_connection_status(&s) => {
                                    tracing::info!(error = %s, "watcher lost its connection; resubscribing");
                                    WatchState::Resubscribing {
                                        since: tokio::time::Instant::now(),
                                        attempt: 0,
                                    }
                                }
                                Some(Err(s)) => return Some((Err(s.into()), WatchState::Done)),
                                None => return None,
                            },
                            WatchState::Resubscribing { since, attempt } => {
                                tokio::time::sleep(backoff(attempt)).await;
                                match client.subscribe(watch.clone()).await {
                                    Ok(events) => {
                                        tracing::info!(attempt, "watcher resubscribed");
                                        WatchState::Streaming(Box::new(events))
                                    }
                                    Err(e)
                                        if e.kind() == crate::ErrorKind::ConnectionProblem
                                            && since.elapsed() < WATCH_RESUME_WINDOW =>
                                    {
                                        WatchState::Resubscribing {
                                            since,
                                            attempt: attempt + 1,
                                        }
                                    }
                                    Err(e) => return Some((Err(e), WatchState::Done)),
                                }
                            }
                            WatchState::Done => return None,
                        }
                    }
                }
            },
        )
        .boxed())
    }

    async fn subscribe(&self, watch: Watch) -> Result<tonic::Streaming<proto::Event>> {
        // A stream has no overall deadline: the call timeout would cut it off.
        Ok(self
            .auth
            .clone()
            .watch_events(Request::new(watch))
            .await?
            .into_inner())
    }
}

/// How long a [`Client::watch_events`] stream keeps trying to resubscribe after its
/// connection broke before it ends with the error.
pub const WATCH_RESUME_WINDOW: Duration = Duration::from_secs(60);

/// The retries of an idempotent read unless [`Config::read_retries`] says otherwise.
pub const DEFAULT_READ_RETRIES: u32 = 3;

enum WatchState {
    Streaming(Box<tonic::Streaming<proto::Event>>),
    Resubscribing {
        since: tokio::time::Instant,
        attempt: u32,
    },
    Done,
}

/// The wait before retry `attempt` (0-based): 100 ms doubling up to 2 s, each with up to
/// ±50 % jitter so that many clients cut off at once do not come back in step.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(5));
    let base = base.min(Duration::from_secs(2));
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let unit = (h.finish() % 1000) as f64 / 1000.0; // 0 ≤ unit < 1
    base.mul_f64(0.5 + unit)
}

/// Turns tonic's connect error into ours, keeping the racer's list of attempts when
/// that is what failed.
pub(crate) fn connect_error(e: tonic::transport::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(race) =
            s.downcast_ref::<tp_transport::race::RaceError<tp_transport::dial::DialError>>()
        {
            return Error::new(crate::ErrorKind::ConnectionProblem, race.to_string());
        }
        source = s.source();
    }
    Error::with_source(
        crate::ErrorKind::ConnectionProblem,
        format!("cannot connect: {e}"),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_two_seconds_with_jitter() {
        for attempt in 0..12 {
            let base = Duration::from_millis(100 << attempt.min(5)).min(Duration::from_secs(2));
            let waits: Vec<Duration> = (0..50).map(|_| backoff(attempt)).collect();
            for w in &waits {
                assert!(*w >= base / 2 && *w < base * 3 / 2, "{attempt}: {w:?}");
            }
            assert!(
                waits.iter().any(|w| *w != waits[0]),
                "attempt {attempt}: the waits are jittered"
            );
        }
    }
}
