//! Byte streams to a Teleport Auth server.
//!
//! **One job:** produce an authenticated, mutually-TLS-protected byte stream to the Auth
//! server, directly, through the Proxy's SSH reverse tunnel, after web-proxy discovery, or
//! by TLS routing on the Proxy's web port — and the server halves of the tunnel dial and
//! ALPN routing that the Proxy reuses, so each wire rule exists once.
//!
//! **Never depends on:** tonic, prost or any RPC message type (it hands `tp-client` a
//! connector), nor any tp server crate. Inside the workspace it uses only `tp-creds` and
//! `tp-ssh`.
