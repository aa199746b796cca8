//! The typed Teleport Auth API client.
//!
//! **One job:** `Client::connect` over any `tp-transport` mode with any `tp-creds` loader,
//! and typed async methods for each RPC of the supported subset, with errors mapped from
//! gRPC status the way Teleport maps them. This is the SDK's API boundary: it re-exports
//! what a user needs so one dependency suffices.
//!
//! **Never depends on:** the cluster crates (`tp-auth`, `tp-proxy`, `tp-backend`) or the
//! CLI.
