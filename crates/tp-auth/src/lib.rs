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
//! - [`audit`]: the audit log — an event for every mutating call and certificate
//!   issued, successful or not, stored under `/audit/` in time order.
//! - [`bootstrap`]: first start of a cluster's storage (name, CAs, preset roles); idempotent.
//! - [`ca`]: the user and host CAs (X.509 + SSH), host certificates, stripping secrets.
//! - [`listener`]: the mutual-TLS listener for tonic (concurrent handshakes under a
//!   deadline, ALPN `h2`, the peer's certificate chain in every request).
//! - [`server`]: the services assembled on the listener ([`server::serve`]), with
//!   over-limit requests answered `RESOURCE_EXHAUSTED` as Go's gRPC does.
//! - [`identity`]: the identity in a client certificate, attributed to the user or host CA.
//! - [`service`]: the gRPC services (ping, roles, users, join tokens, cluster name),
//!   every call authorised for the caller its certificate names.
//! - [`store`]: resources by kind and name with revisions, expiry and a change stream;
//!   [`store::BackendStore`] keeps them in a `tp-backend` backend (SQLite or memory).
//! - [`password`]: argon2id password hashes and Teleport's length rules.
//! - [`usercert`]: user certificates — X.509 with every role and login, OpenSSH with
//!   Teleport's extensions.
//! - [`rbac`]: Teleport's access rules — rule and verb matching, `where` predicates,
//!   label selectors, the implicit, preset and built-in admin roles.

pub mod audit;
pub mod bootstrap;
pub mod ca;
pub mod identity;
pub mod listener;
pub mod password;
pub mod rbac;
pub mod server;
pub mod service;
pub mod store;
pub mod usercert;
