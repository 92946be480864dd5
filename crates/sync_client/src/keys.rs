//! The client's ES384 key pair (P-384, generated with ring), its public JWKS for
//! `phm-edw client add --jwks FILE`, and the signed client assertion of SMART Backend
//! Services (`private_key_jwt`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P384_SHA384_FIXED_SIGNING};

use crate::SyncError;

/// How far ahead the assertion's `exp` is (the server accepts at most 5 minutes).
pub const ASSERTION_LIFETIME_SECS: i64 = 240;

/// An ES384 (ECDSA P-384, SHA-384) key pair. The private key leaves only as PKCS#8 bytes
/// ([`KeyPair::pkcs8`]) for the caller to keep (the app: in the OS keyring).
pub struct KeyPair {
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new random key pair.
    pub fn generate() -> Result<KeyPair, SyncError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|_| SyncError::Key("could not generate a P-384 key pair".into()))?;
        KeyPair::from_pkcs8(doc.as_ref())
    }

    /// The key pair from its PKCS#8 (DER) bytes, as [`KeyPair::pkcs8`] gave them.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<KeyPair, SyncError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|_| SyncError::Key("the stored key is not a PKCS#8 P-384 key".into()))?;
        let (x, y) = xy(pair.public_key().as_ref())?;
        // RFC 7638: SHA-256 over the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-384","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        Ok(KeyPair {
            pkcs8: pkcs8.to_vec(),
            pair,
            kid,
        })
    }

    /// The private key as PKCS#8 (DER): secret, for the caller's key store only.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        let (x, y) = xy(self.pair.public_key().as_ref()).expect("checked when loaded");
        serde_json::json!({
            "kty": "EC", "crv": "P-384", "x": x, "y": y,
            "kid": self.kid, "alg": "ES384", "use": "sig", "key_ops": ["verify"]
        })
    }

    /// The public JWKS (`{"keys": [jwk]}`) to register with the server.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk()] })
    }

    /// A signed client assertion (compact JWS, ES384) for `client_id` at `token_url`, issued
    /// at `now` (seconds since the epoch), expiring [`ASSERTION_LIFETIME_SECS`] later, with a
    /// random `jti`.
    pub fn client_assertion(
        &self,
        client_id: &str,
        token_url: &str,
        now: i64,
    ) -> Result<String, SyncError> {
        let header = serde_json::json!({"alg": "ES384", "typ": "JWT", "kid": self.kid});
        let claims = protocol::smart::AssertionClaims {
            iss: client_id.to_owned(),
            sub: client_id.to_owned(),
            aud: token_url.to_owned(),
            exp: now + ASSERTION_LIFETIME_SECS,
            jti: random_uuid()?,
            iat: Some(now),
        };
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(&claims).expect("claims serialize"))
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| SyncError::Key("signing the client assertion failed".into()))?;
        Ok(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
    }
}

/// base64url x and y of an uncompressed P-384 point (`04 || x || y`).
fn xy(public: &[u8]) -> Result<(String, String), SyncError> {
    if public.len() != 97 || public[0] != 4 {
        return Err(SyncError::Key("unexpected public key encoding".into()));
    }
    Ok((B64.encode(&public[1..49]), B64.encode(&public[49..])))
}

/// A random (version 4) UUID.
pub fn random_uuid() -> Result<String, SyncError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| SyncError::Key("no randomness available".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};

    #[test]
    fn assertion_verifies_with_the_published_jwk() {
        let k = KeyPair::generate().unwrap();
        let k2 = KeyPair::from_pkcs8(k.pkcs8()).unwrap();
        assert_eq!(k.kid(), k2.kid());
        assert_eq!(k.kid().len(), 43);
        let jwt = k2
            .client_assertion("app", "https://edw/auth/token", 1_700_000_000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES384");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], k.kid());
        let claims: protocol::smart::AssertionClaims =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!((claims.iss.as_str(), claims.sub.as_str()), ("app", "app"));
        assert_eq!(claims.aud, "https://edw/auth/token");
        assert_eq!(claims.exp, 1_700_000_000 + 240);
        assert_eq!(claims.jti.len(), 36);
        // Verify with the public key rebuilt from the JWKS alone.
        let jwk = &k.jwks()["keys"][0];
        let mut point = vec![4u8];
        point.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
        let sig = B64.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &point)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("signature verifies");
        // Two assertions never share a jti.
        let other = k.client_assertion("app", "x", 0).unwrap();
        assert_ne!(other.split('.').nth(1), Some(parts[1]));
        assert!(KeyPair::from_pkcs8(b"not a key").is_err());
        assert!(!format!("{k:?}").contains(&B64.encode(k.pkcs8())));
    }
}
