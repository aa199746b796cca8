//! TLS routing on the proxy's web port: the ALPN protocol names, the cluster name
//! encoded in `teleport-auth@…`, and a sans-IO reader of the TLS ClientHello that lets
//! a router choose a route without consuming or decrypting anything.
//!
//! Both ends use this module: the client to build its ALPN list, the proxy to route.

/// ALPN for HTTP/2 (gRPC).
pub const H2: &str = "h2";
/// ALPN for HTTP/1.1.
pub const HTTP1: &str = "http/1.1";
/// The prefix of the Auth protocol: `teleport-auth@<hex(cluster)>.teleport.cluster.local`.
pub const AUTH_PREFIX: &str = "teleport-auth@";
/// The reverse tunnel over the web port.
pub const REVERSE_TUNNEL: &str = "teleport-reversetunnel";
/// The server name Teleport's clients and certificates use for the Auth server.
pub const CLUSTER_LOCAL: &str = "teleport.cluster.local";

/// The Auth ALPN protocol for `cluster`.
///
/// ```
/// assert_eq!(
///     tp_transport::alpn::auth_protocol("example.com"),
///     "teleport-auth@6578616d706c652e636f6d.teleport.cluster.local",
/// );
/// ```
pub fn auth_protocol(cluster: &str) -> String {
    format!("{AUTH_PREFIX}{}.{CLUSTER_LOCAL}", hex::encode(cluster))
}

/// The ALPN list a client offers to reach the Auth server through TLS routing: the
/// Auth protocol for `cluster`, then `h2`.
pub fn auth_client_protocols(cluster: &str) -> Vec<Vec<u8>> {
    vec![auth_protocol(cluster).into_bytes(), H2.as_bytes().to_vec()]
}

/// Why an encoded cluster name could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterNameError {
    /// The value is exactly `teleport.cluster.local`: no cluster is encoded.
    NotEncoded,
    /// The value does not end in `.teleport.cluster.local`.
    WrongSuffix(String),
    /// The prefix is not hexadecimal, or not UTF-8 once decoded.
    BadHex(String),
}

impl std::fmt::Display for ClusterNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotEncoded => write!(f, "no cluster name is encoded in {CLUSTER_LOCAL:?}"),
            Self::WrongSuffix(v) => write!(f, "{v:?} does not end in \".{CLUSTER_LOCAL}\""),
            Self::BadHex(v) => write!(f, "{v:?} is not a hex-encoded cluster name"),
        }
    }
}

impl std::error::Error for ClusterNameError {}

/// Decodes `<hex(cluster)>.teleport.cluster.local` (an SNI value, or an Auth ALPN
/// protocol with its `teleport-auth@` prefix removed), as Teleport's
/// `DecodeClusterName` does.
pub fn decode_cluster_name(value: &str) -> Result<String, ClusterNameError> {
    if value == CLUSTER_LOCAL {
        return Err(ClusterNameError::NotEncoded);
    }
    let encoded = value
        .strip_suffix(CLUSTER_LOCAL)
        .and_then(|p| p.strip_suffix('.'))
        .ok_or_else(|| ClusterNameError::WrongSuffix(value.to_string()))?;
    let bytes = hex::decode(encoded).map_err(|_| ClusterNameError::BadHex(value.to_string()))?;
    String::from_utf8(bytes).map_err(|_| ClusterNameError::BadHex(value.to_string()))
}

/// Where the proxy's web port sends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Forward the raw TLS stream to the Auth server of this cluster (the proxy does not
    /// terminate TLS).
    Auth {
        /// The cluster decoded from the protocol name.
        cluster: String,
    },
    /// Terminate TLS and hand the stream to the reverse-tunnel server.
    ReverseTunnel,
    /// Everything else: the web handler (HTTPS).
    Web,
}

/// Picks the route for a ClientHello's ALPN list (in the client's order of preference):
/// the first Teleport protocol decides, anything else goes to the web handler.
pub fn route(alpn: &[String]) -> Result<Route, ClusterNameError> {
    for p in alpn {
        if let Some(rest) = p.strip_prefix(AUTH_PREFIX) {
            return decode_cluster_name(rest).map(|cluster| Route::Auth { cluster });
        }
        if p == REVERSE_TUNNEL {
            return Ok(Route::ReverseTunnel);
        }
    }
    Ok(Route::Web)
}

