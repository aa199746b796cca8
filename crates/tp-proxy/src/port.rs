//! The proxy's web port: one listener, routed by the ClientHello's ALPN.
//!
//! - `teleport-auth@<hex(cluster)>…` — forwarded raw (still encrypted) to the Auth
//!   server; the proxy does not terminate this TLS.
//! - `teleport-reversetunnel` — the reverse tunnel over the web port, when a tunnel
//!   server is attached ([`WebPort::with_tunnel`]).
//! - anything else (`h2`, `http/1.1`, no ALPN) — TLS is terminated with the web
//!   certificate and the HTTPS API ([`crate::web`]) answers.
//!
//! In separate listener mode ([`WebPort::separate`], Teleport's
//! `proxy_listener_mode: separate`) the port serves HTTPS only: the first two routes are
//! refused, and clients reach the Auth server through the tunnel listener instead.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tp_transport::addr::HostPort;
use tp_transport::alpn::{self, Route};
use tp_transport::rewind::read_client_hello;

/// How long a new connection may take to send its ClientHello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The web port's routing and handlers.
#[derive(Debug, Clone)]
pub struct WebPort {
    cluster: String,
    tls: Arc<ServerConfig>,
    /// The same certificate, offering only `teleport-reversetunnel`.
    tunnel_tls: Arc<ServerConfig>,
    web: axum::Router,
    auth_addr: HostPort,
    tunnel: Option<tp_transport::tunnel::TunnelServer>,
    /// Whether Auth connections and the tunnel are routed here (multiplex mode).
    multiplex: bool,
}

impl WebPort {
    /// A web port for `cluster` that terminates web TLS with `tls` (its ALPN list is set
    /// to `h2` and `http/1.1`), serves `web`, and forwards Auth connections to
    /// `auth_addr`.
    pub fn new(
        cluster: impl Into<String>,
        tls: ServerConfig,
        web: axum::Router,
        auth_addr: HostPort,
    ) -> Self {
        let mut tls = tls;
        let mut tunnel_tls = tls.clone();
        tunnel_tls.alpn_protocols = vec![alpn::REVERSE_TUNNEL.as_bytes().to_vec()];
        tls.alpn_protocols = vec![
            alpn::H2.as_bytes().to_vec(),
            alpn::HTTP1.as_bytes().to_vec(),
        ];
        Self {
            cluster: cluster.into(),
            tls: Arc::new(tls),
            tunnel_tls: Arc::new(tunnel_tls),
            web,
            auth_addr,
            tunnel: None,
            multiplex: true,
        }
    }

    /// Also serves the reverse tunnel on this port (ALPN `teleport-reversetunnel`, what
    /// Teleport's clients use when the proxy routes by TLS).
    #[must_use]
    pub fn with_tunnel(mut self, tunnel: tp_transport::tunnel::TunnelServer) -> Self {
        self.tunnel = Some(tunnel);
        self
    }

    /// Serves HTTPS only: Auth connections and the reverse tunnel are refused on this
    /// port (Teleport's `proxy_listener_mode: separate`; the web API then reports TLS
    /// routing off, so clients use the tunnel listener).
    #[must_use]
    pub fn separate(mut self) -> Self {
        self.multiplex = false;
        self
    }

    /// Accepts connections until the listener fails; each is handled on its own task.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = listener.accept().await?;
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.handle(tcp, peer.ip()).await {
                    tracing::debug!(%peer, error = %e, "web port connection ended");
                }
            });
        }
    }

    /// Routes one connection from `peer`.
    pub async fn handle(
        &self,
        tcp: TcpStream,
        peer: std::net::IpAddr,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let _ = tcp.set_nodelay(true);
        let (hello, stream) = read_client_hello(tcp, HELLO_TIMEOUT).await?;
        match alpn::route(&hello.alpn)? {
            Route::Auth { .. } | Route::ReverseTunnel if !self.multiplex => Err(
                "this proxy runs in separate listener mode: no TLS routing on the web port".into(),
            ),
            Route::Auth { cluster } => {
                if cluster != self.cluster {
                    return Err(format!(
                        "no Auth server for cluster {cluster:?} here (this is {:?})",
                        self.cluster
                    )
                    .into());
                }
                let mut upstream =
                    TcpStream::connect((self.auth_addr.host.as_str(), self.auth_addr.port)).await?;
                let _ = upstream.set_nodelay(true);
                let mut stream = stream;
                tokio::io::copy_bidirectional(&mut stream, &mut upstream).await?;
                Ok(())
            }
            Route::ReverseTunnel => {
                let Some(tunnel) = &self.tunnel else {
                    return Err("this proxy does not serve the reverse tunnel".into());
                };
                let tls = TlsAcceptor::from(self.tunnel_tls.clone())
                    .accept(stream)
                    .await?;
                tunnel.serve(tls, Some(peer)).await?;
                Ok(())
            }
            _ => {
                let tls = TlsAcceptor::from(self.tls.clone()).accept(stream).await?;
                let web = self
                    .web
                    .clone()
                    .layer(axum::Extension(crate::login::ClientAddr(peer)));
                let service = TowerToHyperService::new(web);
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await?;
                Ok(())
            }
        }
    }
}
