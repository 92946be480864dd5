//! The cache key: 256 random bits kept in the OS keyring.
//!
//! Backend, chosen at run time by the `PHM_KEYRING` environment variable:
//! unset or `secret-service` = the freedesktop Secret Service (the real
//! desktop path: GNOME Keyring / KWallet); `keyutils` = the Linux kernel
//! keyring (headless CI, under `keyctl session -`). Any other value is an
//! error. The key is never logged, printed or written anywhere but the
//! keyring; [`CacheKey`]'s `Debug` is redacted and it is zeroed on drop.

use std::fmt;
use std::sync::OnceLock;

/// Keyring service name under which cache keys are stored.
pub const KEYRING_SERVICE: &str = "phm-workstation";

/// A 256-bit SQLCipher raw key.
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// A fresh random key from the OS CSPRNG.
    pub fn generate() -> Result<CacheKey, KeyError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|_| KeyError::Random)?;
        Ok(CacheKey(k))
    }

    /// Wraps raw key bytes (tests, or a key from another secret store).
    pub fn from_bytes(bytes: [u8; 32]) -> CacheKey {
        CacheKey(bytes)
    }

    /// Parses 64 hex digits (the keyring representation).
    pub fn from_hex(s: &str) -> Option<CacheKey> {
        let b = s.trim().as_bytes();
        if b.len() != 64 {
            return None;
        }
        let val = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut k = [0u8; 32];
        for (i, o) in k.iter_mut().enumerate() {
            *o = (val(b[2 * i])? << 4) | val(b[2 * i + 1])?;
        }
        Some(CacheKey(k))
    }

    /// Lowercase hex. Handle with care: this is the secret.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for x in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(x >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(x & 15)]));
        }
        s
    }
}

impl Clone for CacheKey {
    fn clone(&self) -> Self {
        CacheKey(self.0)
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        // Constant-time comparison.
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for CacheKey {}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheKey(<redacted>)")
    }
}

impl Drop for CacheKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites a buffer with zeros in a way the optimizer does not remove.
pub(crate) fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Zeroes a String's bytes before dropping it.
pub(crate) fn wipe_string(mut s: String) {
    // SAFETY: zero bytes are valid UTF-8.
    wipe(unsafe { s.as_mut_vec() });
}

/// Keyring backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringBackend {
    /// freedesktop Secret Service over D-Bus (default).
    SecretService,
    /// Linux kernel keyutils (headless CI).
    Keyutils,
}

impl KeyringBackend {
    /// The backend named by `PHM_KEYRING` (unset/empty/`secret-service` or `keyutils`).
    pub fn from_env() -> Result<KeyringBackend, KeyError> {
        match std::env::var("PHM_KEYRING").as_deref() {
            Err(_) | Ok("") | Ok("secret-service") | Ok("secret_service") => {
                Ok(KeyringBackend::SecretService)
            }
            Ok("keyutils") => Ok(KeyringBackend::Keyutils),
            Ok(_) => Err(KeyError::UnknownBackend),
        }
    }
}

static BACKEND: OnceLock<Result<KeyringBackend, KeyError>> = OnceLock::new();

/// Selects the keyring backend from `PHM_KEYRING`, once per process, and
/// returns it. Called by [`KeyStore::new`]; later changes to the variable
/// have no effect.
pub fn init_keyring_backend() -> Result<KeyringBackend, KeyError> {
    BACKEND
        .get_or_init(|| {
            let b = KeyringBackend::from_env()?;
            match b {
                KeyringBackend::Keyutils => keyring::set_default_credential_builder(
                    keyring::keyutils::default_credential_builder(),
                ),
                KeyringBackend::SecretService => keyring::set_default_credential_builder(
                    keyring::secret_service::default_credential_builder(),
                ),
            }
            Ok(b)
        })
        .clone()
}

/// Errors from the key store. Never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("PHM_KEYRING must be unset, \"secret-service\" or \"keyutils\"")]
    UnknownBackend,
    #[error("the OS keyring is not available: {0}")]
    Unavailable(String),
    #[error("the OS keyring did not keep the cache key (an in-memory store is in use, so the key would be lost)")]
    NotPersistent,
    #[error("the cache key stored in the OS keyring is malformed")]
    Malformed,
    #[error("the OS random number generator failed")]
    Random,
}

