//! Test helpers for `phm-edw serve` over HTTPS with SMART Backend Services:
//! start the real server binary, trust its self-signed certificate, register a client
//! with the real `phm-edw client add`, sign assertions (ES384 with ring, RS384 with an
//! openssl-made key) and get access tokens.
//!
//! ```ignore
//! mod common;
//! use common::smart::*;
//! let srv = Server::start(&db_url, &[]);            // HTTPS on 127.0.0.1:<free port>
//! let key = Es384Key::generate();
//! let id = register_client(&admin_db_url, "ws", "org1", &[group_id], &key.jwks());
//! let token = srv.token(&id, &key, "system/*.rs");   // panics unless 200
//! let (status, body) = srv.get("/fhir/Group", Some(&token));
//! ```

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_phm-edw")
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fresh private directory under the system temp dir (removed on drop).
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("edw-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `phm-edw serve` as a child process over HTTPS with a self-signed certificate.
pub struct Server {
    child: Child,
    pub port: u16,
    pub base: String,
    /// The state directory (certificate in `tls/`).
    pub state: PathBuf,
    _own_state: Option<TempDir>,
    pub agent: ureq::Agent,
    pub stderr_path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS agent trusting exactly `cert_pem`; statuses are not errors.
pub fn agent_trusting(cert_pem: &Path) -> ureq::Agent {
    let pem = std::fs::read(cert_pem).unwrap();
    let cert = ureq::tls::Certificate::from_pem(&pem).unwrap().to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

impl Server {
    /// Starts the server on a free loopback port with a fresh state directory.
    pub fn start(db: &str, extra: &[&str]) -> Server {
        let state = TempDir::new("serve-state");
        let mut s = Self::start_in(db, extra, &state.0.clone());
        s._own_state = Some(state);
        s
    }

    /// Starts the server with the given state directory (a certificate made there
    /// before is reused).
    pub fn start_in(db: &str, extra: &[&str], state: &Path) -> Server {
        let state = state.to_path_buf();
        let port = testkit::pgharness::free_port().unwrap();
        let stderr_path = state.with_extension("stderr");
        let child = Command::new(bin())
            .args(["serve", "--db", db, "--addr", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let cert = state.join("tls/cert.pem");
        let t0 = Instant::now();
        let mut srv = None;
        let mut child = Some(child);
        while t0.elapsed() < Duration::from_secs(30) {
            if cert.exists() {
                let agent = agent_trusting(&cert);
                let base = format!("https://127.0.0.1:{port}");
                if agent
                    .get(format!("{base}/health"))
                    .call()
                    .is_ok_and(|r| r.status() == 200)
                {
                    srv = Some(Server {
                        child: child.take().unwrap(),
                        port,
                        base,
                        state: state.clone(),
                        _own_state: None,
                        agent,
                        stderr_path: stderr_path.clone(),
                    });
                    break;
                }
            }
            if let Some(Ok(Some(st))) = child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "server exited {st}: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        srv.unwrap_or_else(|| {
            panic!(
                "server did not start: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        })
    }

    pub fn cert(&self) -> PathBuf {
        self.state.join("tls/cert.pem")
    }

    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.base)
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
        let mut r = r.expect("HTTP request failed");
        let st = r.status().as_u16();
        (st, r.body_mut().read_to_string().unwrap_or_default())
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        Self::finish(req.call())
    }

    pub fn post_json(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        Self::finish(req.send(body))
    }

    /// `POST /auth/token` with a client assertion; (status, body).
    pub fn token_request(&self, assertion: &str, scope: &str) -> (u16, String) {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", assertion)
            .finish();
        Self::finish(
            self.agent
                .post(self.token_url())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(form),
        )
    }

    /// An access token for `client_id` signed with `key` (panics unless granted).
    pub fn token(&self, client_id: &str, key: &dyn SigningKey, scope: &str) -> String {
        let a = key.assertion(&Claims::new(client_id, &self.token_url()));
        let (st, body) = self.token_request(&a, scope);
        assert_eq!(st, 200, "token: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }
}

/// Claims of a client assertion, changeable per test.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub jti: String,
}

impl Claims {
    /// iss = sub = client, aud = token URL, exp in 4 minutes, a fresh jti.
    pub fn new(client_id: &str, token_url: &str) -> Claims {
        let mut j = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut j).unwrap();
        Claims {
            iss: client_id.into(),
            sub: client_id.into(),
            aud: token_url.into(),
            exp: now() + 240,
            jti: B64.encode(j),
        }
    }
}

pub trait SigningKey {
    fn jwks(&self) -> serde_json::Value;
    fn assertion(&self, c: &Claims) -> String;
}

/// An ES384 key made with ring.
pub struct Es384Key {
    pub pkcs8: Vec<u8>,
    pub kid: String,
    pub x: String,
    pub y: String,
}

impl Es384Key {
    pub fn generate() -> Es384Key {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pt = kp.public_key().as_ref();
        assert_eq!(pt.len(), 97);
        let x = B64.encode(&pt[1..49]);
        let y = B64.encode(&pt[49..97]);
        Es384Key {
            pkcs8: pkcs8.as_ref().to_vec(),
            kid: format!("es-{}", &x[..8]),
            x,
            y,
        }
    }
}

impl SigningKey for Es384Key {
    fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{"kty": "EC", "crv": "P-384", "x": self.x, "y": self.y,
            "kid": self.kid, "alg": "ES384", "use": "sig"}]})
    }
    fn assertion(&self, c: &Claims) -> String {
        let mut h = Header::new(Algorithm::ES384);
        h.kid = Some(self.kid.clone());
        h.typ = Some("JWT".into());
        jsonwebtoken::encode(&h, c, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

/// An RSA 2048 key made with `openssl genpkey`, signing RS384 (or `alg`).
pub struct RsaKey {
    pub pem: Vec<u8>,
    pub n: String,
    pub kid: String,
    pub alg: Algorithm,
}

impl RsaKey {
    pub fn generate(dir: &Path) -> RsaKey {
        let path = dir.join(format!(
            "rsa-{}.pem",
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let st = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl genpkey");
        let out = Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let hex = text.trim().strip_prefix("Modulus=").unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let n = B64.encode(bytes);
        RsaKey {
            pem: std::fs::read(&path).unwrap(),
            kid: format!("rs-{}", &n[..8]),
            n,
            alg: Algorithm::RS384,
        }
    }

    /// The same key signing with another algorithm (e.g. RS256, to be refused).
    pub fn with_alg(&self, alg: Algorithm) -> RsaKey {
        RsaKey {
            pem: self.pem.clone(),
            n: self.n.clone(),
            kid: self.kid.clone(),
            alg,
        }
    }
}

impl SigningKey for RsaKey {
    fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{"kty": "RSA", "n": self.n, "e": "AQAB", "kid": self.kid,
            "alg": "RS384", "use": "sig"}]})
    }
    fn assertion(&self, c: &Claims) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, c, &EncodingKey::from_rsa_pem(&self.pem).unwrap()).unwrap()
    }
}

