//! The byte-stream dialers: TCP (through an HTTP `CONNECT` proxy when one applies),
//! TLS on top, and the two TLS modes to the Auth server — direct, and TLS routing
//! through the proxy's web port.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::addr::HostPort;
use crate::alpn;
use crate::proxy_env::{HttpProxy, ProxyMatcher};
use crate::rewind::Rewind;

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
    /// The TLS handshake failed (certificate, alert, protocol), or the server refused the
    /// client certificate right after it.
    Tls {
        /// The address dialled.
        addr: String,
        /// What the failure most likely means, in words (see [`explain_tls`]).
        reason: String,
        /// The TLS error (alerts name their reason).
        source: io::Error,
    },
    /// The server answered, but not with TLS: a plain HTTP server, an SSH port, ...
    NotTls {
        /// The address dialled.
        addr: String,
        /// What it answered instead, as far as it can be recognised.
        answered: String,
    },
    /// Web-proxy discovery (`/webapi/find`) failed.
    Discovery {
        /// The web address asked.
        addr: String,
        /// Why (the request, or the answer).
        source: Box<crate::web::FindError>,
    },
    /// Discovery worked, but the proxy has TLS routing off: its Auth server is reachable
    /// only through the SSH reverse tunnel, and the credential carries no SSH material.
    NeedsTunnel {
        /// The web address asked.
        addr: String,
        /// The reverse-tunnel address the proxy advertises.
        tunnel: String,
    },
    /// Discovery worked, the proxy has TLS routing off, and dialling the reverse tunnel it
    /// advertises failed.
    AdvertisedTunnel {
        /// The web address asked.
        addr: String,
        /// The reverse-tunnel address the proxy advertises.
        tunnel: String,
        /// Why the tunnel failed.
        source: Box<Self>,
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
    /// The credential trusts no SSH host CA, so no proxy's host certificate can be
    /// verified (nothing is sent).
    NoSshHostCa {
        /// The tunnel address that would have been dialled.
        addr: String,
    },
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
            Self::Tls { addr, reason, .. } => {
                write!(f, "TLS handshake with {addr} failed: {reason}")
            }
            Self::NotTls { addr, answered } => {
                write!(f, "{addr} does not speak TLS: it answered {answered}")
            }
            Self::Discovery { source, .. } => write!(f, "{source}"),
            Self::NeedsTunnel { addr, tunnel } => write!(
                f,
                "the proxy at {addr} has TLS routing off, so its Auth server is reachable only \
                 through the reverse tunnel at {tunnel}, which needs an SSH certificate this \
                 credential does not carry; use an identity file or a profile, or pass the \
                 Auth server's address (port 3025) instead"
            ),
            Self::AdvertisedTunnel {
                addr,
                tunnel,
                source,
            } => write!(
                f,
                "the proxy at {addr} has TLS routing off; through the reverse tunnel it \
                 advertises at {tunnel}: {source}"
            ),
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
            Self::NoSshHostCa { addr } => write!(
                f,
                "SSH tunnel to {addr}: the credential trusts no SSH host CA, so the proxy \
                 cannot be verified (an identity file lists them as @cert-authority lines, \
                 a profile in known_hosts)"
            ),
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Tcp { source, .. } | Self::Tls { source, .. } => Some(source),
            Self::Ssh { source, .. } => Some(source),
            Self::Discovery { source, .. } => Some(source.as_ref()),
            Self::AdvertisedTunnel { source, .. } => Some(source.as_ref()),
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
            reason: explain_tls(&source, Peer::Auth),
            source,
        })
}

/// What a TLS handshake was talking to, so a failure can be explained in its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// An Auth server, directly.
    Auth,
    /// A proxy's web port that forwards the handshake to its Auth server (TLS routing).
    RoutingProxy,
    /// A proxy's web API (discovery, login).
    Web,
}

