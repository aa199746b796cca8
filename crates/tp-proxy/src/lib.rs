//! The tp Proxy.
//!
//! **One job:** stand in front of an isolated Auth server: the HTTPS web endpoint
//! (discovery, password login, invite page), the SSH reverse-tunnel server, and ALPN
//! routing of the web port to the Auth server.
//!
//! **Never depends on:** `tp-auth` or `tp-backend` directly; it talks to the Auth server as
//! a client, through `tp-client` and `tp-transport`.
//!
//! # Modules
//!
//! - [`web`]: the HTTPS API — discovery JSON and Teleport-shaped JSON errors.
//! - [`invite`]: the invite and password-reset pages (no scripts, no external assets).
//! - [`login`]: password login (`/webapi/ssh/certs`) with per-user and per-address limits.
//! - [`port`]: the web port, routed by ALPN: Auth connections forwarded untouched,
//!   everything else served by [`web`].

pub mod invite;
pub mod login;
pub mod port;
pub mod tunnel;
pub mod web;

/// The Teleport version tp's proxy reports to clients (`server_version`): the release
/// line of the reference API tp is wire-compatible with.
pub const TELEPORT_COMPAT_VERSION: &str = "17.0.0";

/// The oldest Teleport client version tp's proxy accepts (`min_client_version`).
pub const MIN_CLIENT_VERSION: &str = "16.0.0";
