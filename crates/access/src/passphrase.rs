//! Argon2id passphrase hashing (PHC strings) and the strength check for a new
//! passphrase ([`check_new_passphrase`]).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Minimum passphrase length, in characters, accepted by [`hash_passphrase`].
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// Maximum passphrase length, in characters, accepted by [`check_new_passphrase`].
pub const MAX_PASSPHRASE_LEN: usize = 1024;

/// The lowest strength score (zxcvbn, 0–4) a new passphrase must reach: 3 means
/// an estimated 10^10 guesses or more ("safely unguessable" offline against a slow hash).
pub const MIN_PASSPHRASE_SCORE: u8 = 3;

/// Why a new passphrase is refused. Its [`Display`](std::fmt::Display) is a
/// plain sentence for the person choosing it (with the estimator's warning and
/// suggestions when there are any) and never contains the passphrase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PassphraseProblem {
    /// Fewer than `min_chars` characters.
    TooShort { min_chars: usize },
    /// More than `max_chars` characters.
    TooLong { max_chars: usize },
    /// Long enough but easy to guess (common, a keyboard pattern, repeats, built
    /// from the user name, ...). `warning` and `suggestions` are the estimator's
    /// fixed English sentences; they never quote the passphrase.
    TooGuessable {
        warning: Option<String>,
        suggestions: Vec<String>,
    },
}

