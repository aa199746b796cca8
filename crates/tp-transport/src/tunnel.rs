//! The reverse-tunnel mode (wire-client spec §8), both halves.
//!
//! Client: SSH (tp-ssh) to the proxy's tunnel address as the credential's user
//! certificate, the proxy's host certificate checked against the credential's host CAs;
//! a `teleport-transport` channel dialled to `@remote-auth-server`; then mutual TLS with
//! the Auth server *inside* the channel, end to end — the proxy only splices bytes.
//!
//! Server (what tp-proxy runs on its tunnel port): accept SSH from users whose
//! certificates the user CA signed and that carry Teleport roles, answer each
//! `teleport-transport` dial to `@remote-auth-server` by connecting to the Auth server and
//! splicing, refuse everything else with the error text Teleport's client shows.

use std::fmt;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;
use tp_ssh::teleport::{DialRequest, dial_transport, serve_transport};
use tp_ssh::{Channel, Session};

use crate::addr::HostPort;
use crate::dial::{self, BoxedStream, DialError};
use crate::proxy_env::ProxyMatcher;

/// The address a client dials through the tunnel to reach the Auth server.
pub const REMOTE_AUTH_SERVER: &str = "@remote-auth-server";

/// A `teleport-transport` channel that keeps its SSH session alive as long as it lives.
pub struct TunnelStream {
    channel: Channel,
    _session: Session,
}

impl fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelStream")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.channel).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.channel).poll_write(cx, buf)
    }
    // Vectored writes pass through: h2 hands over a frame head and its payload as
    // two slices, which must reach TLS together to leave as one record and one write.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.channel).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.channel.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.channel).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.channel).poll_shutdown(cx)
    }
}

/// The SSH client configuration for a credential's SSH material: log in as its user
/// (first principal), present its certificate, trust its host CAs.
pub fn client_config(
    ssh: &tp_creds::SshMaterial,
    addr: &HostPort,
) -> Result<tp_ssh::ClientConfig, DialError> {
    if ssh.host_cas.is_empty() {
        return Err(DialError::NoSshHostCa {
            addr: addr.to_string(),
        });
    }
    let fail = |e: tp_ssh::Error| DialError::Ssh {
        addr: addr.to_string(),
        source: e,
    };
    let key = tp_ssh::KeyPair::new(&ssh.signer)
        .map_err(fail)?
        .with_certificate(ssh.certificate.clone())
        .map_err(fail)?;
    let mut cfg = tp_ssh::ClientConfig::new(ssh.user.clone(), Arc::new(key));
    cfg.trusted_host_cas = ssh.host_cas.iter().map(tp_ssh::fingerprint).collect();
    Ok(cfg)
}

/// Opens the `teleport-transport` channel to the Auth server through the proxy's tunnel
/// at `tunnel_addr`: a raw byte stream to the Auth server (no TLS yet).
pub async fn open(
    tunnel_addr: &HostPort,
    ssh: &tp_creds::SshMaterial,
    matcher: &ProxyMatcher,
) -> Result<TunnelStream, DialError> {
    let cfg = Arc::new(client_config(ssh, tunnel_addr)?);
    let tcp = dial::tcp(tunnel_addr, matcher).await?;
    let fail = |e: tp_ssh::Error| DialError::Ssh {
        addr: tunnel_addr.to_string(),
        source: e,
    };
    let session = tp_ssh::Client::connect(tcp, cfg).await.map_err(fail)?;
    let channel = dial_transport(&session, &DialRequest::auth_server())
        .await
        .map_err(fail)?;
    Ok(TunnelStream {
        channel,
        _session: session,
    })
}

/// Tunnel mode: the transport channel, then mutual TLS with the Auth server inside it
/// (`h2` required).
pub async fn dial(
    tunnel_addr: &HostPort,
    ssh: &tp_creds::SshMaterial,
    tls: Arc<ClientConfig>,
    server_name: &str,
    matcher: &ProxyMatcher,
) -> Result<TlsStream<BoxedStream>, DialError> {
    let stream: BoxedStream = Box::new(open(tunnel_addr, ssh, matcher).await?);
    let mut config = (*tls).clone();
    config.alpn_protocols = vec![crate::alpn::H2.as_bytes().to_vec()];
    let what = format!("{tunnel_addr} (through the tunnel)");
    let tls = dial::tls(stream, Arc::new(config), server_name, &what).await?;
    dial::require_h2(&tls, tunnel_addr)?;
    Ok(tls)
}

/// The most tunnel connections one user may hold at once by default.
pub const DEFAULT_MAX_PER_USER: usize = 256;

/// What the tunnel server needs: its SSH configuration (host key and certificate, the
/// user CAs it trusts) and where the Auth server is.
#[derive(Debug, Clone)]
pub struct TunnelServer {
    config: Arc<tp_ssh::ServerConfig>,
    auth_addr: HostPort,
    users: Arc<UserSlots>,
    stats: Arc<TunnelStats>,
}

/// Counters of a [`TunnelServer`], for metrics: authenticated connections, and the
/// bytes spliced to and from the Auth server (counted as they pass).
#[derive(Debug, Default)]
pub struct TunnelStats {
    connections: std::sync::atomic::AtomicU64,
    to_auth: std::sync::atomic::AtomicU64,
    from_auth: std::sync::atomic::AtomicU64,
}