/// The bytes of the first records a server sent, kept so that a failed handshake can say
/// what answered instead of TLS.
const SNIFF_BYTES: usize = 64;

/// Records the first [`SNIFF_BYTES`] read from the inner stream.
#[derive(Debug)]
struct Sniff {
    inner: BoxedStream,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
    full: bool,
}

impl AsyncRead for Sniff {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.full && buf.filled().len() > before {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let room = SNIFF_BYTES - seen.len();
            let new = &buf.filled()[before..];
            seen.extend_from_slice(&new[..new.len().min(room)]);
            let full = seen.len() >= SNIFF_BYTES;
            drop(seen);
            self.full = full;
        }
        r
    }
}

impl AsyncWrite for Sniff {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Names what a non-TLS answer is: plain HTTP, SSH, or unknown bytes.
fn describe_plaintext(seen: &[u8]) -> Option<String> {
    // A TLS record starts with a content type of 20..=24 and version 3.x.
    if seen.is_empty() || (matches!(seen[0], 20..=24) && seen.get(1) == Some(&3)) {
        return None;
    }
    let first_line: String = String::from_utf8_lossy(seen)
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    Some(if seen.starts_with(b"HTTP/") {
        format!("plain HTTP ({first_line:?}): this is an http:// service, not Teleport's TLS port")
    } else if seen.starts_with(b"SSH-") {
        format!("SSH ({first_line:?}): this is an SSH port, not Teleport's TLS port")
    } else {
        format!("{} bytes that are not TLS ({first_line:?})", seen.len())
    })
}

/// A TLS handshake over a stream from [`tcp`], explaining a failure in terms of `peer`:
/// an answer that is not TLS at all is [`DialError::NotTls`] naming what it was.
pub async fn tls_explained(
    stream: BoxedStream,
    config: Arc<ClientConfig>,
    server_name: &str,
    addr: &str,
    peer: Peer,
) -> Result<TlsStream<BoxedStream>, DialError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| DialError::BadServerName(server_name.to_string()))?;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sniff: BoxedStream = Box::new(Sniff {
        inner: stream,
        seen: seen.clone(),
        full: false,
    });
    match TlsConnector::from(config).connect(name, sniff).await {
        Ok(s) => Ok(s),
        Err(source) => {
            let seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(answered) = describe_plaintext(&seen) {
                return Err(DialError::NotTls {
                    addr: addr.to_string(),
                    answered,
                });
            }
            Err(DialError::Tls {
                addr: addr.to_string(),
                reason: explain_tls(&source, peer),
                source,
            })
        }
    }
}

/// Says what a TLS failure most likely means for a Teleport client, followed by the TLS
/// library's own words.
pub fn explain_tls(e: &io::Error, peer: Peer) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    let rustls_error = e.get_ref().and_then(|i| i.downcast_ref::<R>());
    let meaning: Option<String> = match rustls_error {
        Some(R::InvalidCertificate(c)) => Some(match c {
            C::UnknownIssuer | C::BadSignature => {
                "the server's certificate is not signed by a CA this credential trusts \
                 (a credential from another cluster, or the wrong address?)"
                    .into()
            }
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => match peer {
                Peer::Web => {
                    "the proxy's web certificate is not valid for the address dialled".into()
                }
                _ => "the server's certificate does not name teleport.cluster.local: not a \
                      Teleport Auth server"
                    .into(),
            },
            _ => "the server's certificate was refused".into(),
        }),
        Some(R::AlertReceived(a)) => Some(match a {
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateRequired
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::DecryptError => "the server rejected our client certificate: it does not trust \
                 the CA that signed it (a credential from another cluster?)"
                .into(),
            A::CertificateExpired => "the server says our client certificate has expired".into(),
            A::CertificateRevoked => "the server says our client certificate is revoked".into(),
            A::NoApplicationProtocol => match peer {
                Peer::Web => "the server speaks none of the offered protocols (http/1.1)".into(),
                _ => "the server speaks none of the offered protocols (h2): not a Teleport Auth \
                      server"
                    .into(),
            },
            A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => {
                "the server and the client share no TLS version or cipher suite".into()
            }
            _ => "the server aborted the handshake".into(),
        }),
        Some(R::NoApplicationProtocol) => {
            Some("the server chose none of the offered protocols".into())
        }
        Some(R::InvalidMessage(_)) | Some(R::InappropriateMessage { .. }) => {
            Some("the server does not speak TLS as expected (wrong port?)".into())
        }
        _ => None,
    };
    let meaning = meaning.or_else(|| match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Some(match peer {
            Peer::RoutingProxy => "the proxy closed the connection before any Auth server \
                 answered: it could not reach its Auth server, or it does not route this \
                 cluster (is TLS routing on and the Auth server up?)"
                .into(),
            Peer::Auth => "the server closed the connection during the handshake (not a TLS \
                 server, or it refused us)"
                .into(),
            Peer::Web => "the server closed the connection during the handshake".into(),
        }),
        io::ErrorKind::TimedOut => Some("the handshake timed out".into()),
        _ => None,
    });
    match meaning {
        Some(m) => format!("{m} ({e})"),
        None => e.to_string(),
    }
}

