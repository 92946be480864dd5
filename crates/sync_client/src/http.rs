//! HTTPS with ureq + rustls (ring): trust, retries with backoff, the SMART access token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::Body;

use crate::keys::KeyPair;
use crate::{SyncConfig, SyncError};

pub(crate) const FHIR_JSON: &str = "application/fhir+json";

/// One HTTP method with its body.
pub(crate) enum Method<'a> {
    Get,
    Delete,
    /// Body, content type.
    Post(&'a [u8], &'a str),
}

pub(crate) struct Http<'a> {
    agent: ureq::Agent,
    cfg: &'a SyncConfig,
    key: &'a KeyPair,
    cancel: &'a AtomicBool,
    token_url: Mutex<Option<String>>,
    token: Mutex<Option<(String, Instant)>>,
}

/// Whether a URL may be used: https, or http on loopback with the explicit flag.
pub fn check_url(cfg: &SyncConfig, url: &str) -> Result<(), SyncError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = if host.starts_with('[') {
            host.split(']').next().unwrap_or("").trim_start_matches('[')
        } else {
            host.split(':').next().unwrap_or("")
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback && cfg.allow_plain_http {
            return Ok(());
        }
        return Err(SyncError::Config(if loopback {
            "plain http:// needs the allow-plain-http setting".into()
        } else {
            "plain http:// is only allowed to this machine (loopback); use https://".into()
        }));
    }
    Err(SyncError::Config(
        "the server URL must start with https://".into(),
    ))
}

