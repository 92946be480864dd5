//! A TLS-terminating fault proxy in front of the real `phm-edw serve`: it holds a
//! certificate from its own test CA (which the client is told to trust), reads each
//! HTTP/1.1 request, forwards it to the server over TLS (trusting the server's
//! self-signed certificate) and relays the answer — unless a rule says to answer 500 or
//! 429 with `Retry-After` instead, reset the connection, cut the body mid-way, send a
//! well-formed but truncated body, or expire every access token in the EDW first (so the
//! real server answers 401). Every request is logged (method, path, Range, status).
//!
//! The server must be started with `--public-url` = the proxy's URL, so its token
//! audience, status URLs and file URLs all point at the proxy.
#![allow(deprecated)] // TcpStream::set_linger: a zero linger (a reset) never blocks

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer this status (with `Retry-After: n` if given) without forwarding.
    Status(u16, Option<u64>),
    /// Read the request, then close the TCP connection with a reset (nothing answered).
    Reset,
    /// Forward; send the headers and this share (in percent) of the body, then reset.
    CutBody(u8),
    /// Forward; answer a well-formed response whose body is cut to this share (percent)
    /// of the real one, mid-line (`Content-Length` says the shorter length).
    Truncate(u8),
    /// Expire every access token in the EDW, then forward (the server answers 401).
    ExpireTokens,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    /// Matches when the request path contains this.
    pub path: String,
    /// Matching requests let through before the fault applies.
    pub skip: usize,
    /// How many times the fault applies.
    pub times: usize,
    pub fault: Fault,
}

impl Rule {
    pub fn new(method: &'static str, path: &str, fault: Fault) -> Rule {
        Rule {
            method,
            path: path.to_string(),
            skip: 0,
            times: 1,
            fault,
        }
    }
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    /// The status relayed (0: none, the connection was reset or cut).
    pub status: u16,
    pub fault: Option<Fault>,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Shared {
    upstream: Mutex<Option<(u16, Arc<rustls::ClientConfig>)>>,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Entry>>,
    /// Superuser database URL, for `ExpireTokens`.
    admin_db: Mutex<String>,
    /// Refuse connections (the server "down" behind the proxy): close at once.
    down: std::sync::atomic::AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    pub base: String,
    /// The CA the client must trust (`--ca`).
    pub ca: PathBuf,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Proxy {
    /// Listens on a free loopback port (the upstream is set later with [`Proxy::connect`]).
    pub fn start(admin_db: &str) -> Proxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        // A test CA and a certificate for 127.0.0.1 signed by it.
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "phm-sync test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let ca_path = dir.path().join("proxy-ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        let server_cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        *shared.admin_db.lock().unwrap() = admin_db.to_string();
        let sh = shared.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, sh) = (acceptor.clone(), sh.clone());
                tokio::spawn(async move {
                    if sh.down.load(std::sync::atomic::Ordering::SeqCst) {
                        let _ = tcp.set_linger(Some(Duration::ZERO));
                        return;
                    }
                    let _ = tcp.set_nodelay(true);
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = handle(tls, sh).await;
                    }
                });
            }
        });
        Proxy {
            port,
            base: format!("https://127.0.0.1:{port}"),
            ca: ca_path,
            shared,
            rt: Some(rt),
            _dir: dir,
        }
    }

    /// Forwards to the server on `port`, trusting its certificate `cert`.
    pub fn connect(&self, port: u16, cert: &Path) {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(cert).unwrap();
        for c in rustls_pemfile_certs(&pem) {
            roots.add(c).unwrap();
        }
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        *self.shared.upstream.lock().unwrap() = Some((port, Arc::new(cfg)));
    }

    pub fn add(&self, rule: Rule) {
        self.shared.rules.lock().unwrap().push(rule);
    }

    pub fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Rules not used up yet.
    pub fn pending_rules(&self) -> Vec<Rule> {
        self.shared
            .rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.times > 0)
            .cloned()
            .collect()
    }

    pub fn log(&self) -> Vec<Entry> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    pub fn set_down(&self, down: bool) {
        self.shared
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Certificates of a PEM file (DER).
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

/// `GET path` over TLS to 127.0.0.1:port trusting `cert`: the status, if any answer.
pub fn https_get_status(port: u16, cert: &Path, path: &str) -> Option<u16> {
    let pem = std::fs::read(cert).ok()?;
    let c = ureq::tls::Certificate::from_pem(&pem).ok()?.to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[c]))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent
        .get(format!("https://127.0.0.1:{port}{path}"))
        .call()
        .ok()
        .map(|r| r.status().as_u16())
}

