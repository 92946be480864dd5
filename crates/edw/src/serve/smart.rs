//! SMART Backend Services (SMART App Launch 2.x): discovery and the token endpoint.
//!
//! `POST /auth/token` takes `grant_type=client_credentials` with a `private_key_jwt`
//! client assertion. The assertion must be a JWS signed RS384 or ES384 with a key of
//! the client's registered JWKS (inline, or fetched over HTTPS by URL and cached for
//! [`JWKS_CACHE_SECS`]); the header's `kid` selects the key when present. Claims:
//! `iss` = `sub` = the client id, `aud` = this token endpoint's URL, `exp` not past
//! (beyond [`protocol::smart::CLOCK_SKEW_SECS`]) and at most 5 minutes ahead (plus the
//! same allowance), `jti` never seen before for the client (kept until the assertion
//! could no longer be accepted). Signature checks are `jsonwebtoken`'s (ring).
//!
//! The access token is 256 random bits (ring's system RNG), stored as its SHA-256 with
//! the client, granted scopes and expiry ([`TOKEN_LIFETIME_SECS`]); a revoked client's
//! tokens stop working at once. Every refusal is written to `audit.phi_access`.

use super::{audit_access, AppState, Caller, Peer};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use protocol::smart::{
    SmartConfiguration, TokenError, TokenResponse, CLIENT_ASSERTION_TYPE, CLOCK_SKEW_SECS,
    GRANT_TYPE, MAX_ASSERTION_LIFETIME_SECS,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lifetime of an access token.
pub const TOKEN_LIFETIME_SECS: i64 = 300;
/// How long a JWKS fetched by URL is reused.
pub const JWKS_CACHE_SECS: u64 = 300;
/// Largest JWKS document fetched.
const JWKS_MAX_BYTES: usize = 256 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// State of the token endpoint.
pub struct SmartState {
    roots: Arc<rustls::RootCertStore>,
    jwks_cache: Mutex<HashMap<String, (Instant, serde_json::Value)>>,
}

impl SmartState {
    pub fn new(roots: Arc<rustls::RootCertStore>) -> Self {
        SmartState {
            roots,
            jwks_cache: Mutex::new(HashMap::new()),
        }
    }
}

/// Trust roots for JWKS URLs: the webpki roots plus an optional extra PEM file.
pub fn jwks_roots(extra: Option<&std::path::Path>) -> crate::Result<Arc<rustls::RootCertStore>> {
    let mut store = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(p) = extra {
        for c in super::pg::read_pem_certs(p)? {
            store
                .add(c)
                .map_err(|e| crate::Error::msg(format!("--jwks-ca {}: {e}", p.display())))?;
        }
    }
    Ok(Arc::new(store))
}

/// The SMART scopes this server grants: `system/{*|Type}.{read|rs}`. Returns the type
/// and the permission part. Anything else (other contexts, write, v2 query
/// parameters) is `None`.
pub fn parse_scope(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix("system/")?;
    let (t, perm) = rest.rsplit_once('.')?;
    let type_ok = t == "*"
        || (t.len() <= 64
            && t.starts_with(|c: char| c.is_ascii_uppercase())
            && t.chars().all(|c| c.is_ascii_alphanumeric()));
    (type_ok && matches!(perm, "read" | "rs")).then_some((t, perm))
}

/// `GET /.well-known/smart-configuration` (and under `/fhir/`).
pub async fn configuration(State(app): State<Arc<AppState>>) -> Response {
    let c = SmartConfiguration {
        token_endpoint: app.token_url(),
        token_endpoint_auth_methods_supported: vec!["private_key_jwt".into()],
        token_endpoint_auth_signing_alg_values_supported: protocol::smart::SIGNING_ALGS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        grant_types_supported: vec![GRANT_TYPE.into()],
        scopes_supported: vec!["system/*.read".into(), "system/*.rs".into()],
        capabilities: vec!["client-confidential-asymmetric".into()],
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&c).unwrap_or_default(),
    )
        .into_response()
}

