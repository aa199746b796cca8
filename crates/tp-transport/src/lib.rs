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
//!
//! # Modules
//!
//! - [`addr`]: `host[:port]` parsing with Teleport's default and override port rules.
//! - [`discovery`]: the `/webapi/ping` and `/webapi/find` JSON, reading it safely ("this
//!   is not a Teleport proxy"), and the tunnel address derived from it.
//! - [`alpn`]: TLS routing — protocol names, the encoded cluster name, and a sans-IO
//!   ClientHello reader for the proxy's router.
//! - [`dial`]: TCP (through HTTP `CONNECT` when a proxy applies), TLS, and the direct and
//!   TLS-routing modes to the Auth server, with errors that name what failed and what it
//!   most likely means (a plain HTTP or SSH answer, an untrusted CA, a refused client
//!   certificate, a proxy that cannot reach its Auth server).
//! - [`web`]: a small HTTPS/1.1 client for the proxy's web API; [`web::WebClient::find`]
//!   is discovery (`/webapi/find`, falling back to `/webapi/ping`).
//! - [`connector`]: a tower `Service<Uri>` that races the targets (direct, TLS routing,
//!   discovery then TLS routing) on every call, for tonic's
//!   `Endpoint::connect_with_connector` (and reconnects).
//! - [`race`]: every candidate dial at once under one deadline; the first success wins.
//! - [`rewind`]: the server half of TLS routing — read the ClientHello, then replay it.
//! - [`proxy_env`]: `HTTPS_PROXY`/`NO_PROXY` as Teleport's Go client reads them.

pub mod addr;
pub mod alpn;
pub mod connector;
pub mod danger;
pub mod dial;
pub mod discovery;
pub mod proxy_env;
pub mod race;
pub mod rewind;
#[cfg(test)]
mod test_io;
pub mod tunnel;
pub mod web;
