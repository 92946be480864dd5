//! The cache key in the REAL OS keyring (no mock). Run under a Secret Service
//! (`dbus-run-session` + `gnome-keyring-daemon --unlock`) or with
//! `PHM_KEYRING=keyutils` under `keyctl session -`; see docs/bench-cache.md.

mod common;

use cache::{Cache, CacheError, KeyStore, KeyringBackend};

pub fn test_store() -> KeyStore {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let s = KeyStore::with_service(&format!(
        "phm-workstation-test-{}-{nanos}",
        std::process::id()
    ))
    .expect("keyring backend");
    if let Err(e) = s.load("probe") {
        panic!(
            "the OS keyring is not reachable ({e}). Run these tests under \
             `dbus-run-session -- bash -c 'echo -n ci | gnome-keyring-daemon --unlock --components=secrets >/dev/null; cargo test ...'` \
             or with `PHM_KEYRING=keyutils keyctl session - cargo test ...`"
        );
    }
    s
}

#[test]
fn backend_follows_phm_keyring() {
    let s = test_store();
    let expected = match std::env::var("PHM_KEYRING").as_deref() {
        Ok("keyutils") => KeyringBackend::Keyutils,
        _ => KeyringBackend::SecretService,
    };
    assert_eq!(s.backend(), expected);
}

#[test]
fn key_is_created_once_and_persists_in_the_keyring() {
    let s = test_store();
    assert!(s.load("profile").unwrap().is_none());
    let k1 = s
        .load_or_create("profile")
        .expect("keyring must be available (see file header)");
    // A fresh store object (fresh Entry) reads the same key: not an in-memory mock.
    let again = KeyStore::with_service(s.service()).unwrap();
    assert_eq!(again.load("profile").unwrap().as_ref(), Some(&k1));
    assert_eq!(again.load_or_create("profile").unwrap(), k1);
    // Accounts are independent.
    let other = s.load_or_create("other-profile").unwrap();
    assert_ne!(other, k1);
    // The key opens the cache it created; after deletion a new key cannot.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    Cache::open(&path, &k1)
        .unwrap()
        .set_setting("a", "b")
        .unwrap();
    s.delete("profile").unwrap();
    assert!(s.load("profile").unwrap().is_none());
    s.delete("profile").unwrap(); // idempotent
    let k2 = s.load_or_create("profile").unwrap();
    assert_ne!(k2, k1);
    assert!(matches!(Cache::open(&path, &k2), Err(CacheError::WrongKey)));
    s.delete("profile").unwrap();
    s.delete("other-profile").unwrap();
}

#[test]
fn malformed_stored_key_is_an_error_not_a_panic() {
    let s = test_store();
    keyring::Entry::new(s.service(), "broken")
        .unwrap()
        .set_password("not a hex key")
        .unwrap();
    assert_eq!(s.load("broken").unwrap_err(), cache::KeyError::Malformed);
    assert!(s.load_or_create("broken").is_err());
    s.delete("broken").unwrap();
}
