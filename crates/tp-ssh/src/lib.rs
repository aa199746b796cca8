//! A small SSH implementation for Teleport's reverse-tunnel profile.
//!
//! **One job:** speak enough SSH (RFC 4253/4252/4254 with strict KEX, certificate
//! authentication and channels or requests of any type) for Teleport's tunnel, whose
//! `teleport-transport` channel and `teleport-transport-dial` request no published Rust SSH
//! crate can open or answer. The core is sans-IO (bytes in, bytes and events out, time
//! passed in); a thin tokio driver runs it.
//!
//! **Never depends on:** any other tp crate, tonic, or an SSH crate's protocol engine.
//! Cryptography comes from the same provider rustls uses (ring); certificates from `ssh-key`.
//!
//! # Layers
//!
//! - [`Connection`]: the sans-IO core for either role. Feed it bytes with
//!   [`Connection::handle_input`], take bytes to send with [`Connection::poll_transmit`],
//!   take [`Event`]s with [`Connection::poll_event`], and drive its timers with
//!   [`Connection::poll_timeout`] / [`Connection::handle_timeout`].
//! - [`Client::connect`] / [`Server::accept`]: the tokio driver, giving a [`Session`] whose
//!   [`Channel`]s are `AsyncRead + AsyncWrite`.
//! - [`teleport`]: the tunnel profile on top ([`teleport::dial_transport`] and
//!   [`teleport::serve_transport`]).
//!
//! # Example
//!
//! A client reaching a server's "Auth server" through `teleport-transport`, with user and
//! host certificates:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tp_ssh::ssh_key::certificate::{Builder, CertType};
//! use tp_ssh::ssh_key::{rand_core::OsRng, Algorithm, Certificate, PrivateKey};
//! use tp_ssh::teleport::{self, DialRequest};
//! use tp_ssh::{fingerprint, Client, ClientConfig, KeyPair, Server, ServerConfig};
//!
//! fn issue(ca: &PrivateKey, key: &PrivateKey, kind: CertType, principal: &str) -> Certificate {
//!     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//!     let mut b = Builder::new_with_random_nonce(&mut OsRng, key.public_key().key_data().clone(), now - 60, now + 3600).unwrap();
//!     b.cert_type(kind).unwrap();
//!     b.valid_principal(principal).unwrap();
//!     b.sign(ca).unwrap()
//! }
//! let key = || PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
//! let (user_ca, host_ca, user_key, host_key) = (key(), key(), key(), key());
//!
//! let host = KeyPair::new(&host_key)?.with_certificate(issue(&host_ca, &host_key, CertType::Host, "proxy"))?;
//! let server_config = ServerConfig::new(Arc::new(host), vec![fingerprint(user_ca.public_key())]);
//! let user = KeyPair::new(&user_key)?.with_certificate(issue(&user_ca, &user_key, CertType::User, "alice"))?;
//! let mut client_config = ClientConfig::new("alice", Arc::new(user));
//! client_config.trusted_host_cas = vec![fingerprint(host_ca.public_key())];
//!
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let server = tokio::spawn(async move {
//!     let (session, _who) = Server::accept(b, Arc::new(server_config), None).await?;
//!     let incoming = session.next_channel().await.expect("a channel");
//!     // Dial the "Auth server": here an in-memory echo.
//!     teleport::serve_transport(incoming, |_request| async {
//!         let (near, mut far) = tokio::io::duplex(1024);
//!         tokio::spawn(async move {
//!             let mut buf = [0u8; 4];
//!             far.read_exact(&mut buf).await.unwrap();
//!             far.write_all(&buf).await.unwrap();
//!         });
//!         Ok::<_, String>(near)
//!     })
//!     .await
//! });
//!
//! let session = Client::connect(a, Arc::new(client_config)).await?;
//! let mut stream = teleport::dial_transport(&session, &DialRequest::auth_server()).await?;
//! stream.write_all(b"ping").await?;
//! let mut reply = [0u8; 4];
//! stream.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"ping");
//! drop(stream);
//! server.await??;
//! # Ok(())
//! # }
//! ```

mod cipher;
mod config;
mod conn;
mod driver;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod kex;
mod keys;
mod msg;
#[cfg(test)]
mod proptests;
pub mod splice;
pub mod teleport;
mod wire;

pub use cipher::CipherAlg;
pub use config::{ClientConfig, ServerConfig, TransportConfig};
pub use conn::{AuthInfo, ChannelId, Connection, Event};
pub use driver::{Channel, ChannelRequest, Client, IncomingChannel, Server, Session};
pub use error::{Error, disconnect};
pub use kex::KexAlg;
pub use keys::{KeyPair, fingerprint};
/// The `ssh-key` crate this API uses for keys and certificates.
pub use ssh_key;
