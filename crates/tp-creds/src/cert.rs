//! Certificates: parsing with errors that name their source, validity windows, and the
//! checks every loader runs (key matches certificate; not expired; not yet valid).

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::error::rfc3339;
use crate::{Error, PrivateKey};

/// A validity window in Unix seconds, inclusive at both ends as X.509 and SSH define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first second the certificate is valid.
    pub not_before: i64,
    /// The last second the certificate is valid.
    pub not_after: i64,
}

impl Validity {
    /// Checks that `now` lies in the window; `which` (`TLS`/`SSH`) and `origin` name the
    /// certificate in the error.
    pub fn check(&self, now: SystemTime, which: &'static str, origin: &str) -> Result<(), Error> {
        let now = unix_time(now);
        if now > self.not_after {
            return Err(Error::Expired {
                origin: origin.into(),
                which,
                not_after: rfc3339(self.not_after),
                now: rfc3339(now),
            });
        }
        if now < self.not_before {
            return Err(Error::NotYetValid {
                origin: origin.into(),
                which,
                not_before: rfc3339(self.not_before),
                now: rfc3339(now),
            });
        }
        Ok(())
    }
}

/// Seconds since the epoch (negative before it).
pub fn unix_time(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Parses a DER X.509 certificate; trailing bytes are an error.
pub(crate) fn parse_x509<'a>(der: &'a [u8], origin: &str) -> Result<X509Certificate<'a>, Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(Error::invalid(
            origin,
            "X.509 certificate has trailing bytes",
        )),
        Err(e) => Err(Error::invalid(
            origin,
            format!("X.509 certificate does not parse (truncated or corrupt?): {e}"),
        )),
    }
}

/// The validity window of a DER X.509 certificate.
pub fn x509_validity(der: &[u8], origin: &str) -> Result<Validity, Error> {
    let cert = parse_x509(der, origin)?;
    Ok(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Fails unless `key` is the private half of the certificate's public key.
pub fn check_x509_key(der: &[u8], key: &PrivateKey, origin: &str) -> Result<(), Error> {
    let cert = parse_x509(der, origin)?;
    if cert.public_key().raw != key.public_key_spki_der()?.as_slice() {
        return Err(Error::KeyMismatch {
            origin: origin.into(),
            which: "TLS",
        });
    }
    Ok(())
}

/// Fails unless `key` is the private half of the SSH certificate's public key.
pub fn check_ssh_key(
    cert: &ssh_key::Certificate,
    key: &PrivateKey,
    origin: &str,
) -> Result<(), Error> {
    if cert.public_key() != key.ssh_public_key()?.key_data() {
        return Err(Error::KeyMismatch {
            origin: origin.into(),
            which: "SSH",
        });
    }
    Ok(())
}

/// The validity window of an SSH certificate (`valid_before` of "forever" saturates).
pub fn ssh_validity(cert: &ssh_key::Certificate) -> Validity {
    Validity {
        not_before: i64::try_from(cert.valid_after()).unwrap_or(i64::MAX),
        not_after: i64::try_from(cert.valid_before()).unwrap_or(i64::MAX),
    }
}

/// Teleport's CA pin for a CA certificate: `sha256:` and the hex SHA-256 of its
/// SubjectPublicKeyInfo (what `tctl status` prints and nodes use to trust a cluster).
pub fn ca_pin(ca_der: &[u8], origin: &str) -> Result<String, Error> {
    let cert = parse_x509(ca_der, origin)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// Parses an SSH certificate in authorized-keys form (`<type>-cert-v01@openssh.com <base64> [comment]`).
pub fn parse_ssh_cert(line: &str, origin: &str) -> Result<ssh_key::Certificate, Error> {
    ssh_key::Certificate::from_openssh(line.trim()).map_err(|e| {
        Error::invalid(
            origin,
            format!("SSH certificate does not parse (truncated or corrupt?): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ca_pins_hash_the_public_key() {
        let key = PrivateKey::generate(crate::KeyAlgorithm::EcdsaP256).unwrap();
        let a = crate::sign::self_signed_ca("a", &key, 0, 4_000_000_000).unwrap();
        let b = crate::sign::self_signed_ca("b", &key, 0, 4_000_000_000).unwrap();
        // Same key, different certificates: same pin.
        assert_eq!(ca_pin(&a, "a").unwrap(), ca_pin(&b, "b").unwrap());
        let spki = key.public_key_spki_der().unwrap();
        let want: String = ring::digest::digest(&ring::digest::SHA256, &spki)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ca_pin(&a, "a").unwrap(), format!("sha256:{want}"));
    }

    #[test]
    fn validity_errors_name_the_times() {
        let v = Validity {
            not_before: 1_000,
            not_after: 2_000,
        };
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert!(v.check(at(1_000), "TLS", "f").is_ok());
        assert!(v.check(at(2_000), "TLS", "f").is_ok());
        let e = v.check(at(2_001), "TLS", "/id").unwrap_err().to_string();
        assert_eq!(
            e,
            "/id: the TLS certificate expired at 1970-01-01T00:33:20Z (now 1970-01-01T00:33:21Z); log in again or re-issue it"
        );
        let e = v.check(at(999), "SSH", "/id").unwrap_err();
        assert!(matches!(e, Error::NotYetValid { which: "SSH", .. }), "{e}");
    }
}
