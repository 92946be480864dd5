//! PostgreSQL connections of the server and of `phm-edw client`: a pool, TLS per the
//! connection string's `sslmode` (libpq's meaning) with rustls (ring).
//!
//! * `disable`: plain TCP / unix socket.
//! * `prefer` (tokio-postgres' default): TLS when the server offers it, else plain.
//!   The certificate is not verified (as libpq).
//! * `require`: TLS or fail; the certificate is not verified (as libpq without a root file).
//! * `verify-ca`: TLS, the chain must lead to `sslrootcert` (a PEM file).
//! * `verify-full`: as `verify-ca`, and the certificate must name the host.
//!
//! `sslrootcert` and the `verify-*` modes are read here (tokio-postgres does not know
//! them) and removed before the rest is parsed by tokio-postgres.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::SslMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A parsed connection string: tokio-postgres' config and the TLS to use with it.
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    pub mode: Mode,
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

fn err(m: impl Into<String>) -> crate::Error {
    crate::Error::msg(m)
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgresql://...?k=v`) or a
/// key=value string; returns the rest with them.
fn split_ssl_params(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None, None);
        };
        let mut kept = Vec::new();
        for kv in query.split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = form_urlencoded::parse(format!("x={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            match k {
                "sslmode" => mode = Some(v),
                "sslrootcert" => root = Some(v),
                _ => kept.push(kv),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, mode, root)
    } else {
        let mut kept = Vec::new();
        for tok in url.split_whitespace() {
            match tok.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_string()),
                Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_string()),
                _ => kept.push(tok),
            }
        }
        (kept.join(" "), mode, root)
    }
}

/// Parses a connection string with its TLS settings.
pub fn target(url: &str) -> crate::Result<PgTarget> {
    let (rest, mode, root) = split_ssl_params(url);
    let mode = match mode.as_deref() {
        None | Some("prefer") | Some("allow") => Mode::Prefer,
        Some("disable") => Mode::Disable,
        Some("require") => Mode::Require,
        Some("verify-ca") => Mode::VerifyCa,
        Some("verify-full") => Mode::VerifyFull,
        Some(other) => return Err(err(format!("sslmode {other:?} is not supported"))),
    };
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| err(format!("database connection string: {e}")))?;
    config.ssl_mode(match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let provider = ring_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(format!("tls: {e}")))?;
    let client = match mode {
        Mode::VerifyCa | Mode::VerifyFull => {
            let path = root.ok_or_else(|| {
                err("sslmode=verify-ca/verify-full needs sslrootcert=FILE (PEM) in the connection string")
            })?;
            let mut store = RootCertStore::empty();
            for c in read_pem_certs(std::path::Path::new(&path))? {
                store
                    .add(c)
                    .map_err(|e| err(format!("sslrootcert {path}: {e}")))?;
            }
            if mode == Mode::VerifyFull {
                builder.with_root_certificates(store).with_no_client_auth()
            } else {
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(store),
                    provider.clone(),
                )
                .build()
                .map_err(|e| err(format!("tls: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                    .with_no_client_auth()
            }
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    };
    Ok(PgTarget {
        config,
        mode,
        tls: tokio_postgres_rustls::MakeRustlsConnect::new(client),
    })
}

/// rustls' ring provider (the project builds no aws-lc). rustls 0.23.48 deprecates the
/// function only because ring has no post-quantum key exchange.
#[allow(deprecated)]
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates of a PEM file.
pub fn read_pem_certs(path: &std::path::Path) -> crate::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// A pool over `url` (at most `size` connections).
pub fn pool(url: &str, size: usize) -> crate::Result<deadpool_postgres::Pool> {
    let t = target(url)?;
    let mgr = deadpool_postgres::Manager::from_config(
        t.config,
        t.tls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(mgr)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| err(format!("database pool: {e}")))
}

/// A blocking connection honouring `sslmode` (for the `client` commands).
pub fn connect_sync(url: &str) -> crate::Result<postgres::Client> {
    let t = target(url)?;
    postgres::Config::from(t.config)
        .connect(t.tls)
        .map_err(|e| {
            err(format!(
                "cannot connect to the database: {}",
                crate::db_err(&e)
            ))
        })
}

/// Database error text without DETAIL (which can echo row values).
pub fn pg_err(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// `sslmode=require` / `prefer`: encrypted, not authenticated (libpq's behaviour).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must verify; the name is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_params_are_taken_out_of_both_forms() {
        let (r, m, c) = split_ssl_params(
            "postgresql://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        );
        assert_eq!(r, "postgresql://u@h/db?application_name=x");
        assert_eq!(m.as_deref(), Some("verify-full"));
        assert_eq!(c.as_deref(), Some("/tmp/ca.pem"));
        let (r, m, c) = split_ssl_params("host=/s user=app dbname=e sslmode=require");
        assert_eq!(r, "host=/s user=app dbname=e");
        assert_eq!(m.as_deref(), Some("require"));
        assert_eq!(c, None);
        assert!(target("host=/s user=app sslmode=verify-full").is_err());
        assert!(target("host=/s user=app sslmode=bogus").is_err());
        assert_eq!(target("host=/s user=app").unwrap().mode, Mode::Prefer);
    }
}
