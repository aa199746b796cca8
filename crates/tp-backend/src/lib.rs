//! Storage for the tp cluster.
//!
//! **One job:** a `Backend` trait (get, range, create, put, compare-and-swap, delete,
//! expiry, watch with revisions) with SQLite as the embedded default and an in-memory
//! implementation for tests, plus a conformance suite every implementation must pass.
//!
//! **Never depends on:** any other tp crate. It stores opaque values under keys; it knows
//! nothing of roles, users or protobuf.
