//! Errors.

use std::fmt;

/// The result of a backend operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Displays a key as lossy UTF-8 in quotes, e.g. `"/roles/admin"`.
#[derive(Debug, Clone, Copy)]
pub struct KeyDisplay<'a>(pub &'a [u8]);

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key holds no live item (absent or expired).
    #[error("key {} not found (expected an existing, unexpired item)", KeyDisplay(.key))]
    NotFound {
        /// The key.
        key: Vec<u8>,
    },
    /// `create` found a live item at the key.
    #[error("key {} already exists (expected no item, or an expired one)", KeyDisplay(.key))]
    AlreadyExists {
        /// The key.
        key: Vec<u8>,
    },
    /// A conditional write found another revision than the caller expected.
    #[error(
        "key {}: expected revision {expected}, but the stored item is at revision {actual}",
        KeyDisplay(.key)
    )]
    CompareFailed {
        /// The key.
        key: Vec<u8>,
        /// The revision the caller expected.
        expected: i64,
        /// The revision of the stored item.
        actual: i64,
    },
    /// A watch asked for history that is no longer retained.
    #[error(
        "cannot watch from revision {requested}: events up to revision {compacted} are no \
         longer retained; read the current items and watch from the current revision"
    )]
    Compacted {
        /// The revision the watch started from.
        requested: i64,
        /// The newest revision whose event is gone.
        compacted: i64,
    },
    /// A watcher fell too far behind the writers; the watch has ended.
    #[error(
        "watcher fell more than {buffer} events behind after revision {position}; \
         resume with watch(Some({position}))"
    )]
    Lagged {
        /// The revision of the last event delivered (the position to resume from).
        position: i64,
        /// The watch buffer size that was exceeded.
        buffer: usize,
    },
    /// The caller passed something the backend cannot store or answer.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong, naming the key where there is one.
        message: String,
    },
    /// The underlying storage failed.
    #[error("storage error: {operation} on {location}: {source}")]
    Storage {
        /// Where: a file path, or `memory`.
        location: String,
        /// What was being done, naming the key where there is one.
        operation: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The kind of an [`Error`], for matching without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::AlreadyExists`].
    AlreadyExists,
    /// [`Error::CompareFailed`].
    CompareFailed,
    /// [`Error::Compacted`].
    Compacted,
    /// [`Error::Lagged`].
    Lagged,
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::Storage`].
    Storage,
}

impl Error {
    /// This error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Self::CompareFailed { .. } => ErrorKind::CompareFailed,
            Self::Compacted { .. } => ErrorKind::Compacted,
            Self::Lagged { .. } => ErrorKind::Lagged,
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::Storage { .. } => ErrorKind::Storage,
        }
    }

    /// A [`Error::Storage`].
    pub fn storage(
        location: impl Into<String>,
        operation: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Storage {
            location: location.into(),
            operation: operation.into(),
            source: source.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }
}
