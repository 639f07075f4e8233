//! A private CA of a test's own (rcgen) and loopback server certificates it signs, written as
//! PEM files: what a TLS `redis-server` ([`crate::redis::Redis::start_tls`]) or a `[network]`
//! broker serves, and what the client is told to trust (`ca_file`).

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A CA whose certificate is `ca.pem` in its own temp dir; the leaves it issues go next to it.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate for `127.0.0.1` and `localhost` and its key (0600), as PEM files.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// The certificate (the leaf only; the CA is the trust anchor).
    pub cert_file: PathBuf,
    /// Its PKCS#8 private key.
    pub key_file: PathBuf,
}

impl TestCa {
    /// A fresh CA named `name` (its common name, so two tests' CAs are told apart).
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A CN apart from every leaf's: OpenSSL takes a leaf whose issuer is its own subject
        // for self-signed.
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca = TestCa {
            dir: tempfile::tempdir()?,
            issuer,
        };
        fs::write(ca.ca_file(), ca.issuer.pem()).context("cannot write ca.pem")?;
        Ok(ca)
    }

    /// The CA certificate (PEM): what a client's `ca_file` names.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The directory holding the CA and its leaves.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a leaf for `127.0.0.1` (an IP SAN) and `localhost`, written as `STEM.pem` and
    /// `STEM.key` (created 0600; once per stem).
    pub fn issue_loopback(&self, stem: &str) -> anyhow::Result<ServerCert> {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, stem);
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &self.issuer)?;
        let cert_file = self.dir.path().join(format!("{stem}.pem"));
        let key_file = self.dir.path().join(format!("{stem}.key"));
        fs::write(&cert_file, leaf.pem())?;
        // Created 0600 (never readable by others, even for a moment, whatever the umask).
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)?
            .write_all(key.serialize_pem().as_bytes())?;
        Ok(ServerCert {
            cert_file,
            key_file,
        })
    }
}