/// The Caller behind an access token (valid, unexpired, client not revoked).
pub async fn lookup_token(
    c: &deadpool_postgres::Object,
    token: &str,
) -> Result<Option<Caller>, tokio_postgres::Error> {
    let h = super::sha256(token.as_bytes());
    let row = c
        .query_opt(
            "SELECT c.id, c.org_role, t.scopes,
                    array(SELECT g.group_id FROM auth.client_group g
                          WHERE g.client_id = c.id ORDER BY g.group_id)
             FROM auth.access_token t JOIN auth.client c ON c.id = t.client_id
             WHERE t.token_sha256 = $1 AND t.expires_at > now() AND c.revoked_at IS NULL",
            &[&&h[..]],
        )
        .await?;
    Ok(row.map(|r| Caller {
        client_id: r.get(0),
        org_role: r.get(1),
        scopes: r.get(2),
        groups: r.get(3),
    }))
}

/// An OAuth error answer (RFC 6749 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = TokenError {
        error: error.into(),
        error_description: Some(description.into()),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response()
}

struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn refusal(status: StatusCode, error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error,
        description: description.into(),
    }
}

fn invalid_client(description: impl Into<String>) -> Refusal {
    refusal(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

fn now_secs() -> i64 {
    access::time::now_unix_ms().div_euclid(1000)
}

/// `POST /auth/token`.
pub async fn token(
    State(app): State<Arc<AppState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(c) = app.pool.get().await else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "database unavailable",
        );
    };
    let mut actor = "anonymous".to_string();
    let result = issue(&app, &c, &headers, &body, &mut actor).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(r) => r.status,
    };
    if audit_access(&c, &actor, "token", "AccessToken", None, status, peer)
        .await
        .is_err()
    {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "audit write failed",
        );
    }
    match result {
        Ok(t) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            serde_json::to_string(&t).unwrap_or_default(),
        )
            .into_response(),
        Err(r) => oauth_error(r.status, r.error, &r.description),
    }
}

struct ClientRow {
    id: String,
    jwks: Option<serde_json::Value>,
    jwks_url: Option<String>,
    revoked: bool,
}

async fn issue(
    app: &AppState,
    c: &deadpool_postgres::Object,
    headers: &HeaderMap,
    body: &[u8],
    actor: &mut String,
) -> Result<TokenResponse, Refusal> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if params.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("parameter {k} is repeated"),
            ));
        }
    }
    let p = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match p("grant_type") {
        Some(GRANT_TYPE) => {}
        Some(_) => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ))
        }
        None => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            ))
        }
    }
    if p("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}"),
        ));
    }
    let Some(assertion) = p("client_assertion") else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_assertion is required",
        ));
    };
    let Some(scope) = p("scope") else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope is required",
        ));
    };
    // Header: only RS384 / ES384 (`none`, HS*, RS256, ... are refused here).
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid_client("the client assertion is not a signed JWT"))?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(invalid_client(format!(
            "the client assertion is signed {:?}; only RS384 and ES384 are accepted",
            header.alg
        )));
    }
    // The claimed client (verified below with its own keys).
    let iss = assertion
        .split('.')
        .nth(1)
        .and_then(|p| B64.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("iss").and_then(|x| x.as_str()).map(str::to_owned))
        .ok_or_else(|| invalid_client("the client assertion has no iss"))?;
    let client = load_client(c, &iss)
        .await
        .map_err(|_| {
            refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "client lookup failed",
            )
        })?
        .ok_or_else(|| invalid_client("unknown client"))?;
    *actor = client.id.clone();
    if client.revoked {
        return Err(invalid_client("the client is revoked"));
    }
    let claims = verify_assertion(app, &client, &header, assertion).await?;
    // jti: once per client. Recorded only after the signature verified.
    let jti = claims
        .get("jti")
        .and_then(|x| x.as_str())
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid_client("the client assertion has no jti"))?;
    let exp = claims.get("exp").and_then(|x| x.as_i64()).unwrap_or(0);
    let db_err = |_| {
        refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "token store failed",
        )
    };
    c.execute("DELETE FROM auth.used_jti WHERE expires_at < now()", &[])
        .await
        .map_err(db_err)?;
    let fresh = c
        .execute(
            "INSERT INTO auth.used_jti (client_id, jti, expires_at)
             VALUES ($1, $2, to_timestamp($3::bigint))
             ON CONFLICT DO NOTHING",
            &[&client.id, &jti, &(exp + CLOCK_SKEW_SECS)],
        )
        .await
        .map_err(db_err)?;
    if fresh == 0 {
        return Err(invalid_client(
            "the client assertion's jti was already used",
        ));
    }
    // Scope: what was asked for and this server grants.
    let mut granted: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if parse_scope(s).is_some() && !granted.iter().any(|g| g == s) {
            granted.push(s.to_string());
        }
    }
    if granted.is_empty() {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "none of the requested scopes can be granted (system/*.read, system/*.rs or per type)",
        ));
    }
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).map_err(|_| {
        refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        )
    })?;
    let access_token = B64.encode(raw);
    let h = super::sha256(access_token.as_bytes());
    c.execute(
        "DELETE FROM auth.access_token WHERE expires_at < now()",
        &[],
    )
    .await
    .map_err(db_err)?;
    c.execute(
        "INSERT INTO auth.access_token (token_sha256, client_id, scopes, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint))",
        &[&&h[..], &client.id, &granted, &TOKEN_LIFETIME_SECS],
    )
    .await
    .map_err(db_err)?;
    Ok(TokenResponse {
        access_token,
        token_type: "bearer".into(),
        expires_in: TOKEN_LIFETIME_SECS,
        scope: granted.join(" "),
    })
}