impl TunnelStats {
    /// Connections that authenticated.
    pub fn connections(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes sent on to the Auth server.
    pub fn bytes_to_auth(&self) -> u64 {
        self.to_auth.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the Auth server sent back.
    pub fn bytes_from_auth(&self) -> u64 {
        self.from_auth.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The proxy's stream to the Auth server, counting what passes into [`TunnelStats`].
struct Counted {
    inner: tokio::net::TcpStream,
    stats: Arc<TunnelStats>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.stats
            .from_auth
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            self.stats
                .to_auth
                .fetch_add(*n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.stats
                .to_auth
                .fetch_add(*n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connections held per user, against a cap.
#[derive(Debug)]
struct UserSlots {
    max: usize,
    held: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One user's connection slot; given back on drop.
struct UserSlot {
    slots: Arc<UserSlots>,
    user: String,
}

impl UserSlots {
    fn acquire(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = held.entry(user.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            slots: self.clone(),
            user: user.to_string(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.user);
            }
        }
    }
}

impl TunnelServer {
    /// A server presenting `config`'s host certificate and forwarding transport dials to
    /// `auth_addr`; each user may hold [`DEFAULT_MAX_PER_USER`] connections at once.
    pub fn new(config: tp_ssh::ServerConfig, auth_addr: HostPort) -> Self {
        Self {
            config: Arc::new(config),
            auth_addr,
            users: Arc::new(UserSlots {
                max: DEFAULT_MAX_PER_USER,
                held: std::sync::Mutex::default(),
            }),
            stats: Arc::default(),
        }
    }

    /// The server's counters (shared by its clones).
    pub fn stats(&self) -> Arc<TunnelStats> {
        self.stats.clone()
    }

    /// Caps the connections one user may hold at once at `max`; a connection over the
    /// cap has its channel refused with a message saying so, and is closed.
    #[must_use]
    pub fn with_max_per_user(mut self, max: usize) -> Self {
        self.users = Arc::new(UserSlots {
            max,
            held: std::sync::Mutex::default(),
        });
        self
    }

    /// Serves one connection until the client goes away: SSH handshake and user
    /// authentication, the Teleport roles check, then every channel the client opens.
    pub async fn serve<S>(&self, stream: S, peer: Option<IpAddr>) -> Result<(), tp_ssh::Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (session, who) = tp_ssh::Server::accept(stream, self.config.clone(), peer).await?;
        // Teleport refuses user certificates without roles on the tunnel.
        let has_roles = who.certificate.as_ref().is_some_and(|c| {
            c.extensions()
                .get("teleport-roles")
                .is_some_and(|r| !r.is_empty())
        });
        if !has_roles {
            tracing::info!(user = %who.user, "tunnel: certificate has no teleport-roles extension");
            session.disconnect();
            return Err(tp_ssh::Error::Auth(
                "certificate missing roles in \"teleport-roles\" extension".into(),
            ));
        }
        // The Teleport user is the certificate's key ID; the SSH login varies per
        // certificate (a user without logins gets a random one).
        let user = who
            .certificate
            .as_ref()
            .map_or(who.user.as_str(), |c| c.key_id());
        let Some(_slot) = self.users.acquire(user) else {
            let msg = format!(
                "too many tunnel connections for user {user:?} (at most {} at once)",
                self.users.max
            );
            tracing::info!(
                user,
                max = self.users.max,
                "tunnel: per-user connection limit reached"
            );
            // Say why on the channel the client opens next (its dial error shows it).
            if let Ok(Some(incoming)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), session.next_channel())
                    .await
            {
                let _ = incoming.reject(4, &msg);
            }
            session.disconnect();
            return Err(tp_ssh::Error::Auth(msg));
        };
        self.stats
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        while let Some(incoming) = session.next_channel().await {
            let auth = self.auth_addr.clone();
            let stats = self.stats.clone();
            tokio::spawn(async move {
                let result = serve_transport(incoming, |req: DialRequest| async move {
                    if req.address != REMOTE_AUTH_SERVER {
                        return Err(format!(
                            "failed connecting to {}: this proxy only reaches its Auth server ({REMOTE_AUTH_SERVER})",
                            req.address
                        ));
                    }
                    let tcp = tokio::net::TcpStream::connect((auth.host.as_str(), auth.port))
                        .await
                        .map_err(|e| format!("failed connecting to the Auth server at {auth}: {e}"))?;
                    // TLS handshakes cross this hop in small records: no Nagle delay.
                    let _ = tcp.set_nodelay(true);
                    Ok(Counted { inner: tcp, stats })
                })
                .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "tunnel: transport channel ended");
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_io::head_and_payload;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// The hop to the Auth server takes vectored writes whole and counts what they
    /// carried.
    #[tokio::test]
    async fn counted_passes_vectored_writes_through_and_counts_them() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        let stats = Arc::new(TunnelStats::default());
        let mut counted = Counted {
            inner: tcp,
            stats: stats.clone(),
        };
        assert!(counted.is_write_vectored());
        assert_eq!(
            counted.write_vectored(&head_and_payload()).await.unwrap(),
            11
        );
        assert_eq!(stats.bytes_to_auth(), 11);
        let mut got = [0u8; 11];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"headpayload");
    }
}