impl std::fmt::Display for PassphraseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassphraseProblem::TooShort { min_chars } => write!(
                f,
                "This passphrase is too short: use at least {min_chars} characters. \
                 A few unrelated words are long and easy to remember."
            ),
            PassphraseProblem::TooLong { max_chars } => write!(
                f,
                "This passphrase is too long: use at most {max_chars} characters."
            ),
            PassphraseProblem::TooGuessable {
                warning,
                suggestions,
            } => {
                f.write_str("This passphrase is too easy to guess.")?;
                if let Some(w) = warning {
                    write!(f, " {w}")?;
                }
                if suggestions.is_empty() {
                    f.write_str(" Add another word or two. Uncommon words are better.")?;
                }
                for s in suggestions {
                    write!(f, " {s}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PassphraseProblem {}

/// Checks a passphrase someone is choosing (a new account, a reset, a change):
/// at least [`MIN_PASSPHRASE_LEN`] and at most [`MAX_PASSPHRASE_LEN`]
/// characters (Unicode scalar values, not bytes), and a zxcvbn strength score
/// of at least [`MIN_PASSPHRASE_SCORE`].
///
/// `user_inputs` are words about the user (user name, display name, ...): a
/// passphrase built from them counts as weak. Each input is given to the
/// estimator whole, as its words (split at anything not a letter or digit) and,
/// for two to four words, as those words joined in either order by nothing,
/// `.`, `_`, `-` or a space, so `Mary Jones` weakens `Mary.Jones2024`,
/// `jonesmary!` and `jones1234` alike.
///
/// Only for new passphrases: signing in never checks strength.
pub fn check_new_passphrase(
    passphrase: &str,
    user_inputs: &[&str],
) -> Result<(), PassphraseProblem> {
    let chars = passphrase.chars().count();
    if chars < MIN_PASSPHRASE_LEN {
        return Err(PassphraseProblem::TooShort {
            min_chars: MIN_PASSPHRASE_LEN,
        });
    }
    if chars > MAX_PASSPHRASE_LEN {
        return Err(PassphraseProblem::TooLong {
            max_chars: MAX_PASSPHRASE_LEN,
        });
    }
    let words = user_words(user_inputs);
    let inputs: Vec<&str> = words.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(passphrase, &inputs);
    if u8::from(estimate.score()) >= MIN_PASSPHRASE_SCORE {
        return Ok(());
    }
    let (warning, suggestions) = match estimate.feedback() {
        Some(fb) => (
            fb.warning().map(|w| w.to_string()),
            fb.suggestions().iter().map(|s| s.to_string()).collect(),
        ),
        None => (None, Vec::new()),
    };
    Err(PassphraseProblem::TooGuessable {
        warning,
        suggestions,
    })
}

/// The estimator's user dictionary for `user_inputs` (see [`check_new_passphrase`]).
fn user_words(user_inputs: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |w: String| {
        if !w.is_empty() && !out.contains(&w) {
            out.push(w);
        }
    };
    for input in user_inputs {
        let input = input.trim().to_lowercase();
        let mut words: Vec<&str> = input
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        for w in &words {
            if w.chars().count() >= 3 {
                add(w.to_string());
            }
        }
        if (2..=4).contains(&words.len()) {
            for _ in 0..2 {
                for sep in ["", ".", "_", "-", " "] {
                    add(words.join(sep));
                }
                words.reverse();
            }
        }
        add(input);
    }
    out
}

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

    fn weak(p: &str, inputs: &[&str]) -> PassphraseProblem {
        let problem = check_new_passphrase(p, inputs).expect_err(p);
        let text = problem.to_string();
        assert!(
            p.is_empty() || !text.contains(p),
            "{text:?} quotes the passphrase"
        );
        assert!(text.ends_with('.'), "{text:?}");
        problem
    }

    #[test]
    fn new_passphrase_length_in_characters() {
        assert_eq!(weak("", &[]), PassphraseProblem::TooShort { min_chars: 12 });
        assert_eq!(
            weak("Xq7#vLp2!zR", &[]),
            PassphraseProblem::TooShort { min_chars: 12 }
        );
        // 11 characters but 22 bytes: still too short.
        let two_byte = "éééééééééé\u{e9}";
        assert_eq!(two_byte.chars().count(), 11);
        assert_eq!(
            weak(two_byte, &[]),
            PassphraseProblem::TooShort { min_chars: 12 }
        );
        assert!(weak("Xq7#vLp2!zR", &[])
            .to_string()
            .contains("at least 12 characters"));
        // The boundaries: 1024 characters accepted, 1025 refused.
        let strong = "orbit walnut tuesday glacier ";
        let long: String = strong.chars().cycle().take(MAX_PASSPHRASE_LEN).collect();
        assert_eq!(check_new_passphrase(&long, &[]), Ok(()));
        let too_long: String = strong
            .chars()
            .cycle()
            .take(MAX_PASSPHRASE_LEN + 1)
            .collect();
        assert_eq!(
            check_new_passphrase(&too_long, &[]),
            Err(PassphraseProblem::TooLong { max_chars: 1024 })
        );
        // 1024 three-byte characters count as 1024.
        let wide: String = "\u{2603}\u{263a}\u{2615}\u{2602}\u{2600}\u{2601}"
            .chars()
            .cycle()
            .take(MAX_PASSPHRASE_LEN)
            .collect();
        assert!(!matches!(
            check_new_passphrase(&wide, &[]),
            Err(PassphraseProblem::TooLong { .. } | PassphraseProblem::TooShort { .. })
        ));
    }

    #[test]
    fn common_and_patterned_passphrases_are_refused() {
        for p in [
            "password1234",
            "qwertyuiop12",
            "Password1234",
            "123456789012",
            "aaaaaaaaaaaa",
            "abcabcabcabcabc",
            "zzzzzzzzzzzzzzzzzzzz",
            "abcdefghijklmnop",
            "iloveyou2024",
            "qwertyqwertyqwerty",
        ] {
            let problem = weak(p, &[]);
            let PassphraseProblem::TooGuessable {
                warning,
                suggestions,
            } = &problem
            else {
                panic!("{p}: {problem:?}");
            };
            assert!(
                warning.is_some() || !suggestions.is_empty(),
                "{p}: no advice"
            );
            assert!(
                problem
                    .to_string()
                    .starts_with("This passphrase is too easy to guess."),
                "{problem}"
            );
        }
        // Repeated characters: the estimator says why.
        let problem = weak("aaaaaaaaaaaa", &[]);
        assert!(problem.to_string().contains("Repeats"), "{problem}");
        let problem = weak("password1234", &[]);
        assert!(problem.to_string().contains("common password"), "{problem}");
    }

    #[test]
    fn passphrases_built_from_the_user_are_refused() {
        let user = ["qbrombeck", "Quixtavel Brombeck"];
        // Strong for a stranger, weak when built from the user's own names.
        for p in ["quixtavelbrombeck", "qbrombeck2025!"] {
            assert_eq!(check_new_passphrase(p, &[]), Ok(()), "{p}");
            weak(p, &user);
        }
        // The display name counts in its words, not only whole.
        weak("quixtavelbrombeck", &["Quixtavel Brombeck"]);
        for p in ["Qbrombeck12345", "brombeckbrombeck", "Brombeck1234567"] {
            weak(p, &user);
        }
        // A user name with a separator, in its parts.
        weak("zorvandel.hiltz1", &["zorvandel.hiltz", "Zorvandel Hiltz"]);
        // The display name's words joined, in either order.
        for p in [
            "Jane.Doe1234",
            "Doe.Jane!2024",
            "jane_doe_2024",
            "DoeJane12345",
        ] {
            weak(p, &["jdoe", "Jane Doe"]);
        }
        weak("Brombeck.Quixtavel", &user);
        // Blank inputs change nothing.
        assert_eq!(check_new_passphrase("qbrombeck2025!", &["", "  "]), Ok(()));
    }

    #[test]
    fn strong_passphrases_are_accepted() {
        for p in [
            "correct horse battery staple",
            "orbit walnut tuesday glacier",
            "Xq7#vLp2!zRm9&",
            "la fenêtre bleue chante à midi",
        ] {
            assert_eq!(
                check_new_passphrase(p, &["caremanager", "Casey Manager"]),
                Ok(()),
                "{p}"
            );
        }
    }

    #[test]
    fn problems_serialize_with_a_kind() {
        let v = serde_json::to_value(PassphraseProblem::TooShort { min_chars: 12 }).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "too_short", "min_chars": 12}));
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