/// How long [`await_acceptance`] waits for the server's first bytes before going ahead.
pub const ACCEPTANCE_WAIT: Duration = Duration::from_secs(3);

/// Waits for the first bytes a freshly dialled Auth server sends (an HTTP/2 server opens
/// with its SETTINGS frame), so that a client certificate the server refuses is a dial
/// error here — with TLS 1.3 the client's handshake ends before the server has checked
/// the certificate, and the refusal (an alert) only arrives with the first read. The
/// bytes read are replayed by the returned stream. A server that stays silent for
/// [`ACCEPTANCE_WAIT`] is taken as accepting.
pub async fn await_acceptance(
    mut tls: TlsStream<BoxedStream>,
    addr: &str,
    peer: Peer,
) -> Result<Rewind<TlsStream<BoxedStream>>, DialError> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(ACCEPTANCE_WAIT, tls.read(&mut buf)).await {
        Err(_) => Ok(Rewind::new(Vec::new(), tls)),
        Ok(Ok(0)) => Err(DialError::Tls {
            addr: addr.to_string(),
            reason: match peer {
                Peer::RoutingProxy => "the connection was closed right after the handshake: \
                     the Auth server behind the proxy refused us (our client certificate?)"
                    .into(),
                _ => "the server closed the connection right after the handshake: it refused \
                      our client certificate or is not a Teleport Auth server"
                    .into(),
            },
            source: io::Error::from(io::ErrorKind::UnexpectedEof),
        }),
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(Rewind::new(buf, tls))
        }
        Ok(Err(source)) => Err(DialError::Tls {
            addr: addr.to_string(),
            reason: explain_tls(&source, peer),
            source,
        }),
    }
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
    let tls = tls_explained(
        stream,
        Arc::new(config),
        server_name,
        &addr.to_string(),
        Peer::Auth,
    )
    .await?;
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
    let tls = tls_explained(
        stream,
        Arc::new(config),
        server_name,
        &web_addr.to_string(),
        Peer::RoutingProxy,
    )
    .await?;
    require_h2(&tls, web_addr)?;
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_io::{VectoredSink, head_and_payload, one_call_with_both};

    #[tokio::test]
    async fn sniff_passes_vectored_writes_through_whole() {
        let sink = VectoredSink::default();
        let calls = sink.calls.clone();
        let mut sniff = Sniff {
            inner: Box::new(sink),
            seen: Arc::default(),
            full: false,
        };
        assert!(sniff.is_write_vectored());
        assert_eq!(sniff.write_vectored(&head_and_payload()).await.unwrap(), 11);
        assert!(one_call_with_both(&calls), "{calls:?}");
    }
}
