//! The client's error: a kind callers branch on, the server's message, and the gRPC
//! status (or transport error) underneath as `source()`.

use std::fmt;

use tp_proto::trail;

/// What kind of failure an [`Error`] is. Mapped from gRPC status codes the way
/// Teleport's `trail` package maps them, so a branch on `NotFound` here behaves like
/// `trace.IsNotFound` in Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The resource does not exist.
    NotFound,
    /// The resource exists already.
    AlreadyExists,
    /// The caller's roles do not allow the call.
    AccessDenied,
    /// The request was malformed or violated a rule.
    BadParameter,
    /// A conditional update lost: the revision did not match.
    CompareFailed,
    /// The server could not be reached, or the connection broke.
    ConnectionProblem,
    /// A rate or size limit was hit.
    LimitExceeded,
    /// The server does not implement the call.
    NotImplemented,
    /// The credential is expired or not yet valid; raised before any dial.
    CredentialsExpired,
    /// Anything else: the status is in `source()`.
    Other,
}

impl From<trail::ErrorKind> for ErrorKind {
    fn from(k: trail::ErrorKind) -> Self {
        match k {
            trail::ErrorKind::NotFound => Self::NotFound,
            trail::ErrorKind::AlreadyExists => Self::AlreadyExists,
            trail::ErrorKind::AccessDenied => Self::AccessDenied,
            trail::ErrorKind::BadParameter => Self::BadParameter,
            trail::ErrorKind::CompareFailed => Self::CompareFailed,
            trail::ErrorKind::ConnectionProblem => Self::ConnectionProblem,
            trail::ErrorKind::LimitExceeded => Self::LimitExceeded,
            trail::ErrorKind::NotImplemented => Self::NotImplemented,
            // trail::ErrorKind is non-exhaustive; a kind added there is "other" here until
            // this crate learns it.
            _ => Self::Other,
        }
    }
}

/// An error from a [`Client`](crate::Client) call.
///
/// ```
/// use tp_client::{Error, ErrorKind};
/// let e = Error::from(tonic::Status::not_found("role \"x\" is not found"));
/// assert_eq!(e.kind(), ErrorKind::NotFound);
/// assert!(e.is_not_found());
/// assert_eq!(e.to_string(), "role \"x\" is not found");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with `message` and no source.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` with `message`, caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The gRPC status the server answered, if this error came from one.
    pub fn status(&self) -> Option<&tonic::Status> {
        self.source.as_ref()?.downcast_ref::<tonic::Status>()
    }

    /// `kind() == NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// `kind() == AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        self.kind == ErrorKind::AlreadyExists
    }

    /// `kind() == AccessDenied`.
    pub fn is_access_denied(&self) -> bool {
        self.kind == ErrorKind::AccessDenied
    }

    /// `kind() == NotImplemented`.
    pub fn is_not_implemented(&self) -> bool {
        self.kind == ErrorKind::NotImplemented
    }

    pub(crate) fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadParameter, message)
    }
}

/// Whether `status` reports a broken or unusable connection rather than the server's
/// answer: `UNAVAILABLE`, or an `UNKNOWN`/`INTERNAL`/`CANCELLED` status that tonic made
/// from a transport error (such statuses carry that error as their source; statuses a
/// server sends never do).
pub(crate) fn is_connection_status(status: &tonic::Status) -> bool {
    use tonic::Code;
    status.code() == Code::Unavailable
        || (matches!(
            status.code(),
            Code::Unknown | Code::Internal | Code::Cancelled
        ) && std::error::Error::source(status).is_some())
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let kind = if is_connection_status(&status) {
            ErrorKind::ConnectionProblem
        } else {
            trail::ErrorKind::from_code(status.code()).map_or(ErrorKind::Other, ErrorKind::from)
        };
        let message = if status.message().is_empty() {
            format!("{:?}", status.code())
        } else {
            status.message().to_string()
        };
        Self {
            kind,
            message,
            source: Some(Box::new(status)),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trail_code_maps_to_its_kind_and_keeps_the_status() {
        for k in trail::ErrorKind::ALL {
            let e = Error::from(k.status("boom"));
            assert_eq!(e.kind(), ErrorKind::from(k));
            assert_eq!(e.status().map(tonic::Status::code), Some(k.code()));
            assert!(std::error::Error::source(&e).is_some());
        }
        let e = Error::from(tonic::Status::internal("kaput"));
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.to_string(), "kaput");
    }

    #[test]
    fn transport_failures_are_connection_problems_and_server_answers_are_not() {
        let e = Error::from(tonic::Status::unavailable("connection refused"));
        assert_eq!(e.kind(), ErrorKind::ConnectionProblem);
        // tonic turns a broken connection into UNKNOWN with the transport error attached.
        let broken = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert_eq!(Error::from(broken).kind(), ErrorKind::ConnectionProblem);
        // The same code sent by a server is not.
        let e = Error::from(tonic::Status::unknown("server bug"));
        assert_eq!(e.kind(), ErrorKind::Other);
    }
}
