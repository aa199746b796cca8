//! The typed Teleport Auth API client.
//!
//! **One job:** typed async methods for each RPC of the supported subset, with errors
//! mapped from gRPC status the way Teleport maps them ([`Error`], [`ErrorKind`]). This is
//! the SDK's API boundary: it re-exports the wire types a caller needs
//! ([`proto`], [`types`]), so one dependency suffices.
//!
//! **Never depends on:** the cluster crates (`tp-auth`, `tp-proxy`, `tp-backend`) or the
//! CLI.
//!
//! # Status
//!
//! [`Client::connect`] races every [`Target`] (direct mTLS to an Auth address, or TLS
//! routing through a proxy's web port) and keeps the first that completes, then checks
//! it with a Ping; [`Client::from_channel`] runs over any tonic
//! [`Channel`](tonic::transport::Channel). [`Config::credentials`] takes any `tp-creds`
//! loader and adds, per address, the direct, TLS-routing and discovery targets; the SSH
//! tunnel joins when `tp-ssh` lands.
//!
//! # Behaviour shared with Teleport's Go client
//!
//! - Empty names are refused locally with `BadParameter` before any call.
//! - `get_roles`/`get_users` page through `ListRoles`/`ListUsers`.
//! - `upsert_role` falls back to the legacy `UpsertRole` + `GetRole`, and the user calls
//!   fall back to the legacy `AuthService` calls, when the server answers
//!   `UNIMPLEMENTED`.
//!
//! # Connection loss
//!
//! The channel reconnects through the same racer when its connection breaks, so a
//! `Client` outlives Auth server restarts. Idempotent reads (ping, get, list) are retried
//! after a connection problem with jittered exponential backoff
//! ([`Config::read_retries`]); writes never are. [`Client::watch_events`] resubscribes by
//! itself and signals it with a fresh `INIT` event (re-read the state then). A broken
//! connection is [`ErrorKind::ConnectionProblem`], whatever gRPC code tonic gave it.

mod client;
mod error;
pub mod join;

pub use client::{Client, Config, DEFAULT_READ_RETRIES, UserTokenType, WATCH_RESUME_WINDOW};
pub use error::{Error, ErrorKind};
pub use tp_proto::{proto, types};
pub use tp_transport::connector::Target;
pub use tp_transport::proxy_env::ProxyMatcher;

/// The result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
