//! Argon2id passphrase hashing (PHC strings).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Minimum passphrase length, in characters, accepted by [`hash_passphrase`].
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// Errors from hashing or verifying. Never contains the passphrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassphraseError {
    #[error("the passphrase must have at least {MIN_PASSPHRASE_LEN} characters")]
    TooShort,
    #[error("the stored passphrase hash is not a valid Argon2 PHC string")]
    MalformedHash,
    #[error("the passphrase could not be hashed")]
    Hashing,
}

/// Hashes with Argon2id (v19, m=19 MiB, t=2, p=1, random 16-byte salt) and
/// returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash_passphrase(passphrase: &str) -> Result<String, PassphraseError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_LEN {
        return Err(PassphraseError::TooShort);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(passphrase.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PassphraseError::Hashing)
}

/// Checks `passphrase` against a PHC string made by [`hash_passphrase`].
/// `Ok(false)` for a wrong passphrase; `Err` only if the stored hash is malformed.
pub fn verify_passphrase(passphrase: &str, phc: &str) -> Result<bool, PassphraseError> {
    let parsed = PasswordHash::new(phc).map_err(|_| PassphraseError::MalformedHash)?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PassphraseError::MalformedHash);
    }
    match Argon2::default().verify_password(passphrase.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(_) => Err(PassphraseError::MalformedHash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_passphrase("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_passphrase("correct horse battery", &h).unwrap());
        assert!(!verify_passphrase("correct horse batterY", &h).unwrap());
        assert!(!verify_passphrase("", &h).unwrap());
        // Salted: two hashes of the same passphrase differ.
        let h2 = hash_passphrase("correct horse battery").unwrap();
        assert_ne!(h, h2);
        assert!(verify_passphrase("correct horse battery", &h2).unwrap());
    }

    #[test]
    fn too_short_rejected() {
        assert_eq!(hash_passphrase("short"), Err(PassphraseError::TooShort));
        assert_eq!(
            hash_passphrase("12345678901"),
            Err(PassphraseError::TooShort)
        );
        assert!(hash_passphrase("123456789012").is_ok());
    }

    #[test]
    fn malformed_hash_is_an_error_not_a_panic() {
        for bad in [
            "",
            "plaintext",
            "$argon2id$",
            "$md5$abc",
            "$argon2id$v=19$m=x$y$z",
        ] {
            assert_eq!(
                verify_passphrase("whatever passphrase", bad),
                Err(PassphraseError::MalformedHash),
                "{bad:?}"
            );
        }
        // A valid PHC string of another algorithm is refused.
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$SqlVijFGiPG+935vDSGEsA";
        assert_eq!(
            verify_passphrase("password", argon2i),
            Err(PassphraseError::MalformedHash)
        );
    }
}
