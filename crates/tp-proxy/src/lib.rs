//! The tp Proxy.
//!
//! **One job:** stand in front of an isolated Auth server: the HTTPS web endpoint
//! (discovery, password login, invite page), the SSH reverse-tunnel server, and ALPN
//! routing of the web port to the Auth server.
//!
//! **Never depends on:** `tp-auth` or `tp-backend` directly; it talks to the Auth server as
//! a client, through `tp-client` and `tp-transport`.