/// What a ClientHello asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientHello {
    /// The SNI host name, if any.
    pub server_name: Option<String>,
    /// The ALPN protocols, in the client's order.
    pub alpn: Vec<String>,
}

/// Why the first bytes of a connection are not a usable TLS ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HelloError(pub String);

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a TLS ClientHello: {}", self.0)
    }
}

impl std::error::Error for HelloError {}

/// The most handshake bytes a ClientHello may take before it is refused (post-quantum
/// key shares make honest ones a few KiB).
pub const MAX_HELLO: usize = 64 * 1024;

/// Reads a ClientHello from the bytes received so far, without consuming them.
///
/// Returns `Ok(None)` when more bytes are needed (the caller reads more and calls
/// again with the longer buffer), `Ok(Some(hello))` once the whole ClientHello is
/// there (possibly spread over several TLS records), and an error when the bytes are
/// not TLS or the hello is malformed or too large.
///
/// ```
/// use tp_transport::alpn::peek_client_hello;
/// assert_eq!(peek_client_hello(&[0x16, 0x03]), Ok(None));
/// assert!(peek_client_hello(b"GET / HTTP/1.1\r\n").is_err());
/// ```
pub fn peek_client_hello(buf: &[u8]) -> Result<Option<ClientHello>, HelloError> {
    // Reassemble the handshake stream from TLS records.
    let mut handshake = Vec::new();
    let mut pos = 0;
    loop {
        if buf.len() < pos + 5 {
            return if buf.len() > pos && buf[pos] != 0x16 {
                Err(HelloError(format!(
                    "record type {:#04x}, expected a handshake (0x16)",
                    buf[pos]
                )))
            } else {
                Ok(None)
            };
        }
        let header = &buf[pos..pos + 5];
        if header[0] != 0x16 {
            return Err(HelloError(format!(
                "record type {:#04x}, expected a handshake (0x16)",
                header[0]
            )));
        }
        if header[1] != 0x03 {
            return Err(HelloError(format!(
                "record version {:#04x}{:02x}",
                header[1], header[2]
            )));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Err(HelloError(format!("record length {len}")));
        }
        if buf.len() < pos + 5 + len {
            return Ok(None);
        }
        handshake.extend_from_slice(&buf[pos + 5..pos + 5 + len]);
        pos += 5 + len;
        if handshake.len() >= 4 {
            if handshake[0] != 0x01 {
                return Err(HelloError(format!(
                    "handshake type {}, expected ClientHello (1)",
                    handshake[0]
                )));
            }
            let body_len = (usize::from(handshake[1]) << 16)
                | (usize::from(handshake[2]) << 8)
                | usize::from(handshake[3]);
            if body_len > MAX_HELLO {
                return Err(HelloError(format!(
                    "ClientHello of {body_len} bytes is too large"
                )));
            }
            if handshake.len() >= 4 + body_len {
                return parse_hello(&handshake[4..4 + body_len]).map(Some);
            }
        }
        if handshake.len() > MAX_HELLO + 4 {
            return Err(HelloError("ClientHello too large".into()));
        }
    }
}

/// A bounds-checked reader over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError(format!("truncated {what}")));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<usize, HelloError> {
        Ok(usize::from(self.take(1, what)?[0]))
    }

    fn u16(&mut self, what: &str) -> Result<usize, HelloError> {
        let b = self.take(2, what)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn vec8(&mut self, what: &str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(what)?;
        self.take(n, what)
    }

    fn vec16(&mut self, what: &str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(what)?;
        self.take(n, what)
    }
}

