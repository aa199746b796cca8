//! The tp Auth server.
//!
//! **One job:** hold the certificate authorities, issue certificates, enforce Teleport's
//! RBAC, and serve the Auth gRPC services over mutual TLS, storing state in a
//! `tp-backend`.
//!
//! **Never depends on:** `tp-transport`, `tp-client`, `tp-proxy` or the CLI; it is a server
//! and must not pull client connection logic into its tree.
//!
//! # Modules
//!
//! - [`rbac`]: Teleport's access rules — rule and verb matching, `where` predicates,
//!   label selectors, the implicit, preset and built-in admin roles.

pub mod rbac;
