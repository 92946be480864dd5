//! SMART Backend Services (SMART App Launch 2.x, "Backend Services"): discovery, the
//! client assertion, the token response.

use serde::{Deserialize, Serialize};

/// `client_assertion_type` of a `private_key_jwt` token request.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The only grant type of Backend Services.
pub const GRANT_TYPE: &str = "client_credentials";
/// Algorithms a server must support for the assertion (and the only ones accepted).
pub const SIGNING_ALGS: [&str; 2] = ["RS384", "ES384"];
/// `exp` may be at most this far ahead of the server's clock.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;
/// Allowance for clocks that differ between client and server.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// `GET /.well-known/smart-configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartConfiguration {
    pub token_endpoint: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Claims of the signed client assertion (JWT body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// The client id (iss and sub are both the client id).
    pub iss: String,
    pub sub: String,
    /// The token endpoint URL.
    pub aud: String,
    /// Expiry, seconds since the epoch; at most 5 minutes ahead.
    pub exp: i64,
    /// Unique per assertion; a server accepts each at most once.
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// `POST /auth/token` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
}

/// OAuth 2.0 error body (RFC 6749 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// The scopes a workstation asks for: SMART v2 read+search of everything in its
/// Groups (a v1 server understands `system/*.read`).
pub const WORKSTATION_SCOPE: &str = "system/*.rs";
