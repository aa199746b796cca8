//! Configuration for both roles.

use std::sync::Arc;
use std::time::Duration;

use ssh_key::{Fingerprint, PublicKey};

use crate::cipher::CipherAlg;
use crate::kex::KexAlg;
use crate::keys::KeyPair;

/// Transport and connection-layer limits shared by both roles.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Key-exchange methods in preference order.
    pub kex: Vec<KexAlg>,
    /// Ciphers in preference order.
    pub ciphers: Vec<CipherAlg>,
    /// Re-key after this many bytes (sent + received) under one set of keys.
    pub rekey_bytes: u64,
    /// Re-key after this much time under one set of keys.
    pub rekey_interval: Duration,
    /// The connection fails if authentication has not succeeded by then.
    pub auth_timeout: Duration,
    /// The connection fails after this long without receiving a packet (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// After this long without receiving a packet, send `keepalive@openssh.com` (a
    /// global request wanting a reply), and again each interval while none comes
    /// (`None`: never). OpenSSH's `ServerAliveInterval` / `ClientAliveInterval`.
    pub keepalive_interval: Option<Duration>,
    /// The connection fails when this many keepalives in a row go unanswered (OpenSSH's
    /// `ServerAliveCountMax` / `ClientAliveCountMax`).
    pub keepalive_max: u32,
    /// Maximum concurrent channels (both directions together).
    pub max_channels: usize,
    /// The receive window we grant each channel (bounds the bytes buffered per channel).
    pub window_size: u32,
    /// The largest channel data packet we accept.
    pub max_packet: u32,
    /// Our software version, after `SSH-2.0-` (no spaces or dashes).
    pub software_version: String,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            kex: KexAlg::ALL.to_vec(),
            ciphers: CipherAlg::ALL.to_vec(),
            rekey_bytes: 1 << 30,
            rekey_interval: Duration::from_secs(3600),
            auth_timeout: Duration::from_secs(30),
            idle_timeout: None,
            keepalive_interval: None,
            keepalive_max: 3,
            max_channels: 64,
            window_size: 2 * 1024 * 1024,
            max_packet: 32 * 1024,
            software_version: format!("tp_ssh_{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Transport settings.
    pub transport: TransportConfig,
    /// The user name to log in as (for Teleport: a principal of the user certificate).
    pub user: String,
    /// The user key, normally with its user certificate attached.
    pub key: Arc<KeyPair>,
    /// SHA-256 fingerprints of trusted host CAs: a host certificate signed by one is accepted.
    pub trusted_host_cas: Vec<Fingerprint>,
    /// Plain host keys accepted as they are (for peers without host certificates).
    pub known_host_keys: Vec<PublicKey>,
    /// When set, the host certificate must list this principal. When `None`, any principal
    /// is accepted (Teleport's own client only checks the CA).
    pub host_principal: Option<String>,
}

impl ClientConfig {
    /// A client configuration with default transport settings.
    pub fn new(user: impl Into<String>, key: Arc<KeyPair>) -> Self {
        Self {
            transport: TransportConfig::default(),
            user: user.into(),
            key,
            trusted_host_cas: Vec::new(),
            known_host_keys: Vec::new(),
            host_principal: None,
        }
    }
}

/// Server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Transport settings.
    pub transport: TransportConfig,
    /// The host key, normally with its host certificate attached.
    pub host_key: Arc<KeyPair>,
    /// SHA-256 fingerprints of trusted user CAs. Only certificates signed by one of these
    /// are accepted; plain public keys never are.
    pub trusted_user_cas: Vec<Fingerprint>,
    /// Authentication failures allowed before the connection is dropped.
    pub max_auth_attempts: u32,
}

impl ServerConfig {
    /// A server configuration with default transport settings.
    pub fn new(host_key: Arc<KeyPair>, trusted_user_cas: Vec<Fingerprint>) -> Self {
        Self {
            transport: TransportConfig::default(),
            host_key,
            trusted_user_cas,
            max_auth_attempts: 6,
        }
    }
}
