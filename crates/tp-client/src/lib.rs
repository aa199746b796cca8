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
//! [`Client`] runs over any tonic [`Channel`](tonic::transport::Channel)
//! ([`Client::from_channel`]). `Client::connect` — racing every address, credential and
//! connection mode through `tp-transport`, with reconnects and reloaded credentials —
//! is being built under the transport and client issue.
//!
//! # Behaviour shared with Teleport's Go client
//!
//! - Empty names are refused locally with `BadParameter` before any call.
//! - `get_roles`/`get_users` page through `ListRoles`/`ListUsers`.
//! - `upsert_role` falls back to the legacy `UpsertRole` + `GetRole`, and the user calls
//!   fall back to the legacy `AuthService` calls, when the server answers
//!   `UNIMPLEMENTED`.

mod client;
mod error;

pub use client::{Client, UserTokenType};
pub use error::{Error, ErrorKind};
pub use tp_proto::{proto, types};

/// The result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
