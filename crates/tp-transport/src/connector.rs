//! A tower `Service<Uri>` connector that races every configured way to the Auth server
//! each time it is called, so any tonic or hyper client can run over tp's transports —
//! and reconnects (which call the connector again) pick the best path anew.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper_util::rt::TokioIo;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;

use crate::addr::HostPort;
use crate::dial::{self, BoxedStream, DialError, Peer};
use crate::discovery::tunnel_addr_override_from_env;
use crate::proxy_env::ProxyMatcher;
use crate::race::{Attempt, AttemptFuture, RaceError, race};
use crate::rewind::Rewind;
use crate::web::WebClient;

/// One way to reach the Auth server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Target {
    /// mTLS straight to an Auth server address.
    Direct {
        /// The Auth server (`host:3025`).
        addr: HostPort,
        /// The credential's TLS configuration.
        tls: Arc<ClientConfig>,
        /// The TLS server name (normally `teleport.cluster.local`).
        server_name: String,
        /// Where the credential came from, for error messages.
        credential: String,
    },
    /// mTLS to the Auth server inside an SSH `teleport-transport` channel through the
    /// proxy's reverse-tunnel port.
    Tunnel {
        /// The proxy's tunnel address (`host:3024`).
        tunnel_addr: HostPort,
        /// The credential's SSH material (user certificate, host CAs).
        ssh: Box<tp_creds::SshMaterial>,
        /// The credential's TLS configuration (for the Auth server, end to end).
        tls: Arc<ClientConfig>,
        /// The TLS server name (normally `teleport.cluster.local`).
        server_name: String,
        /// Where the credential came from, for error messages.
        credential: String,
    },
    /// mTLS through the proxy's web port with TLS routing.
    TlsRouting {
        /// The proxy's web address (`host:3080` or `:443`).
        web_addr: HostPort,
        /// The cluster whose Auth server to reach.
        cluster: String,
        /// The credential's TLS configuration.
        tls: Arc<ClientConfig>,
        /// The TLS server name (normally `teleport.cluster.local`).
        server_name: String,
        /// Where the credential came from, for error messages.
        credential: String,
    },
    /// Web-proxy discovery first (`GET /webapi/find`, see
    /// [`WebClient::find`](crate::web::WebClient::find)), then mTLS through the same web
    /// address with TLS routing when the proxy says it is on. A proxy with TLS routing
    /// off needs the SSH reverse tunnel, which is not available yet: that attempt then
    /// fails saying so ([`DialError::NeedsTunnel`]).
    Discovery {
        /// The proxy's web address.
        web_addr: HostPort,
        /// The cluster whose Auth server to reach; empty: the cluster the proxy names.
        cluster: String,
        /// The credential's TLS configuration; also verifies the proxy's web certificate.
        tls: Arc<ClientConfig>,
        /// The TLS server name for the Auth server (normally `teleport.cluster.local`).
        server_name: String,
        /// The credential's SSH material: with it, a proxy without TLS routing is reached
        /// through the tunnel address it advertises.
        ssh: Option<Box<tp_creds::SshMaterial>>,
        /// Where the credential came from, for error messages.
        credential: String,
    },
}

impl Target {
    fn attempt(&self) -> Attempt {
        match self {
            Self::Direct {
                addr, credential, ..
            } => Attempt::new(addr.to_string(), credential.clone(), "direct"),
            Self::TlsRouting {
                web_addr,
                credential,
                ..
            } => Attempt::new(web_addr.to_string(), credential.clone(), "tls-routing"),
            Self::Tunnel {
                tunnel_addr,
                credential,
                ..
            } => Attempt::new(tunnel_addr.to_string(), credential.clone(), "tunnel"),
            Self::Discovery {
                web_addr,
                credential,
                ..
            } => Attempt::new(web_addr.to_string(), credential.clone(), "discovery"),
        }
    }

