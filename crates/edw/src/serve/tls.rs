//! HTTPS for `phm-edw serve`: the server certificate (given, or self-signed on first
//! start and kept in the state directory) and a listener that completes TLS handshakes
//! off the accept loop and hands finished streams to axum.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn err(m: impl Into<String>) -> crate::Error {
    crate::Error::msg(m)
}

/// The certificate and key files to serve with.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether they were made just now.
    pub created: bool,
}

/// SHA-256 of the first certificate's DER, as `AB:CD:...`.
pub fn fingerprint(cert_pem: &Path) -> crate::Result<String> {
    let certs = super::pg::read_pem_certs(cert_pem)?;
    Ok(Sha256::digest(certs[0].as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// `state_dir/tls/{cert,key}.pem`: reused when present, else a self-signed certificate
/// for `localhost` and `127.0.0.1` is made (directory 0700, files 0600).
pub fn self_signed(state_dir: &Path) -> crate::Result<CertFiles> {
    let dir = state_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok(CertFiles {
            cert,
            key,
            created: false,
        });
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| err(format!("{}: {e}", dir.display())))?;
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| err(format!("{}: {e}", state_dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let ck = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(|e| err(format!("self-signed certificate: {e}")))?;
    let write = |p: &Path, s: &str| -> crate::Result<()> {
        let tmp = p.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(format!("{}: {e}", tmp.display())))?;
        std::io::Write::write_all(&mut f, s.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, p)?;
        Ok(())
    };
    // Key first: a cert without its key is never left behind as "present".
    write(&key, &ck.signing_key.serialize_pem())?;
    write(&cert, &ck.cert.pem())?;
    Ok(CertFiles {
        cert,
        key,
        created: true,
    })
}

/// A rustls server configuration (ring) from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> crate::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = super::pg::read_pem_certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| err(format!("{}: {e}", key.display())))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(super::pg::ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(format!("tls certificate/key: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts TCP connections and completes their TLS handshakes in their own tasks (a
/// slow or broken client cannot stall the accept loop); axum serves the finished ones.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        listener: tokio::net::TcpListener,
        cfg: rustls::ServerConfig,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(_) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let handed = tx.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        let _ = handed.send((tls, peer)).await;
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
