//! A small SSH implementation for Teleport's reverse-tunnel profile.
//!
//! **One job:** speak enough SSH (RFC 4253/4252/4254 with strict KEX, certificate
//! authentication and channels or requests of any type) for Teleport's tunnel, whose
//! `teleport-transport` channel and `teleport-transport-dial` request no published Rust SSH
//! crate can open or answer. The core is sans-IO (bytes in, bytes and events out, time
//! passed in); a thin tokio driver runs it.
//!
//! **Never depends on:** any other tp crate, tonic, or an SSH crate's protocol engine.
//! Cryptography comes from the same provider rustls uses; certificates from `ssh-key`.
