//! Errors.

/// Why an SSH connection or operation failed.
///
/// Errors caused by the peer never carry secrets, and authentication failures on the server
/// side are deliberately generic (the peer only ever sees `USERAUTH_FAILURE`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer violated the protocol (malformed, unexpected or oversized message).
    #[error("ssh protocol error: {0}")]
    Protocol(String),
    /// Key exchange failed (no common algorithm, bad key share, bad signature).
    #[error("ssh key exchange failed: {0}")]
    KeyExchange(String),
    /// The server's host key or host certificate was not trusted.
    #[error("ssh host key rejected: {0}")]
    HostKey(String),
    /// User authentication failed.
    #[error("ssh authentication failed: {0}")]
    Auth(String),
    /// A packet failed authentication (bad MAC/tag).
    #[error("ssh packet authentication failed")]
    BadTag,
    /// A deadline (pre-auth or idle) passed.
    #[error("ssh timeout: {0}")]
    Timeout(String),
    /// The peer sent `SSH_MSG_DISCONNECT`.
    #[error("ssh peer disconnected (reason {reason}): {description}")]
    PeerDisconnected {
        /// The reason code (RFC 4253 §11.1).
        reason: u32,
        /// The peer's description.
        description: String,
    },
    /// The connection is closed.
    #[error("ssh connection closed")]
    Closed,
    /// A channel operation was invalid (unknown channel, closed channel, cap reached).
    #[error("ssh channel error: {0}")]
    Channel(String),
    /// The peer refused to open a channel.
    #[error("ssh channel open refused (reason {reason}): {description}")]
    OpenFailed {
        /// The reason code (RFC 4254 §5.1).
        reason: u32,
        /// The peer's description.
        description: String,
    },
    /// A key or certificate could not be used.
    #[error("ssh key error: {0}")]
    Key(String),
    /// An I/O error in the tokio driver.
    #[error("ssh i/o error: {0}")]
    Io(String),
    /// The Teleport transport dial failed; the text is what the server wrote to stderr.
    #[error("{0}")]
    Dial(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e {
            Error::Closed | Error::PeerDisconnected { .. } => std::io::ErrorKind::ConnectionAborted,
            Error::Timeout(_) => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        Self::new(kind, e)
    }
}

/// SSH disconnect reason codes (RFC 4253 §11.1) used by this crate.
pub mod disconnect {
    /// `SSH_DISCONNECT_PROTOCOL_ERROR`
    pub const PROTOCOL_ERROR: u32 = 2;
    /// `SSH_DISCONNECT_KEY_EXCHANGE_FAILED`
    pub const KEY_EXCHANGE_FAILED: u32 = 3;
    /// `SSH_DISCONNECT_MAC_ERROR`
    pub const MAC_ERROR: u32 = 5;
    /// `SSH_DISCONNECT_SERVICE_NOT_AVAILABLE`
    pub const SERVICE_NOT_AVAILABLE: u32 = 7;
    /// `SSH_DISCONNECT_HOST_KEY_NOT_VERIFIABLE`
    pub const HOST_KEY_NOT_VERIFIABLE: u32 = 9;
    /// `SSH_DISCONNECT_BY_APPLICATION`
    pub const BY_APPLICATION: u32 = 11;
    /// `SSH_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE`
    pub const NO_MORE_AUTH_METHODS_AVAILABLE: u32 = 14;
}

impl Error {
    pub(crate) fn disconnect_code(&self) -> u32 {
        match self {
            Self::KeyExchange(_) => disconnect::KEY_EXCHANGE_FAILED,
            Self::HostKey(_) => disconnect::HOST_KEY_NOT_VERIFIABLE,
            Self::BadTag => disconnect::MAC_ERROR,
            Self::Auth(_) => disconnect::NO_MORE_AUTH_METHODS_AVAILABLE,
            Self::Timeout(_) | Self::Closed => disconnect::BY_APPLICATION,
            _ => disconnect::PROTOCOL_ERROR,
        }
    }
}
