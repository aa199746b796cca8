//! Teleport credentials: loaders, writers and the identity encoded in certificates.
//!
//! **One job:** turn the files that Teleport's tools write (a `tsh` profile directory, an
//! identity file from `tctl auth sign`, a certificate/key pair) into the material a
//! connection needs — a rustls client configuration, SSH signer and certificates, trusted
//! CAs — and write such files back in Teleport's layouts.
//!
//! **Never depends on:** the network, tonic or prost, or any tp server crate. A program
//! that only wants to read a profile pulls this crate and nothing else of tp.
//!
//! The loaders, writers and certificate identity codecs are being built under the
//! tp-creds issue; this crate currently only fixes its place in the workspace.
