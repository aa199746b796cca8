//! Hand-written `Debug` for the generated messages that hold secrets.
//!
//! `cargo xtask codegen` skips the derived `Debug` of these messages (the list is
//! `REDACTED_DEBUG` in `xtask/src/codegen.rs`); the impls below print every field but
//! replace secret bytes with `[redacted]` (or `[empty]` when there is nothing to hide, so
//! a log still tells whether a secret was present).

use std::fmt;

use crate::proto::ChangeUserAuthenticationRequest;
use crate::tp::login::v1::AuthenticateSshUserRequest;
use crate::types::{
    JwtKeyPair, LocalAuthSecrets, RegisterUsingTokenRequest, SshKeyPair, TlsKeyPair, TotpDevice,
};

/// A stand-in that prints whether a secret is present, never its value.
struct Secret(bool);

impl Secret {
    fn of(bytes: &[u8]) -> Self {
        Self(!bytes.is_empty())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "[redacted]" } else { "[empty]" })
    }
}

/// Prints public key material in full: it is not secret and helps debugging.
struct Public<'a>(&'a [u8]);

impl fmt::Debug for Public<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) => fmt::Debug::fmt(s, f),
            Err(_) => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

impl fmt::Debug for LocalAuthSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalAuthSecrets")
            .field("password_hash", &Secret::of(&self.password_hash))
            .field("totp_key", &Secret::of(self.totp_key.as_bytes()))
            .field("mfa", &self.mfa)
            .field("webauthn", &self.webauthn)
            .finish()
    }
}

impl fmt::Debug for TotpDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpDevice")
            .field("key", &Secret::of(self.key.as_bytes()))
            .finish()
    }
}

impl fmt::Debug for SshKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshKeyPair")
            .field("public_key", &Public(&self.public_key))
            .field("private_key", &Secret::of(&self.private_key))
            .field("private_key_type", &self.private_key_type)
            .finish()
    }
}

impl fmt::Debug for TlsKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsKeyPair")
            .field("cert", &Public(&self.cert))
            .field("key", &Secret::of(&self.key))
            .field("key_type", &self.key_type)
            .finish()
    }
}

impl fmt::Debug for JwtKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeyPair")
            .field("public_key", &Public(&self.public_key))
            .field("private_key", &Secret::of(&self.private_key))
            .field("private_key_type", &self.private_key_type)
            .finish()
    }
}

impl fmt::Debug for ChangeUserAuthenticationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeUserAuthenticationRequest")
            .field("token_id", &Secret::of(self.token_id.as_bytes()))
            .field("new_password", &Secret::of(&self.new_password))
            .field(
                "new_mfa_register_response",
                &Secret::of(&self.new_mfa_register_response),
            )
            .field("new_device_name", &self.new_device_name)
            .field("login_ip", &self.login_ip)
            .finish()
    }
}

impl fmt::Debug for RegisterUsingTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterUsingTokenRequest")
            .field("host_id", &self.host_id)
            .field("node_name", &self.node_name)
            .field("role", &self.role)
            .field("token", &Secret::of(self.token.as_bytes()))
            .field("additional_principals", &self.additional_principals)
            .field("dns_names", &self.dns_names)
            .field("public_tls_key", &Public(&self.public_tls_key))
            .field("public_ssh_key", &Public(&self.public_ssh_key))
            .field("remote_addr", &self.remote_addr)
            .field(
                "ec2_identity_document",
                &Secret::of(&self.ec2_identity_document),
            )
            .field("id_token", &Secret::of(self.id_token.as_bytes()))
            .field("expires", &self.expires)
            .field("bot_instance_id", &self.bot_instance_id)
            .field("bot_generation", &self.bot_generation)
            .finish()
    }
}

impl fmt::Debug for AuthenticateSshUserRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateSshUserRequest")
            .field("user", &self.user)
            .field("password", &Secret::of(&self.password))
            .field("otp_token", &Secret::of(self.otp_token.as_bytes()))
            .field("ssh_public_key", &Public(&self.ssh_public_key))
            .field("tls_public_key", &Public(&self.tls_public_key))
            .field("expires", &self.expires)
            .field("route_to_cluster", &self.route_to_cluster)
            .field("client_addr", &self.client_addr)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_debug_output() {
        let secrets = LocalAuthSecrets {
            password_hash: b"$argon2id$v=19$hash-material".to_vec(),
            totp_key: "JBSWY3DPEHPK3PXP".into(),
            ..Default::default()
        };
        let out = format!("{secrets:?}");
        assert!(!out.contains("argon2id"), "{out}");
        assert!(!out.contains("JBSWY3DP"), "{out}");
        assert!(out.contains("[redacted]"), "{out}");

        let ca = SshKeyPair {
            public_key: b"ssh-ed25519 AAAAC3Nza".to_vec(),
            private_key: b"-----BEGIN OPENSSH PRIVATE KEY-----".to_vec(),
            private_key_type: 0,
        };
        let out = format!("{ca:?}");
        assert!(out.contains("ssh-ed25519 AAAAC3Nza"), "{out}");
        assert!(!out.contains("BEGIN OPENSSH"), "{out}");

        let tls = TlsKeyPair {
            cert: b"-----BEGIN CERTIFICATE-----".to_vec(),
            key: b"-----BEGIN PRIVATE KEY-----".to_vec(),
            key_type: 0,
        };
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));

        let jwt = JwtKeyPair {
            private_key: b"secret-jwt-key".to_vec(),
            ..Default::default()
        };
        assert!(!format!("{jwt:?}").contains("secret-jwt-key"));

        let totp = TotpDevice {
            key: "TOTPSECRET".into(),
        };
        assert!(!format!("{totp:?}").contains("TOTPSECRET"));

        let change = ChangeUserAuthenticationRequest {
            token_id: "invite-token-id".into(),
            new_password: b"hunter2hunter2".to_vec(),
            ..Default::default()
        };
        let out = format!("{change:?}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("invite-token-id"), "{out}");

        let login = AuthenticateSshUserRequest {
            user: "alice".into(),
            password: b"hunter2hunter2".to_vec(),
            otp_token: "123456".into(),
            ..Default::default()
        };
        let out = format!("{login:?}");
        assert!(!out.contains("hunter2") && !out.contains("123456"), "{out}");
        assert!(out.contains("alice"), "{out}");

        let join = RegisterUsingTokenRequest {
            host_id: "host-uuid".into(),
            role: "Proxy".into(),
            token: "join-secret-0123".into(),
            ..Default::default()
        };
        let out = format!("{join:?}");
        assert!(!out.contains("join-secret-0123"), "{out}");
        assert!(out.contains("host-uuid") && out.contains("Proxy"), "{out}");
    }

    #[test]
    fn empty_secrets_say_so() {
        let out = format!("{:?}", LocalAuthSecrets::default());
        assert!(out.contains("[empty]"), "{out}");
    }
}