impl<'a> Http<'a> {
    pub(crate) fn new(
        cfg: &'a SyncConfig,
        key: &'a KeyPair,
        cancel: &'a AtomicBool,
    ) -> Result<Http<'a>, SyncError> {
        check_url(cfg, &cfg.base_url)?;
        let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        if let Some(pem) = &cfg.ca_pem {
            let mut n = 0;
            for item in ureq::tls::parse_pem(pem.as_bytes()) {
                if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                    roots.push(c);
                    n += 1;
                }
            }
            if n == 0 {
                return Err(SyncError::Config(
                    "the configured CA file holds no PEM certificate".into(),
                ));
            }
        }
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::new_with_certs(&roots))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .https_only(!cfg.allow_plain_http)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(cfg.read_timeout))
            .user_agent("phm-sync/0.1")
            .max_redirects(5)
            .build()
            .into();
        Ok(Http {
            agent,
            cfg,
            key,
            cancel,
            token_url: Mutex::new(None),
            token: Mutex::new(None),
        })
    }

    pub(crate) fn max_retries(&self) -> u32 {
        self.cfg.max_retries
    }

    pub(crate) fn set_token_url(&self, url: String) {
        *self.token_url.lock().unwrap() = Some(url);
    }

    pub(crate) fn check_cancel(&self) -> Result<(), SyncError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(SyncError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps `d` in small steps, stopping early when cancelled.
    pub(crate) fn sleep(&self, d: Duration) -> Result<(), SyncError> {
        let end = Instant::now() + d;
        loop {
            self.check_cancel()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    /// The wait before retry `attempt` (1-based): exponential with jitter, or the server's
    /// `Retry-After` (capped), also with a little jitter.
    pub(crate) fn backoff(&self, attempt: u32, retry_after: Option<u64>) -> Duration {
        let base = match retry_after {
            Some(s) => Duration::from_secs(s).min(self.cfg.max_retry_after),
            None => {
                let ms = 250u64.saturating_mul(1 << attempt.min(8));
                Duration::from_millis(ms).min(Duration::from_secs(30))
            }
        };
        base + Duration::from_millis(jitter_ms(base.as_millis() as u64 / 10 + 50))
    }

    /// One request, retried: connection failures and resets, 429 and 5xx (honouring
    /// `Retry-After`), up to `cfg.max_retries` times; a 401 refreshes the token once.
    /// Other statuses are returned as they are.
    pub(crate) fn send(
        &self,
        method: &Method<'_>,
        url: &str,
        headers: &[(&str, &str)],
        auth: bool,
    ) -> Result<Response<Body>, SyncError> {
        check_url(self.cfg, url)?;
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            self.check_cancel()?;
            let bearer = if auth {
                Some(format!("Bearer {}", self.token()?))
            } else {
                None
            };
            let result = self.send_once(method, url, headers, bearer.as_deref());
            attempt += 1;
            let retries_left = attempt <= self.cfg.max_retries;
            match result {
                Err(e) => {
                    let e = classify(e);
                    if e.is_transient() && retries_left {
                        self.sleep(self.backoff(attempt, None))?;
                        continue;
                    }
                    return Err(e);
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 && auth && !refreshed {
                        refreshed = true;
                        *self.token.lock().unwrap() = None;
                        continue;
                    }
                    if (status == 429 || status >= 500) && retries_left {
                        let ra = header(&resp, "retry-after")
                            .and_then(|v| protocol::bulk::retry_after_secs(&v));
                        self.sleep(self.backoff(attempt, ra))?;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    /// [`Http::send`] and the whole (small) body read, retrying the request when the
    /// answer breaks off mid-body (a reset or a cut connection after the headers): for
    /// requests that are safe to repeat (reads, and writes the server takes idempotently).
    pub(crate) fn send_read(
        &self,
        method: &Method<'_>,
        url: &str,
        headers: &[(&str, &str)],
        auth: bool,
    ) -> Result<(u16, Vec<u8>), SyncError> {
        let mut attempt = 0u32;
        loop {
            let resp = self.send(method, url, headers, auth)?;
            let status = resp.status().as_u16();
            match read_small(resp) {
                Ok(body) => return Ok((status, body)),
                Err(e) if e.is_transient() && attempt < self.cfg.max_retries => {
                    attempt += 1;
                    self.sleep(self.backoff(attempt, None))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn send_once(
        &self,
        method: &Method<'_>,
        url: &str,
        headers: &[(&str, &str)],
        bearer: Option<&str>,
    ) -> Result<Response<Body>, ureq::Error> {
        macro_rules! with_headers {
            ($req:expr) => {{
                let mut r = $req;
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                if let Some(b) = bearer {
                    r = r.header("Authorization", b);
                }
                r
            }};
        }
        match method {
            Method::Get => with_headers!(self.agent.get(url)).call(),
            Method::Delete => with_headers!(self.agent.delete(url)).call(),
            Method::Post(body, ct) => {
                with_headers!(self.agent.post(url).header("Content-Type", *ct)).send(*body)
            }
        }
    }

    /// The access token, fetched (client_credentials + private_key_jwt) when there is none
    /// or it expires within 30 s.
    pub(crate) fn token(&self) -> Result<String, SyncError> {
        let mut t = self.token.lock().unwrap();
        if let Some((tok, exp)) = t.as_ref() {
            if Instant::now() + Duration::from_secs(30) < *exp {
                return Ok(tok.clone());
            }
        }
        let token_url = self
            .token_url
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| SyncError::Protocol("no token endpoint discovered".into()))?;
        let mut attempt = 0u32;
        let resp = loop {
            self.check_cancel()?;
            // A fresh assertion (new jti) for every attempt: a server accepts each once.
            let assertion = self.key.client_assertion(
                &self.cfg.client_id,
                &token_url,
                now_secs() + crate::testhook::clock_skew_secs(),
            )?;
            let form = form_encode(&[
                ("grant_type", protocol::smart::GRANT_TYPE),
                ("scope", &self.cfg.scope),
                (
                    "client_assertion_type",
                    protocol::smart::CLIENT_ASSERTION_TYPE,
                ),
                ("client_assertion", &assertion),
            ]);
            attempt += 1;
            let r = self.send_once(
                &Method::Post(form.as_bytes(), "application/x-www-form-urlencoded"),
                &token_url,
                &[("Accept", "application/json")],
                None,
            );
            let retries_left = attempt <= self.cfg.max_retries;
            match r {
                Err(e) => {
                    let e = classify(e);
                    if e.is_transient() && retries_left {
                        self.sleep(self.backoff(attempt, None))?;
                        continue;
                    }
                    return Err(e);
                }
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    if (s == 429 || s >= 500) && retries_left {
                        let ra = header(&resp, "retry-after")
                            .and_then(|v| protocol::bulk::retry_after_secs(&v));
                        self.sleep(self.backoff(attempt, ra))?;
                        continue;
                    }
                    break resp;
                }
            }
        };
        let status = resp.status().as_u16();
        let body = read_small(resp)?;
        if status == 200 {
            let tr: protocol::smart::TokenResponse = serde_json::from_slice(&body)
                .map_err(|_| SyncError::Protocol("the token response is not valid".into()))?;
            if !tr.token_type.eq_ignore_ascii_case("bearer") {
                return Err(SyncError::Protocol(format!(
                    "unexpected token type {:?}",
                    tr.token_type
                )));
            }
            let life = Duration::from_secs(tr.expires_in.clamp(1, 86_400) as u64);
            *t = Some((tr.access_token.clone(), Instant::now() + life));
            return Ok(tr.access_token);
        }
        match serde_json::from_slice::<protocol::smart::TokenError>(&body) {
            Ok(te) if (400..500).contains(&status) => Err(SyncError::Unauthorized {
                error: te.error,
                description: te.error_description,
            }),
            _ => Err(status_error(status, &body)),
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn jitter_ms(max: u64) -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u32::from_le_bytes(b) as u64 % max.max(1)
}

pub(crate) fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads a small (≤ 16 MiB) body.
pub(crate) fn read_small(resp: Response<Body>) -> Result<Vec<u8>, SyncError> {
    let mut body = resp.into_body();
    body.with_config()
        .limit(16 << 20)
        .read_to_vec()
        .map_err(classify)
}

/// The error for an unexpected status, with the OperationOutcome's diagnostics if any.
pub(crate) fn status_error(status: u16, body: &[u8]) -> SyncError {
    let diag = protocol::outcome_diagnostics(body);
    match status {
        401 => SyncError::Unauthorized {
            error: "invalid_token".into(),
            description: diag,
        },
        403 => SyncError::Forbidden(diag),
        _ => SyncError::Server {
            status,
            diagnostics: diag,
        },
    }
}

/// Maps a transport error to a plain category.
pub(crate) fn classify(e: ureq::Error) -> SyncError {
    use ureq::Error as E;
    match e {
        E::HostNotFound => {
            SyncError::Offline("the server's host name could not be resolved".into())
        }
        E::ConnectionFailed => SyncError::Offline("the server could not be reached".into()),
        E::Timeout(_) => SyncError::Transient("the server did not answer in time".into()),
        E::Io(io) => {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused
                | K::NetworkUnreachable
                | K::HostUnreachable
                | K::AddrNotAvailable
                | K::NetworkDown => {
                    SyncError::Offline(format!("the server could not be reached ({})", io.kind()))
                }
                k => SyncError::Transient(format!("connection error ({k})")),
            }
        }
        E::Tls(m) => SyncError::Tls(m.to_owned()),
        E::Rustls(r) => SyncError::Tls(r.to_string()),
        E::Pem(_) => SyncError::Config("the CA file is not valid PEM".into()),
        E::RequireHttpsOnly(_) => SyncError::Config("plain http:// is not allowed".into()),
        E::BodyExceedsLimit(_) => SyncError::Protocol("a response was larger than expected".into()),
        E::Protocol(p) => SyncError::Transient(format!("HTTP protocol error ({p})")),
        E::BodyStalled => SyncError::Transient("the download stalled".into()),
        other => SyncError::Protocol(other.to_string()),
    }
}

/// `application/x-www-form-urlencoded`.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
