//! Teleport-compatible wire types.
//!
//! **One job:** the prost/tonic types and service stubs generated from `proto/` (same
//! package, service, method and message names and field numbers as Teleport, so gRPC paths
//! and bytes match), plus Teleport's YAML/JSON resource shapes with per-version defaults
//! and validation.
//!
//! **Never depends on:** any other tp crate, the network or the file system.
