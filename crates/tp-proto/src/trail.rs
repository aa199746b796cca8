//! Teleport's error kinds and their gRPC status codes (Teleport's `trail` package).
//!
//! A Teleport server turns each error into a gRPC status with [`ErrorKind::code`]; a
//! client turns a status back into a kind with [`ErrorKind::from_code`], so Go's
//! `trace.IsNotFound`, `trace.IsAccessDenied`, ... hold on both sides. Codes without a
//! kind (`UNAUTHENTICATED`, `INTERNAL`, `DEADLINE_EXCEEDED`, `CANCELLED`, `UNKNOWN`, ...)
//! stay raw statuses.
//!
//! ```
//! use tp_proto::trail::ErrorKind;
//! assert_eq!(ErrorKind::AccessDenied.code(), tonic::Code::PermissionDenied);
//! assert_eq!(ErrorKind::from_code(tonic::Code::FailedPrecondition), Some(ErrorKind::CompareFailed));
//! assert_eq!(ErrorKind::from_code(tonic::Code::Internal), None);
//! ```

use tonic::Code;

/// The error kinds Teleport maps to and from gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `trace.NotFound` ↔ `NOT_FOUND`.
    NotFound,
    /// `trace.AlreadyExists` ↔ `ALREADY_EXISTS`.
    AlreadyExists,
    /// `trace.AccessDenied` ↔ `PERMISSION_DENIED`.
    AccessDenied,
    /// `trace.BadParameter` ↔ `INVALID_ARGUMENT`.
    BadParameter,
    /// `trace.CompareFailed` ↔ `FAILED_PRECONDITION` (a conditional update lost).
    CompareFailed,
    /// `trace.ConnectionProblem` ↔ `UNAVAILABLE`.
    ConnectionProblem,
    /// `trace.LimitExceeded` ↔ `RESOURCE_EXHAUSTED`.
    LimitExceeded,
    /// `trace.NotImplemented` ↔ `UNIMPLEMENTED` (what triggers Go client fallbacks).
    NotImplemented,
}

impl ErrorKind {
    /// Every kind, for tables and tests.
    pub const ALL: [Self; 8] = [
        Self::NotFound,
        Self::AlreadyExists,
        Self::AccessDenied,
        Self::BadParameter,
        Self::CompareFailed,
        Self::ConnectionProblem,
        Self::LimitExceeded,
        Self::NotImplemented,
    ];

    /// The status code a server sends for this kind.
    pub fn code(self) -> Code {
        match self {
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::AccessDenied => Code::PermissionDenied,
            Self::BadParameter => Code::InvalidArgument,
            Self::CompareFailed => Code::FailedPrecondition,
            Self::ConnectionProblem => Code::Unavailable,
            Self::LimitExceeded => Code::ResourceExhausted,
            Self::NotImplemented => Code::Unimplemented,
        }
    }

    /// The kind a client reads from a status code, if the code has one.
    pub fn from_code(code: Code) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// A status with this kind's code and `message` (Teleport sends the human message
    /// only, no stack).
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.code(), message)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::AccessDenied => "access denied",
            Self::BadParameter => "bad parameter",
            Self::CompareFailed => "compare failed",
            Self::ConnectionProblem => "connection problem",
            Self::LimitExceeded => "limit exceeded",
            Self::NotImplemented => "not implemented",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection_on_the_kinds() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
        }
        for raw in [
            Code::Unauthenticated,
            Code::Internal,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
            Code::Ok,
        ] {
            assert_eq!(ErrorKind::from_code(raw), None, "{raw:?} has no trace kind");
        }
    }

    #[test]
    fn status_carries_message_and_code() {
        let s = ErrorKind::NotFound.status("role \"x\" is not found");
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "role \"x\" is not found");
    }
}
