//! The proxy's HTTPS API: discovery (`/webapi/ping`, `/webapi/find`,
//! `/webapi/ping/<connector>`) with Teleport's JSON, and JSON errors with proper status
//! codes for anything else.

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tp_transport::discovery::{
    AuthenticationSettings, LocalConnector, PingResponse, ProxySettings,
};

/// The largest request body the web API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// What the proxy says about itself and its cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebConfig {
    /// The cluster name.
    pub cluster_name: String,
    /// The version the proxy reports (`server_version`).
    pub server_version: String,
    /// The oldest client version it supports.
    pub min_client_version: String,
    /// Listen and public addresses, and whether TLS routing is on.
    pub proxy: ProxySettings,
    /// How users log in.
    pub auth: AuthenticationSettings,
}

impl WebConfig {
    /// A configuration for `cluster_name` with local (password) login.
    pub fn new(cluster_name: impl Into<String>, proxy: ProxySettings) -> Self {
        let mut auth = AuthenticationSettings::default();
        auth.kind = "local".into();
        auth.second_factor = "off".into();
        auth.local = Some(LocalConnector::default());
        Self {
            cluster_name: cluster_name.into(),
            server_version: crate::TELEPORT_COMPAT_VERSION.into(),
            min_client_version: crate::MIN_CLIENT_VERSION.into(),
            proxy,
            auth,
        }
    }

    fn ping(&self, with_auth: bool) -> PingResponse {
        let mut p = PingResponse::default();
        if with_auth {
            p.auth = self.auth.clone();
        }
        p.proxy = self.proxy.clone();
        p.server_version = self.server_version.clone();
        p.min_client_version = self.min_client_version.clone();
        p.cluster_name = self.cluster_name.clone();
        p.edition = "oss".into();
        p
    }
}

/// What the web handlers share: the configuration and, when the proxy is connected to
/// the Auth server, a client with the proxy's identity.
#[derive(Debug, Clone)]
pub struct WebState {
    /// What the proxy says about itself.
    pub cfg: Arc<WebConfig>,
    /// The Auth server, as the proxy's identity sees it.
    pub auth: Option<tp_client::Client>,
    /// Failed-login counts.
    pub limiter: Arc<crate::login::Limiter>,
}

impl WebState {
    /// The address users reach the proxy at (its public address, else its listen address).
    pub fn public_addr(&self) -> String {
        let s = &self.cfg.proxy.ssh;
        if s.public_addr.is_empty() {
            s.web_listen_addr.clone()
        } else {
            s.public_addr.clone()
        }
    }
}

/// An error in Teleport's web API shape: `{"error":{"message":"..."}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with an HTTP status and a message for the client.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

async fn ping(State(state): State<WebState>) -> Json<PingResponse> {
    Json(state.cfg.ping(true))
}

async fn find(State(state): State<WebState>) -> Json<PingResponse> {
    Json(state.cfg.ping(false))
}

async fn ping_connector(
    State(state): State<WebState>,
    Path(connector): Path<String>,
) -> Result<Json<PingResponse>, ApiError> {
    // Only the local connector exists in tp; Teleport accepts its name or "local".
    let local = state
        .cfg
        .auth
        .local
        .as_ref()
        .map(|l| l.name.as_str())
        .unwrap_or_default();
    if connector == "local" || (!local.is_empty() && connector == local) {
        return Ok(Json(state.cfg.ping(true)));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("connector {connector:?} not found"),
    ))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// The web API's routes: discovery, and the invite and reset pages when `auth` is given.
pub fn router(cfg: Arc<WebConfig>, auth: Option<tp_client::Client>) -> axum::Router {
    let state = WebState {
        cfg,
        auth,
        limiter: Arc::default(),
    };
    axum::Router::new()
        .route("/webapi/ping", get(ping))
        .route("/webapi/find", get(find))
        .route("/webapi/ping/{connector}", get(ping_connector))
        .route(
            "/webapi/ssh/certs",
            axum::routing::post(crate::login::ssh_certs),
        )
        .route(
            "/v1/webapi/ssh/certs",
            axum::routing::post(crate::login::ssh_certs),
        )
        .route(
            "/web/invite/{token}",
            get(crate::invite::show).post(crate::invite::submit),
        )
        .route(
            "/web/reset/{token}",
            get(crate::invite::show).post(crate::invite::submit),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
