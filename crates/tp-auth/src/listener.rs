//! The Auth server's mutual-TLS listener for tonic.
//!
//! Every connection must present a client certificate chained to one of the trusted
//! CAs (the cluster's user and host CAs) over TLS 1.2 or 1.3; the server selects ALPN
//! `h2`, also when the client offers `teleport-auth@…` first (connections a proxy
//! forwards untouched). TLS handshakes run concurrently, each under a deadline, so a
//! slow or silent client cannot hold up others. The peer's certificate chain reaches
//! every request as [`PeerInfo`] in its extensions.
//!
//! Refusals reach the client as TLS alerts: `certificate_required` (no certificate),
//! `certificate_expired`, and `unknown_ca` for a certificate no cluster CA signed —
//! including one signed by another CA of the same name, or altered after signing. Bytes
//! that are not TLS close the connection at once; nothing else is affected.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    self, CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Handshakes in flight at once; more wait for the accept loop.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// Builds the Auth server's TLS configuration: its own certificate chain and key, client
/// certificates verified against `client_cas` when given (a client without one may only
/// join, see `crate::service`), ALPN `h2`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: Vec<CertificateDer<'static>>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in client_cas {
        roots.add(ca)?;
    }
    // A client without a certificate may connect: its calls are refused (AccessDenied)
    // except the two a joining host needs, as Teleport's Auth server does.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(format!("client certificate verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(ClusterCaVerifier(verifier)))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Verifies client certificates with webpki, but answers a certificate whose signature
/// does not verify under a trusted CA — one from another cluster's CA of the same name,
/// or one altered after signing — as `UnknownIssuer` (TLS alert `unknown_ca`: "not signed
/// by a CA this server trusts"), not `BadSignature` (alert `decrypt_error`, which reads
/// like a key or cipher problem). All CAs of a Teleport cluster share its name, so
/// webpki finds a same-named issuer and reports a bad signature for both.
#[derive(Debug)]
struct ClusterCaVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ClusterCaVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
                    tracing::info!(
                        "client certificate signature does not verify under the cluster's CAs \
                         (another cluster's CA, or an altered certificate)"
                    );
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What the server knows about the peer of a request.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's socket address.
    pub remote_addr: Option<SocketAddr>,
    /// The verified client certificate chain, leaf first.
    pub certs: Arc<Vec<CertificateDer<'static>>>,
}

/// The most plaintext a connection holds back for one write; a larger write goes
/// through at once.
const MAX_COALESCED: usize = 64 * 1024;

/// The most scheduler turns a flush waits for more writes to join it.
const MAX_FLUSH_TURNS: u8 = 4;

/// The most buffer capacity a connection keeps once its held-back writes are out.
const KEPT_CAPACITY: usize = 16 * 1024;

/// An accepted, handshaken connection.
///
/// Writes coalesce: what HTTP/2 writes is kept until it flushes, and the flush lets
/// the runtime's other ready tasks run before the bytes go out (it wakes its own task
/// and returns `Pending`): once, then again while each turn brought more writes, at
/// most four turns. Under load, the responses of handlers that finish
/// meanwhile leave in the same TLS record and the same system call, instead of one
/// each; alone, a response waits one scheduler turn.
#[derive(Debug)]
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    /// Plaintext written and not yet handed to TLS, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// How many times the pending flush has let the other tasks run, and how much
    /// was held back the last time.
    turns: u8,
    held_at_turn: usize,
}

impl TlsConnection {
    /// Hands the held-back plaintext to TLS (which writes it to the socket).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.out.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.stream).poll_write(cx, &self.out[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        if self.out.capacity() > KEPT_CAPACITY {
            // An idle connection keeps no large buffer from a burst.
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Poll::Ready(Ok(()))
    }

    /// Holds back `bufs` (all of them) unless they would take the held-back plaintext
    /// past [`MAX_COALESCED`]: then what is held goes first, and a write that large on
    /// its own goes straight through.
    fn poll_hold(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.out.len() + len > MAX_COALESCED {
            std::task::ready!(self.poll_drain(cx))?;
            if len > MAX_COALESCED {
                return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            self.out.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_hold(cx, &[std::io::IoSlice::new(buf)])
    }

    // h2 hands over a frame head and its payload as two slices: both are held back
    // together, to leave in one record and one write.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_hold(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.sent < self.out.len() {
            let held = self.out.len() - self.sent;
            if self.turns == 0 || (self.turns < MAX_FLUSH_TURNS && held > self.held_at_turn) {
                // A task that wakes itself goes to the back of the run queue: the
                // handlers ready now run before this flush does. Another turn while
                // each brings more.
                self.turns += 1;
                self.held_at_turn = held;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            std::task::ready!(self.poll_drain(cx))?;
        }
        self.turns = 0;
        self.held_at_turn = 0;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts TCP connections on `listener`, runs each TLS handshake on its own task under
/// [`HANDSHAKE_TIMEOUT`], and yields the connections that complete it — the stream to
/// give tonic's `serve_with_incoming`. Failed handshakes (no client certificate, a
/// foreign CA, an expired certificate, bytes that are not TLS) are logged and dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<std::io::Result<TlsConnection>> {
    let (tx, rx) = mpsc::channel(MAX_PENDING_HANDSHAKES);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: report and stop accepting.
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let certs = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(<[_]>::to_vec)
                            .unwrap_or_default();
                        let info = PeerInfo {
                            remote_addr: Some(addr),
                            certs: Arc::new(certs),
                        };
                        let _ = tx
                            .send(Ok(TlsConnection {
                                stream,
                                info,
                                out: Vec::new(),
                                sent: 0,
                                turns: 0,
                                held_at_turn: 0,
                            }))
                            .await;
                    }
                    Ok(Err(e)) => tracing::info!(peer = %addr, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
