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
//! Every loader implements [`Credentials`]; [`Credentials::load_valid`] fails early, with
//! the source and the times, when a certificate has expired or is not yet valid.
//!
//! ```
//! use tp_creds::{Credentials, IdentityFile};
//!
//! let creds = IdentityFile::from_path("/nonexistent/identity");
//! // Loaders are lazy: nothing is read until the material is needed.
//! let err = creds.load().unwrap_err();
//! assert!(err.to_string().starts_with("cannot read /nonexistent/identity"));
//! ```

pub mod cert;
mod der;
mod error;
pub mod identity;
pub mod identity_file;
pub mod key;
mod keypair;
pub mod material;
pub mod pem;
pub mod profile;
pub mod random;
mod reloading;
pub mod sign;
pub mod sshcert;
pub mod write;

pub use error::Error;
pub use identity::TlsIdentity;
pub use identity_file::{Format, IdentityBundle, IdentityFile};
pub use key::{KeyAlgorithm, PrivateKey};
pub use keypair::{KeyPair, Tls};
pub use material::{Credentials, Material, SshMaterial};
pub use profile::{Profile, ProfileConfig, write_profile};
pub use reloading::ReloadingIdentityFile;
pub use sshcert::{SshHostIdentity, SshIdentity, SshSigner};