struct Request {
    method: String,
    path: String,
    head: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads up to the end of the head (`\r\n\r\n`); returns (head, bytes after it).
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return Ok(Some((head, buf[i + 4..].to_vec())));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

fn parse_headers(lines: std::str::Lines<'_>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<Request>> {
    let Some((head, mut rest)) = read_head(s).await? else {
        return Ok(None);
    };
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let headers = parse_headers(lines);
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut chunk = [0u8; 8192];
    while rest.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    rest.truncate(len);
    Ok(Some(Request {
        method,
        path,
        head: headers,
        body: rest,
    }))
}

struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Forwards one request upstream on a fresh connection (`Connection: close`) and reads
/// the whole answer.
async fn forward(sh: &Shared, req: &Request) -> std::io::Result<Response> {
    let (port, cfg) = sh
        .upstream
        .lock()
        .unwrap()
        .clone()
        .expect("proxy: no upstream");
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut up = connector.connect(name, tcp).await?;
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.head {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        req.body.len()
    ));
    up.write_all(out.as_bytes()).await?;
    up.write_all(&req.body).await?;
    up.flush().await?;
    let mut raw = Vec::new();
    // The server closes after answering; a TLS close_notify missing is fine.
    let _ = up.read_to_end(&mut raw).await;
    let i = find(&raw, b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("proxy: no response head from upstream"))?;
    let head = String::from_utf8_lossy(&raw[..i]).into_owned();
    let mut body = raw[i + 4..].to_vec();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut parts = first.splitn(3, ' ');
    parts.next();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(502);
    let reason = parts.next().unwrap_or("").to_string();
    let headers = parse_headers(lines);
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Response {
        status,
        reason,
        headers: headers
            .into_iter()
            .filter(|(k, _)| {
                !["transfer-encoding", "content-length", "connection"]
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
            })
            .collect(),
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size_txt = String::from_utf8_lossy(&b[..i]);
        let size =
            usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        b = &b[(end + 2).min(b.len())..];
    }
    out
}

fn head_bytes(r: &Response, content_length: usize) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {} {}\r\n", r.status, r.reason);
    for (k, v) in &r.headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!(
        "Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    ));
    s.into_bytes()
}

/// The fault for this request, if a rule applies (and uses it up).
fn take_fault(sh: &Shared, req: &Request) -> Option<Fault> {
    let mut rules = sh.rules.lock().unwrap();
    for r in rules.iter_mut() {
        if r.times == 0 || r.method != req.method || !req.path.contains(&r.path) {
            continue;
        }
        if r.skip > 0 {
            r.skip -= 1;
            continue;
        }
        r.times -= 1;
        return Some(r.fault.clone());
    }
    None
}

async fn expire_tokens(sh: &Shared) {
    let db = sh.admin_db.lock().unwrap().clone();
    tokio::task::spawn_blocking(move || {
        let mut c = edw::connect(&db).unwrap();
        c.execute(
            "UPDATE auth.access_token SET expires_at = now() - interval '1 second'",
            &[],
        )
        .unwrap();
    })
    .await
    .unwrap();
}

async fn handle<S>(
    mut s: tokio_rustls::server::TlsStream<S>,
    sh: Arc<Shared>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + AsTcp,
{
    // One request per connection: every answer says `Connection: close`.
    let Some(req) = read_request(&mut s).await? else {
        return Ok(());
    };
    let fault = take_fault(&sh, &req);
    let mut entry = Entry {
        method: req.method.clone(),
        path: req.path.clone(),
        range: req.header("range").map(str::to_owned),
        status: 0,
        fault: fault.clone(),
        at: std::time::Instant::now(),
    };
    let result = async {
        match &fault {
            Some(Fault::Status(st, ra)) => {
                let body = format!(
                    "{{\"resourceType\":\"OperationOutcome\",\"issue\":[{{\"severity\":\"error\",\"code\":\"transient\",\"diagnostics\":\"injected {st}\"}}]}}"
                );
                let mut r = Response {
                    status: *st,
                    reason: "Injected".into(),
                    headers: vec![("Content-Type".into(), "application/fhir+json".into())],
                    body: body.into_bytes(),
                };
                if let Some(ra) = ra {
                    r.headers.push(("Retry-After".into(), ra.to_string()));
                }
                s.write_all(&head_bytes(&r, r.body.len())).await?;
                s.write_all(&r.body).await?;
                entry.status = *st;
            }
            Some(Fault::Reset) => {
                s.get_ref().0.tcp().set_linger(Some(Duration::ZERO))?;
                return Ok(());
            }
            Some(Fault::ExpireTokens) | None => {
                if fault == Some(Fault::ExpireTokens) {
                    expire_tokens(&sh).await;
                }
                let r = forward(&sh, &req).await?;
                s.write_all(&head_bytes(&r, r.body.len())).await?;
                s.write_all(&r.body).await?;
                entry.status = r.status;
            }
            Some(Fault::CutBody(pct)) => {
                let r = forward(&sh, &req).await?;
                let keep = r.body.len() * *pct as usize / 100;
                s.write_all(&head_bytes(&r, r.body.len())).await?;
                s.write_all(&r.body[..keep]).await?;
                s.flush().await?;
                s.get_ref().0.tcp().set_linger(Some(Duration::ZERO))?;
                return Ok(());
            }
            Some(Fault::Truncate(pct)) => {
                let r = forward(&sh, &req).await?;
                let mut keep = r.body.len() * *pct as usize / 100;
                // Mid-line: never right after a newline.
                while keep > 0 && r.body.get(keep - 1) == Some(&b'\n') {
                    keep -= 1;
                }
                s.write_all(&head_bytes(&r, keep)).await?;
                s.write_all(&r.body[..keep]).await?;
                entry.status = r.status;
            }
        }
        s.flush().await?;
        s.shutdown().await?;
        Ok::<(), std::io::Error>(())
    }
    .await;
    sh.log.lock().unwrap().push(entry);
    result
}

/// Access to the TCP stream under a TLS stream (to reset it).
pub trait AsTcp {
    fn tcp(&self) -> &TcpStream;
}
impl AsTcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}
