//! A label for a user name that names no account, so what was typed into the
//! user field is never stored (a passphrase typed there by mistake must not be
//! readable in the audit trail).
//!
//! The label is a keyed hash (HMAC-SHA256) of the typed name under a
//! per-installation secret: the same mistyped name always gets the same label
//! (repeated guessing at one name shows up as such), the label cannot be turned
//! back into the name, and without the secret it cannot be checked against a
//! list of likely names or passphrases.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The label's prefix; the rest is 8 lowercase hex digits.
pub const UNKNOWN_USER_PREFIX: &str = "unknown user #";

/// `unknown user #` followed by the first 4 bytes (8 hex digits) of
/// HMAC-SHA256(`secret`, `typed`). The typed name is used exactly as given
/// (no trimming or case folding). `secret` should be 32 random bytes kept
/// with the installation (e.g. `cache::Cache::install_secret`).
pub fn unknown_user_label(secret: &[u8], typed: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(typed.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut label = String::with_capacity(UNKNOWN_USER_PREFIX.len() + 8);
    label.push_str(UNKNOWN_USER_PREFIX);
    for b in &tag[..4] {
        label.push_str(&format!("{b:02x}"));
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn same_input_same_label() {
        let a = unknown_user_label(&SECRET, "alcie");
        assert_eq!(a, unknown_user_label(&SECRET, "alcie"));
        assert!(a.starts_with(UNKNOWN_USER_PREFIX), "{a}");
        let hex = &a[UNKNOWN_USER_PREFIX.len()..];
        assert_eq!(hex.len(), 8);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Exactly as typed: case and spaces matter.
        assert_ne!(a, unknown_user_label(&SECRET, "Alcie"));
        assert_ne!(a, unknown_user_label(&SECRET, "alcie "));
        assert_ne!(a, unknown_user_label(&SECRET, "alice"));
    }

    #[test]
    fn known_answer() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?")
        // = 5bdcc146bf60754e6a042426089575c7...
        assert_eq!(
            unknown_user_label(b"Jefe", "what do ya want for nothing?"),
            "unknown user #5bdcc146"
        );
    }

    #[test]
    fn different_secret_different_label() {
        let other = [8u8; 32];
        for typed in ["alcie", "", "correct horse battery", "ünïcødé"] {
            assert_ne!(
                unknown_user_label(&SECRET, typed),
                unknown_user_label(&other, typed),
                "{typed:?}"
            );
        }
        // An empty secret still works (and differs from a real one).
        assert_ne!(
            unknown_user_label(&[], "alcie"),
            unknown_user_label(&SECRET, "alcie")
        );
    }

    #[test]
    fn the_label_never_contains_the_input() {
        for typed in [
            "correct horse battery staple",
            "demo-caremanager",
            "alice",
            "0123456789abcdef",
            "deadbeef",
            "a1b",
        ] {
            let label = unknown_user_label(&SECRET, typed);
            assert!(!label.contains(typed), "{label} contains {typed:?}");
            assert_eq!(label.len(), UNKNOWN_USER_PREFIX.len() + 8);
        }
        // A long passphrase typed into the user field: nothing of it survives.
        let label = unknown_user_label(&SECRET, "my secret passphrase 2024");
        for word in ["secret", "passphrase", "2024"] {
            assert!(!label.contains(word), "{label}");
        }
    }
}
