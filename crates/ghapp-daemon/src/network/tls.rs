//! TLS for the network listener: the certificate and key from `[network] tls_cert_file` and
//! `tls_key_file`, held behind a resolver whose certificate is swapped whole on reload — new
//! handshakes get the new certificate, connections already open keep theirs, and a new pair that
//! does not load leaves the old one in force. Session resumption (stateless tickets and a
//! session cache) makes a new connection per request cheap.

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

/// The largest certificate chain file read.
pub const MAX_CERT_FILE_BYTES: u64 = 1024 * 1024;
/// The largest key file read.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// TLS sessions the server remembers for resumption by session id.
pub const SESSION_CACHE_SIZE: usize = 4096;

/// Why a certificate or key could not be used; names the file, never shows the key.
#[derive(Debug, thiserror::Error)]
pub struct TlsError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

fn error(file: &Path, reason: impl Into<String>) -> TlsError {
    TlsError {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// A certificate and key that can be replaced while connections use the old ones.
pub struct ReloadableCertificate {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadableCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCertificate")
            .finish_non_exhaustive()
    }
}

impl ReloadableCertificate {
    /// Loads `cert_file` (PEM chain, leaf first) and `key_file` (PEM private key, refused if
    /// group or others may read it, or if another non-root user owns it).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<ReloadableCertificate>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certified = certified_key(&provider, cert_file, key_file)?;
        Ok(Arc::new(ReloadableCertificate {
            provider,
            current: RwLock::new(Arc::new(certified)),
        }))
    }

    /// Loads the pair again (SIGHUP) and puts it in force for new handshakes; on an error the
    /// certificate in force stays and the error is returned for the log.
    pub fn reload(&self, cert_file: &Path, key_file: &Path) -> Result<(), TlsError> {
        let certified = certified_key(&self.provider, cert_file, key_file)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        Ok(())
    }

    /// A rustls server configuration that presents this certificate (as it is at each
    /// handshake), speaks HTTP/1.1 only, and resumes sessions by ticket and by id.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| error(Path::new("(tls)"), format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| error(Path::new("(tls)"), format!("session tickets: {e}")))?;
        Ok(Arc::new(config))
    }

    /// The acceptor for [`super::Listener::bind`].
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(self.server_config()?))
    }

    /// The DER of the leaf certificate in force (for logs and tests: which one is served).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .first()
            .cloned()
            .unwrap_or_else(|| CertificateDer::from(Vec::new()))
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn certified_key(
    provider: &CryptoProvider,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_file(cert_file, MAX_CERT_FILE_BYTES, false)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(cert_file, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(error(
            cert_file,
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    let key_pem = zeroize::Zeroizing::new(read_file(key_file, MAX_KEY_FILE_BYTES, true)?);
    // The parser's error never quotes the key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        error(
            key_file,
            format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        error(
            key_file,
            format!("cannot be used with {}: {e}", cert_file.display()),
        )
    })
}

/// Reads a file of at most `limit` bytes; a key (`secret`) is refused when group or others may
/// read or write it or another non-root user owns it — checked on the open file, so the file
/// checked is the file read.
fn read_file(path: &Path, limit: u64, secret: bool) -> Result<Vec<u8>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| error(path, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| error(path, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(error(path, "is not a regular file"));
    }
    if secret && let Some(problem) = ghapp_protocol::config::private_key_file_problem(path, &meta) {
        return Err(error(path, problem));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(error(path, format!("is larger than {limit} bytes")));
    }
    Ok(bytes)
}