async fn load_client(
    c: &deadpool_postgres::Object,
    id: &str,
) -> Result<Option<ClientRow>, tokio_postgres::Error> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    let row = c
        .query_opt(
            "SELECT id, jwks::text, jwks_url, revoked_at IS NOT NULL FROM auth.client WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| ClientRow {
        id: r.get(0),
        jwks: r
            .get::<_, Option<String>>(1)
            .and_then(|s| serde_json::from_str(&s).ok()),
        jwks_url: r.get(2),
        revoked: r.get(3),
    }))
}

/// Keys of a JWKS usable for `alg` (and `kid`, when given).
fn candidate_keys(jwks: &serde_json::Value, alg: Algorithm, kid: Option<&str>) -> Vec<DecodingKey> {
    let Some(keys) = jwks.get("keys").and_then(|k| k.as_array()) else {
        return Vec::new();
    };
    let s = |k: &serde_json::Value, f: &str| k.get(f).and_then(|x| x.as_str()).map(str::to_owned);
    let alg_name = format!("{alg:?}");
    keys.iter()
        .filter(|k| kid.is_none() || s(k, "kid").as_deref() == kid)
        .filter(|k| s(k, "alg").is_none_or(|a| a == alg_name))
        .filter(|k| s(k, "use").is_none_or(|u| u == "sig"))
        .filter_map(|k| match (alg, s(k, "kty").as_deref()) {
            (Algorithm::RS384, Some("RSA")) => {
                DecodingKey::from_rsa_components(&s(k, "n")?, &s(k, "e")?).ok()
            }
            (Algorithm::ES384, Some("EC")) if s(k, "crv").as_deref() == Some("P-384") => {
                DecodingKey::from_ec_components(&s(k, "x")?, &s(k, "y")?).ok()
            }
            _ => None,
        })
        .collect()
}

