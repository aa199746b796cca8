//! Password hashes: argon2id with a random salt, in the PHC string format. Passwords are
//! never stored, logged or returned; only the hash is kept (in the user's secrets).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password accepted (Teleport's `MinPasswordLength`).
pub const MIN_LEN: usize = 6;
/// The longest password accepted (Teleport's `MaxPasswordLength`).
pub const MAX_LEN: usize = 128;

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    /// Shorter than [`MIN_LEN`] or longer than [`MAX_LEN`] characters.
    Length,
    /// Hashing failed.
    Hash(String),
}

impl std::fmt::Display for PasswordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length => write!(
                f,
                "password must be between {MIN_LEN} and {MAX_LEN} characters long"
            ),
            Self::Hash(e) => write!(f, "cannot hash the password: {e}"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// Checks the length rules and hashes `password` with argon2id.
pub fn hash(password: &[u8]) -> Result<Vec<u8>, PasswordError> {
    let chars = String::from_utf8_lossy(password).chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&chars) {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::generate(&mut OsRng);
    let h = Argon2::default()
        .hash_password(password, &salt)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(h.to_string().into_bytes())
}

/// Whether `password` matches a stored hash. A malformed hash matches nothing.
pub fn verify(password: &[u8], stored: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(stored) else {
        return false;
    };
    let Ok(h) = PasswordHash::new(s) else {
        return false;
    };
    Argon2::default().verify_password(password, &h).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash(b"correct horse").unwrap();
        assert!(
            String::from_utf8(h.clone())
                .unwrap()
                .starts_with("$argon2id$")
        );
        assert!(verify(b"correct horse", &h));
        assert!(!verify(b"wrong horse", &h));
        assert!(!verify(b"correct horse", b"not a hash"));
        assert_ne!(hash(b"correct horse").unwrap(), h, "salted");
    }

    #[test]
    fn length_rules() {
        assert_eq!(hash(b"short"), Err(PasswordError::Length));
        assert_eq!(hash(&[b'x'; MAX_LEN + 1]), Err(PasswordError::Length));
        assert!(hash("pässwörd".as_bytes()).is_ok(), "characters, not bytes");
    }
}