/// `phm-edw client add` (the real command) with an inline JWKS; returns the client id.
pub fn register_client(
    db: &str,
    name: &str,
    org: &str,
    groups: &[i64],
    jwks: &serde_json::Value,
) -> String {
    let dir = TempDir::new("jwks");
    let f = dir.0.join("jwks.json");
    std::fs::write(&f, jwks.to_string()).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "client", "add", "--db", db, "--name", name, "--org", org, "--jwks",
    ])
    .arg(&f);
    for g in groups {
        cmd.args(["--group", &g.to_string()]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "client add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Registers a client with a fresh ES384 key and gets a `system/*.rs` token:
/// (client id, key, access token).
pub fn client_with_token(
    srv: &Server,
    admin_db: &str,
    org: &str,
    groups: &[i64],
) -> (String, Es384Key, String) {
    let key = Es384Key::generate();
    let id = register_client(admin_db, "test workstation", org, groups, &key.jwks());
    let token = srv.token(&id, &key, "system/*.rs");
    (id, key, token)
}

/// A workstation's audit chain of `n` sealed records (a clinician viewing `patient`'s
/// timeline), from the genesis hash.
pub fn audit_chain(n: i64, patient: &str) -> Vec<access::audit::AuditRecord> {
    use access::audit::{AuditEntry, Outcome, GENESIS_HASH};
    use access::role::{Action, Role};
    let mut out: Vec<access::audit::AuditRecord> = Vec::new();
    for seq in 1..=n {
        let prev = out
            .last()
            .map_or(GENESIS_HASH.to_string(), |r| r.hash.clone());
        let e = AuditEntry::now(
            "clinician",
            Some(Role::Clinician),
            None,
            Action::ViewTimeline,
            Outcome::Allowed,
        )
        .with_patients([patient.to_string()]);
        out.push(e.seal(seq, &prev));
    }
    out
}