    /// Dials, then waits for the server to accept the client certificate
    /// ([`dial::await_acceptance`]).
    async fn dial(self, proxy: Arc<ProxyMatcher>) -> Result<AuthStream, DialError> {
        match self {
            Self::Direct {
                addr,
                tls,
                server_name,
                ..
            } => {
                let s = dial::direct(&addr, tls, &server_name, &proxy).await?;
                dial::await_acceptance(s, &addr.to_string(), Peer::Auth).await
            }
            Self::TlsRouting {
                web_addr,
                cluster,
                tls,
                server_name,
                ..
            } => {
                let s = dial::tls_routing(&web_addr, &cluster, tls, &server_name, &proxy).await?;
                dial::await_acceptance(s, &web_addr.to_string(), Peer::RoutingProxy).await
            }
            Self::Discovery {
                web_addr,
                cluster,
                tls,
                server_name,
                ssh,
                ..
            } => {
                let web =
                    WebClient::new(web_addr.clone(), tls.clone()).with_proxy((*proxy).clone());
                let found = web.find().await.map_err(|e| DialError::Discovery {
                    addr: web_addr.to_string(),
                    source: Box::new(e),
                })?;
                if !found.proxy.tls_routing_enabled {
                    let tunnel = found
                        .proxy
                        .tunnel_addr(tunnel_addr_override_from_env().as_deref());
                    if let (Some(ssh), Ok(tunnel_addr)) = (&ssh, &tunnel) {
                        let advertised = |source| DialError::AdvertisedTunnel {
                            addr: web_addr.to_string(),
                            tunnel: tunnel_addr.to_string(),
                            source: Box::new(source),
                        };
                        let s = crate::tunnel::dial(tunnel_addr, ssh, tls, &server_name, &proxy)
                            .await
                            .map_err(advertised)?;
                        return dial::await_acceptance(s, &tunnel_addr.to_string(), Peer::Auth)
                            .await
                            .map_err(advertised);
                    }
                    let tunnel =
                        tunnel.map_or_else(|e| format!("(unusable: {e})"), |a| a.to_string());
                    return Err(DialError::NeedsTunnel {
                        addr: web_addr.to_string(),
                        tunnel,
                    });
                }
                let cluster = if cluster.is_empty() {
                    found.cluster_name
                } else {
                    cluster
                };
                let s = dial::tls_routing(&web_addr, &cluster, tls, &server_name, &proxy).await?;
                dial::await_acceptance(s, &web_addr.to_string(), Peer::RoutingProxy).await
            }
            Self::Tunnel {
                tunnel_addr,
                ssh,
                tls,
                server_name,
                ..
            } => {
                let s = crate::tunnel::dial(&tunnel_addr, &ssh, tls, &server_name, &proxy).await?;
                dial::await_acceptance(s, &tunnel_addr.to_string(), Peer::Auth).await
            }
        }
    }
}

/// The stream a [`Connector`] yields: mutually authenticated TLS with `h2` negotiated,
/// replaying the server's first bytes (read to confirm it accepted the client
/// certificate).
pub type AuthStream = Rewind<TlsStream<BoxedStream>>;

/// Races its targets on every call (see [`race`]).
#[derive(Debug, Clone)]
pub struct Connector {
    targets: Arc<Vec<Target>>,
    timeout: Duration,
    proxy: Arc<ProxyMatcher>,
}

impl Connector {
    /// A connector over `targets`, each call bounded by `timeout`, going through the HTTP
    /// proxy `proxy` picks where one applies.
    pub fn new(targets: Vec<Target>, timeout: Duration, proxy: ProxyMatcher) -> Self {
        Self {
            targets: Arc::new(targets),
            timeout,
            proxy: Arc::new(proxy),
        }
    }

    /// Dials every target at once and returns the first stream to complete, and which
    /// target it was.
    pub async fn dial(&self) -> Result<(AuthStream, Attempt), RaceError<DialError>> {
        let attempts: Vec<(Attempt, AttemptFuture<'static, AuthStream, DialError>)> = self
            .targets
            .iter()
            .map(|t| {
                let fut: AttemptFuture<'static, AuthStream, DialError> =
                    Box::pin(t.clone().dial(self.proxy.clone()));
                (t.attempt(), fut)
            })
            .collect();
        race(attempts, self.timeout).await
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<AuthStream>;
    type Error = RaceError<DialError>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        // The URI is tonic's placeholder; the targets say where to go.
        let this = self.clone();
        Box::pin(async move {
            let (stream, attempt) = this.dial().await?;
            tracing::debug!(%attempt, "connected to the Auth server");
            Ok(TokioIo::new(stream))
        })
    }
}
