//! One error type for every loader and writer. Each variant names where the material came
//! from (a file path, or a description such as "identity string") and what was expected.

use std::path::PathBuf;

/// A credential could not be read, decoded, used or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read (missing, unreadable, a directory, ...).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The material is malformed: `problem` says what was found and what was expected.
    #[error("{origin}: {problem}")]
    Invalid {
        /// Where the material came from.
        origin: String,
        /// What is wrong.
        problem: String,
    },
    /// Something the source must hold is absent.
    #[error("{origin}: no {what}")]
    Missing {
        /// Where the material came from.
        origin: String,
        /// What is missing, with a hint where it is usually found.
        what: String,
    },
    /// The private key is of a kind tp does not use.
    #[error(
        "{origin}: unsupported private key ({what}); expected Ed25519, ECDSA P-256 or RSA of 2048 bits or more"
    )]
    UnsupportedKey {
        /// Where the key came from.
        origin: String,
        /// What was found.
        what: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("{origin}: the private key does not match the {which} certificate's public key")]
    KeyMismatch {
        /// Where the key and certificate came from.
        origin: String,
        /// `TLS` or `SSH`.
        which: &'static str,
    },
    /// The certificate's validity ended before `now`.
    #[error(
        "{origin}: the {which} certificate expired at {not_after} (now {now}); log in again or re-issue it"
    )]
    Expired {
        /// Where the certificate came from.
        origin: String,
        /// `TLS` or `SSH`.
        which: &'static str,
        /// The end of its validity (RFC 3339).
        not_after: String,
        /// The time of the check (RFC 3339).
        now: String,
    },
    /// The certificate's validity starts after `now` (clock skew, or a certificate from the
    /// future).
    #[error(
        "{origin}: the {which} certificate is not valid until {not_before} (now {now}); check the clock"
    )]
    NotYetValid {
        /// Where the certificate came from.
        origin: String,
        /// `TLS` or `SSH`.
        which: &'static str,
        /// The start of its validity (RFC 3339).
        not_before: String,
        /// The time of the check (RFC 3339).
        now: String,
    },
    /// The profile directory does not say which profile is current.
    #[error("{}: current-profile is not set; pass a profile (proxy host) name or log in with tsh", dir.display())]
    NoCurrentProfile {
        /// The profile directory.
        dir: PathBuf,
    },
}

impl Error {
    pub(crate) fn invalid(origin: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            origin: origin.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn missing(origin: impl Into<String>, what: impl Into<String>) -> Self {
        Self::Missing {
            origin: origin.into(),
            what: what.into(),
        }
    }
}

/// Formats a Unix time as RFC 3339 (UTC) for messages.
pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Reads a whole file, mapping errors to [`Error::Read`].
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a whole file as UTF-8 text.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String, Error> {
    let bytes = read_file(path)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid(path.display().to_string(), "not UTF-8 text"))
}