async fn verify_assertion(
    app: &AppState,
    client: &ClientRow,
    header: &jsonwebtoken::Header,
    assertion: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Refusal> {
    let kid = header.kid.as_deref();
    let mut keys = match (&client.jwks, &client.jwks_url) {
        (Some(j), _) => candidate_keys(j, header.alg, kid),
        (None, Some(url)) => {
            let j = app.smart.jwks(url, false).await.map_err(invalid_client)?;
            let mut k = candidate_keys(&j, header.alg, kid);
            if k.is_empty() {
                // The client may have rotated its keys since we cached them.
                let j = app.smart.jwks(url, true).await.map_err(invalid_client)?;
                k = candidate_keys(&j, header.alg, kid);
            }
            k
        }
        (None, None) => Vec::new(),
    };
    if keys.is_empty() {
        return Err(invalid_client(
            "no key of the client's JWKS matches the assertion's kid and alg",
        ));
    }
    let mut v = Validation::new(header.alg);
    v.leeway = CLOCK_SKEW_SECS as u64;
    v.set_audience(&[app.token_url()]);
    v.set_issuer(&[client.id.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut last = invalid_client("the client assertion's signature does not verify");
    for key in keys.drain(..) {
        use jsonwebtoken::errors::ErrorKind as K;
        match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            assertion, &key, &v,
        ) {
            Ok(d) => {
                let claims = d.claims;
                let str_of = |f: &str| claims.get(f).and_then(|x| x.as_str());
                if str_of("sub") != Some(client.id.as_str()) {
                    return Err(invalid_client(
                        "the assertion's sub must equal its iss (the client id)",
                    ));
                }
                let exp = claims.get("exp").and_then(|x| x.as_i64()).unwrap_or(0);
                let now = now_secs();
                if exp > now + MAX_ASSERTION_LIFETIME_SECS + CLOCK_SKEW_SECS {
                    return Err(invalid_client(
                        "the assertion's exp is more than 5 minutes ahead",
                    ));
                }
                if exp < now - CLOCK_SKEW_SECS {
                    return Err(invalid_client("the client assertion has expired"));
                }
                return Ok(claims);
            }
            Err(e) => {
                last = match e.kind() {
                    K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => continue,
                    K::ExpiredSignature => invalid_client("the client assertion has expired"),
                    K::ImmatureSignature => {
                        invalid_client("the client assertion is not valid yet (nbf)")
                    }
                    K::InvalidAudience => invalid_client(
                        "the assertion's aud must be this server's token endpoint URL",
                    ),
                    K::InvalidIssuer => invalid_client("the assertion's iss is not the client"),
                    K::MissingRequiredClaim(c) => {
                        invalid_client(format!("the client assertion has no {c}"))
                    }
                    _ => invalid_client("the client assertion is malformed"),
                };
                return Err(last);
            }
        }
    }
    Err(last)
}

impl SmartState {
    /// The JWKS at `url`, from the cache unless `refresh` or older than
    /// [`JWKS_CACHE_SECS`]. Errors are PHI-free texts for the client.
    async fn jwks(&self, url: &str, refresh: bool) -> Result<serde_json::Value, String> {
        if !refresh {
            let cache = self.jwks_cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = cache.get(url) {
                if at.elapsed() < Duration::from_secs(JWKS_CACHE_SECS) {
                    return Ok(v.clone());
                }
            }
        }
        let v = tokio::time::timeout(Duration::from_secs(10), fetch_jwks(url, self.roots.clone()))
            .await
            .map_err(|_| "fetching the client's JWKS timed out".to_string())??;
        self.jwks_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_string(), (Instant::now(), v.clone()));
        Ok(v)
    }
}

/// GET over HTTPS (rustls, ring; the given trust roots), body at most
/// [`JWKS_MAX_BYTES`], must be a JWKS.
async fn fetch_jwks(
    url: &str,
    roots: Arc<rustls::RootCertStore>,
) -> Result<serde_json::Value, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    let fail = |m: &str| format!("the client's JWKS could not be fetched: {m}");
    let uri: hyper::Uri = url.parse().map_err(|_| fail("bad URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(fail("the JWKS URL must be https"));
    }
    let host = uri.host().ok_or_else(|| fail("no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    let cfg = rustls::ClientConfig::builder_with_provider(super::pg::ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|_| fail("tls"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host_for_name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(host_for_name.clone())
        .map_err(|_| fail("bad host name"))?;
    let tcp = tokio::net::TcpStream::connect((host_for_name.as_str(), port))
        .await
        .map_err(|_| fail("connection failed"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| fail(&format!("TLS: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|_| fail("HTTP handshake"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let req = hyper::Request::get(path)
        .header(
            header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        )
        .header(header::ACCEPT, "application/json, application/jwk-set+json")
        .body(Empty::<axum::body::Bytes>::new())
        .map_err(|_| fail("request"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|_| fail("request failed"))?;
    if resp.status() != StatusCode::OK {
        return Err(fail(&format!("HTTP {}", resp.status().as_u16())));
    }
    let body = Limited::new(resp.into_body(), JWKS_MAX_BYTES)
        .collect()
        .await
        .map_err(|_| fail("body too large or cut"))?
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| fail("not JSON"))?;
    validate_jwks(&v).map_err(|e| fail(&e))?;
    Ok(v)
}

/// A registrable JWKS: `keys` with only public RSA (>= 2048 bits) or EC P-384 keys.
pub fn validate_jwks(v: &serde_json::Value) -> Result<(), String> {
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("a JWKS is an object with a \"keys\" array")?;
    if keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    for (i, k) in keys.iter().enumerate() {
        let s = |f: &str| k.get(f).and_then(|x| x.as_str());
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            if k.get(private).is_some() {
                return Err(format!(
                    "key {i} contains private key material ({private}); register the public keys only"
                ));
            }
        }
        match s("kty") {
            Some("RSA") => {
                let n = s("n")
                    .and_then(|n| B64.decode(n).ok())
                    .ok_or(format!("key {i}: RSA key without a valid n"))?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(format!("key {i}: RSA keys must have at least 2048 bits"));
                }
                if s("e").and_then(|e| B64.decode(e).ok()).is_none() {
                    return Err(format!("key {i}: RSA key without a valid e"));
                }
                if s("alg").is_some_and(|a| a != "RS384") {
                    return Err(format!("key {i}: an RSA key's alg must be RS384"));
                }
            }
            Some("EC") => {
                if s("crv") != Some("P-384") {
                    return Err(format!("key {i}: EC keys must be on P-384"));
                }
                for c in ["x", "y"] {
                    if s(c).and_then(|x| B64.decode(x).ok()).map(|b| b.len()) != Some(48) {
                        return Err(format!("key {i}: EC key without a valid {c}"));
                    }
                }
                if s("alg").is_some_and(|a| a != "ES384") {
                    return Err(format!("key {i}: an EC key's alg must be ES384"));
                }
            }
            _ => return Err(format!("key {i}: kty must be RSA or EC")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_granted() {
        assert_eq!(parse_scope("system/*.rs"), Some(("*", "rs")));
        assert_eq!(parse_scope("system/*.read"), Some(("*", "read")));
        assert_eq!(parse_scope("system/Patient.rs"), Some(("Patient", "rs")));
        assert_eq!(parse_scope("system/*.write"), None);
        assert_eq!(parse_scope("patient/*.rs"), None);
        assert_eq!(
            parse_scope("system/Observation.rs?category=laboratory"),
            None
        );
        assert_eq!(parse_scope("system/patient.rs"), None);
    }

    #[test]
    fn jwks_validation() {
        let x = B64.encode([7u8; 48]);
        let ec = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-384", "x": x, "y": x}]});
        assert!(validate_jwks(&ec).is_ok());
        let p256 = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": x}]});
        assert!(validate_jwks(&p256).is_err());
        let private =
            serde_json::json!({"keys": [{"kty": "EC", "crv": "P-384", "x": x, "y": x, "d": x}]});
        assert!(validate_jwks(&private).unwrap_err().contains("private"));
        let small = serde_json::json!({"keys": [{"kty": "RSA", "n": B64.encode([0xffu8; 128]), "e": "AQAB"}]});
        assert!(validate_jwks(&small).unwrap_err().contains("2048"));
        let ok = serde_json::json!({"keys": [{"kty": "RSA", "n": B64.encode([0xffu8; 256]), "e": "AQAB"}]});
        assert!(validate_jwks(&ok).is_ok());
        assert!(validate_jwks(&serde_json::json!({"keys": []})).is_err());
        assert!(validate_jwks(&serde_json::json!({"kty": "RSA"})).is_err());
    }
}