fn parse_hello(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader(body);
    r.take(2, "client version")?;
    r.take(32, "random")?;
    r.vec8("session id")?;
    r.vec16("cipher suites")?;
    r.vec8("compression methods")?;
    let mut hello = ClientHello::default();
    if r.0.is_empty() {
        return Ok(hello);
    }
    let mut exts = Reader(r.vec16("extensions")?);
    while !exts.0.is_empty() {
        let kind = exts.u16("extension type")?;
        let data = exts.vec16("extension")?;
        match kind {
            0 => {
                let mut list = Reader(Reader(data).vec16("server name list")?);
                while !list.0.is_empty() {
                    let name_type = list.u8("server name type")?;
                    let name = list.vec16("server name")?;
                    if name_type == 0 {
                        let name = std::str::from_utf8(name)
                            .map_err(|_| HelloError("server name is not UTF-8".into()))?;
                        hello.server_name = Some(name.to_string());
                    }
                }
            }
            16 => {
                let mut list = Reader(Reader(data).vec16("ALPN list")?);
                while !list.0.is_empty() {
                    let proto = list.vec8("ALPN protocol")?;
                    hello.alpn.push(String::from_utf8_lossy(proto).into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ClientHello as rustls writes it, for the routes a client asks for.
    fn rustls_hello(server_name: &str, alpn: &[&str]) -> Vec<u8> {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let name =
            rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("server name");
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("write hello");
        out
    }

    #[test]
    fn reads_sni_and_alpn_from_a_real_client_hello() {
        let cluster = "example.com";
        let protos = auth_client_protocols(cluster);
        let protos: Vec<&str> = protos
            .iter()
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect();
        let bytes = rustls_hello(CLUSTER_LOCAL, &protos);
        let hello = peek_client_hello(&bytes).unwrap().expect("complete");
        assert_eq!(hello.server_name.as_deref(), Some(CLUSTER_LOCAL));
        assert_eq!(hello.alpn, protos);
        assert_eq!(
            route(&hello.alpn),
            Ok(Route::Auth {
                cluster: cluster.into()
            })
        );
        // Every proper prefix asks for more bytes, never errs or guesses.
        for n in 0..bytes.len() {
            assert_eq!(
                peek_client_hello(&bytes[..n]),
                Ok(None),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn a_hello_split_across_records_is_reassembled() {
        let bytes = rustls_hello("proxy.example.com", &[REVERSE_TUNNEL]);
        let payload = &bytes[5..];
        let (a, b) = payload.split_at(payload.len() / 2);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[0x16, 0x03, 0x01]);
            split.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            split.extend_from_slice(part);
        }
        let hello = peek_client_hello(&split).unwrap().expect("complete");
        assert_eq!(route(&hello.alpn), Ok(Route::ReverseTunnel));
    }

    #[test]
    fn routes() {
        assert_eq!(route(&["h2".into()]), Ok(Route::Web));
        assert_eq!(route(&[]), Ok(Route::Web));
        assert_eq!(
            route(&[format!("{AUTH_PREFIX}zz.{CLUSTER_LOCAL}")]),
            Err(ClusterNameError::BadHex(format!("zz.{CLUSTER_LOCAL}")))
        );
        assert_eq!(
            decode_cluster_name(CLUSTER_LOCAL),
            Err(ClusterNameError::NotEncoded)
        );
        assert!(matches!(
            decode_cluster_name("6162.example.com"),
            Err(ClusterNameError::WrongSuffix(_))
        ));
    }

    #[test]
    fn non_tls_is_refused_at_once() {
        assert!(peek_client_hello(b"SSH-2.0-OpenSSH_9.6\r\n").is_err());
        assert!(peek_client_hello(&[0x17, 0x03, 0x03, 0x00, 0x10]).is_err());
        assert!(
            peek_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x00]).is_err(),
            "empty record"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = peek_client_hello(&bytes);
            let mut framed = vec![0x16, 0x03, 0x01];
            framed.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
            framed.extend_from_slice(&bytes);
            let _ = peek_client_hello(&framed);
        }

        #[test]
        fn cluster_names_round_trip(name in "\\PC{1,40}") {
            let p = auth_protocol(&name);
            prop_assert_eq!(route(&[p]), Ok(Route::Auth { cluster: name }));
        }
    }
}
