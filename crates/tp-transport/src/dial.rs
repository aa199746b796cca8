//! The byte-stream dialers: TCP (through an HTTP `CONNECT` proxy when one applies),
//! TLS on top, and the two TLS modes to the Auth server — direct, and TLS routing
//! through the proxy's web port.

use std::fmt;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::addr::HostPort;
use crate::alpn;
use crate::proxy_env::{HttpProxy, ProxyMatcher};

/// Any connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + fmt::Debug> Stream for T {}

/// A boxed byte stream, whatever carries it (TCP, a proxy tunnel, an SSH channel).
pub type BoxedStream = Box<dyn Stream>;

/// Why a dial failed, in terms a person can act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum DialError {
    /// The TCP connection failed (refused, unreachable, reset).
    Tcp {
        /// The address dialled.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// The HTTP proxy refused or failed the `CONNECT`.
    Proxy {
        /// The proxy.
        proxy: String,
        /// What it said.
        reason: String,
    },
    /// The TLS handshake failed (certificate, alert, protocol).
    Tls {
        /// The address dialled.
        addr: String,
        /// The TLS error (alerts name their reason).
        source: io::Error,
    },
    /// The server completed TLS but did not agree to HTTP/2 (not a Teleport Auth server,
    /// or a proxy without TLS routing).
    NoH2 {
        /// The address dialled.
        addr: String,
        /// The protocol the server chose, if any.
        negotiated: Option<String>,
    },
    /// The server name for TLS is not a valid DNS name or IP.
    BadServerName(String),
    /// The SSH tunnel failed: handshake, host certificate, user authentication, or the
    /// proxy refused the transport dial (its message is kept).
    Ssh {
        /// The tunnel address dialled.
        addr: String,
        /// The SSH error.
        source: tp_ssh::Error,
    },
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Self::Proxy { proxy, reason } => write!(f, "HTTP proxy {proxy}: {reason}"),
            Self::Tls { addr, source } => write!(f, "TLS handshake with {addr} failed: {source}"),
            Self::NoH2 { addr, negotiated } => match negotiated {
                Some(p) => write!(
                    f,
                    "{addr} negotiated {p:?} instead of h2: not a Teleport Auth endpoint"
                ),
                None => write!(
                    f,
                    "{addr} negotiated no application protocol: not a Teleport Auth endpoint (or TLS routing is off)"
                ),
            },
            Self::BadServerName(n) => write!(f, "invalid TLS server name {n:?}"),
            Self::Ssh { addr, source } => write!(f, "SSH tunnel to {addr}: {source}"),
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Tcp { source, .. } | Self::Tls { source, .. } => Some(source),
            Self::Ssh { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The most bytes of a proxy's `CONNECT` response header accepted.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

/// Opens TCP to `addr`, through the HTTP proxy `matcher` picks for it, if any.
pub async fn tcp(addr: &HostPort, matcher: &ProxyMatcher) -> Result<BoxedStream, DialError> {
    match matcher.proxy_for(&addr.host, addr.port) {
        None => {
            let s = TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .map_err(|source| DialError::Tcp {
                    addr: addr.to_string(),
                    source,
                })?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Some(proxy) => {
            let s = TcpStream::connect((proxy.addr.host.as_str(), proxy.addr.port))
                .await
                .map_err(|source| DialError::Tcp {
                    addr: format!("proxy {}", proxy.addr),
                    source,
                })?;
            let _ = s.set_nodelay(true);
            if proxy.scheme == "https" {
                return Err(DialError::Proxy {
                    proxy: proxy.addr.to_string(),
                    reason: "TLS to the proxy itself (https://) is not supported yet; use http://"
                        .into(),
                });
            }
            Ok(Box::new(http_connect(s, proxy, addr).await?))
        }
    }
}

/// Asks an HTTP proxy for a tunnel to `target` with `CONNECT` and returns the stream
/// once the proxy answers 2xx.
pub async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    proxy: &HttpProxy,
    target: &HostPort,
) -> Result<S, DialError> {
    use base64::Engine as _;
    let fail = |reason: String| DialError::Proxy {
        proxy: proxy.addr.to_string(),
        reason,
    };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| fail(format!("sending CONNECT: {e}")))?;
    // Read the response header byte by byte so no tunnelled byte is consumed.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_RESPONSE {
            return Err(fail("response header too large".into()));
        }
        let n = stream
            .read(&mut byte)
            .await
            .map_err(|e| fail(format!("reading the CONNECT response: {e}")))?;
        if n == 0 {
            return Err(fail("closed the connection during CONNECT".into()));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..300).contains(&c) => Ok(stream),
        Some(407) => Err(fail(
            "proxy authentication required (407); put user:password in HTTPS_PROXY".into(),
        )),
        _ => Err(fail(format!(
            "CONNECT to {target} refused: {status_line:?}"
        ))),
    }
}

/// Runs a TLS client handshake over `stream` with `config`, naming the server
/// `server_name` (SNI and certificate check).
pub async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: Arc<ClientConfig>,
    server_name: &str,
    addr_for_errors: &str,
) -> Result<TlsStream<S>, DialError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| DialError::BadServerName(server_name.to_string()))?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|source| DialError::Tls {
            addr: addr_for_errors.to_string(),
            source,
        })
}

pub(crate) fn require_h2<S>(tls: &TlsStream<S>, addr: &HostPort) -> Result<(), DialError> {
    let negotiated = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    if negotiated.as_deref() == Some(alpn::H2) {
        Ok(())
    } else {
        Err(DialError::NoH2 {
            addr: addr.to_string(),
            negotiated,
        })
    }
}

/// Direct mode: TLS to the Auth server at `addr` with the credential's client
/// configuration (which names `teleport.cluster.local` and offers `h2`).
pub async fn direct(
    addr: &HostPort,
    config: Arc<ClientConfig>,
    server_name: &str,
    matcher: &ProxyMatcher,
) -> Result<TlsStream<BoxedStream>, DialError> {
    let mut config = (*config).clone();
    config.alpn_protocols = vec![alpn::H2.as_bytes().to_vec()];
    let stream = tcp(addr, matcher).await?;
    let tls = tls(stream, Arc::new(config), server_name, &addr.to_string()).await?;
    require_h2(&tls, addr)?;
    Ok(tls)
}

/// TLS-routing mode: TLS to the proxy's web port offering
/// `teleport-auth@<hex(cluster)>.teleport.cluster.local` then `h2`; the proxy forwards
/// the still-encrypted stream to the Auth server, which completes the handshake.
pub async fn tls_routing(
    web_addr: &HostPort,
    cluster: &str,
    config: Arc<ClientConfig>,
    server_name: &str,
    matcher: &ProxyMatcher,
) -> Result<TlsStream<BoxedStream>, DialError> {
    let mut config = (*config).clone();
    config.alpn_protocols = alpn::auth_client_protocols(cluster);
    let stream = tcp(web_addr, matcher).await?;
    let tls = tls(stream, Arc::new(config), server_name, &web_addr.to_string()).await?;
    require_h2(&tls, web_addr)?;
    Ok(tls)
}