fn keyring_err(e: keyring::Error) -> KeyError {
    // keyring's messages name the platform failure, never the secret.
    KeyError::Unavailable(e.to_string())
}

/// Cache keys in the OS keyring: service [`KEYRING_SERVICE`] (or another for
/// tests), one account per cache profile (e.g. `"default"` or the cache file name).
#[derive(Debug, Clone)]
pub struct KeyStore {
    service: String,
    backend: KeyringBackend,
}

impl KeyStore {
    /// The workstation's key store (service `phm-workstation`).
    pub fn new() -> Result<KeyStore, KeyError> {
        KeyStore::with_service(KEYRING_SERVICE)
    }

    /// A key store under another service name (tests use a per-run name).
    pub fn with_service(service: &str) -> Result<KeyStore, KeyError> {
        let backend = init_keyring_backend()?;
        Ok(KeyStore {
            service: service.to_owned(),
            backend,
        })
    }

    pub fn backend(&self) -> KeyringBackend {
        self.backend
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    fn entry(&self, account: &str) -> Result<keyring::Entry, KeyError> {
        keyring::Entry::new(&self.service, account).map_err(keyring_err)
    }

    /// The stored key, or `None` if this account has none.
    pub fn load(&self, account: &str) -> Result<Option<CacheKey>, KeyError> {
        match self.entry(account)?.get_password() {
            Ok(hex) => {
                let k = CacheKey::from_hex(&hex);
                wipe_string(hex);
                k.map(Some).ok_or(KeyError::Malformed)
            }
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_err(e)),
        }
    }

    /// Stores a new random key for `account` (replacing any existing one) and
    /// checks, through a fresh entry, that the keyring really kept it.
    pub fn create(&self, account: &str) -> Result<CacheKey, KeyError> {
        let key = CacheKey::generate()?;
        let hex = key.to_hex();
        let r = self.entry(account)?.set_password(&hex);
        wipe_string(hex);
        r.map_err(keyring_err)?;
        match self.load(account)? {
            Some(k) if k == key => Ok(key),
            _ => Err(KeyError::NotPersistent),
        }
    }

    /// The key for `account`, created on first use.
    pub fn load_or_create(&self, account: &str) -> Result<CacheKey, KeyError> {
        match self.load(account)? {
            Some(k) => Ok(k),
            None => self.create(account),
        }
    }

    /// Stores a secret other than a cache key (the sync private key, the acknowledged
    /// audit head) under `account`, hex-encoded.
    pub fn store_secret(&self, account: &str, secret: &[u8]) -> Result<(), KeyError> {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let r = self.entry(account)?.set_password(&hex);
        wipe_string(hex);
        r.map_err(keyring_err)
    }

    /// A secret stored by [`Self::store_secret`], or `None`.
    pub fn load_secret(&self, account: &str) -> Result<Option<Vec<u8>>, KeyError> {
        match self.entry(account)?.get_password() {
            Ok(hex) => {
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("x"), 16))
                    .collect::<Result<Vec<u8>, _>>();
                let ok = hex.len() % 2 == 0;
                wipe_string(hex);
                match bytes {
                    Ok(b) if ok => Ok(Some(b)),
                    _ => Err(KeyError::Malformed),
                }
            }
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_err(e)),
        }
    }

    /// Removes the key (the cache file becomes unreadable). `Ok` if there was none.
    pub fn delete(&self, account: &str) -> Result<(), KeyError> {
        match self.entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_redacted_debug() {
        let k = CacheKey::generate().unwrap();
        let h = k.to_hex();
        assert_eq!(h.len(), 64);
        assert_eq!(CacheKey::from_hex(&h), Some(k.clone()));
        assert_eq!(format!("{k:?}"), "CacheKey(<redacted>)");
        assert!(!format!("{k:?}").contains(&h[..8]));
        assert_ne!(CacheKey::generate().unwrap(), k);
        assert_eq!(CacheKey::from_hex("zz"), None);
        assert_eq!(CacheKey::from_hex(&"g".repeat(64)), None);
        assert_eq!(CacheKey::from_hex(&"é".repeat(32)), None);
    }
}
