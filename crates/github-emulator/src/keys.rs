//! App keys: generate an RSA key pair and write the private half as GitHub hands it out (PKCS#1
//! PEM, `BEGIN RSA PRIVATE KEY`, mode 0600), or load a given public key. The emulator keeps only
//! the public key (PKCS#1 `RSAPublicKey` DER) to verify App JWTs.

use anyhow::{Context, anyhow, bail};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKey};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Makes sure `path` holds an RSA private key and returns its public key (PKCS#1 DER).
/// An existing valid key is reused (so a restarted emulator keeps its Apps' keys); otherwise a
/// fresh 2048-bit key is generated and written atomically with mode 0600.
pub fn ensure_private_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading existing key {}", path.display()))?;
        let (label, der) = pem_decode(&text)
            .with_context(|| format!("existing key {} is not PEM", path.display()))?;
        let pair = match label.as_str() {
            "RSA PRIVATE KEY" => KeyPair::from_der(&der),
            "PRIVATE KEY" => KeyPair::from_pkcs8(&der),
            other => bail!(
                "existing key {} is a {other:?}, not an RSA private key",
                path.display()
            ),
        }
        .map_err(|e| {
            anyhow!(
                "existing key {} is not a usable RSA key: {e}",
                path.display()
            )
        })?;
        return Ok(pair.public_key().as_ref().to_vec());
    }
    let pair =
        KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow!("RSA key generation failed"))?;
    let pkcs8 = pair
        .as_der()
        .map_err(|_| anyhow!("encoding the generated RSA key failed"))?;
    let info = pkcs8::PrivateKeyInfo::try_from(pkcs8.as_ref())
        .map_err(|e| anyhow!("re-reading the generated PKCS#8 key: {e}"))?;
    let pem = pem_encode("RSA PRIVATE KEY", info.private_key);
    write_private(path, pem.as_bytes())?;
    Ok(pair.public_key().as_ref().to_vec())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all().ok();
    std::fs::rename(&tmp, path).with_context(|| format!("renaming key into {}", path.display()))?;
    Ok(())
}

/// Reads a public key PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`) as PKCS#1 DER.
pub fn load_public_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading public key {}", path.display()))?;
    let (label, der) =
        pem_decode(&text).with_context(|| format!("{} is not PEM", path.display()))?;
    if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
        bail!(
            "{} is a {label:?}, expected an RSA public key",
            path.display()
        );
    }
    let key = PublicKey::from_der(&der)
        .map_err(|e| anyhow!("{} is not an RSA public key: {e}", path.display()))?;
    Ok(key.as_ref().to_vec())
}

/// PEM-encodes `der` under `label`, 64 characters a line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the first PEM block in `text`: its label and DER bytes.
pub fn pem_decode(text: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| anyhow!("no BEGIN line"))?;
    let rest = &text[start + 11..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| anyhow!("malformed BEGIN line"))?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body
        .find(&end_marker)
        .ok_or_else(|| anyhow!("no END line for {label}"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| anyhow!("bad base64 in {label}: {e}"))?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generates_pkcs1_with_mode_0600_and_reuses_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.pem");
        let public = ensure_private_key(&path).expect("generate");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "{}",
            &text[..40]
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ensure_private_key(&path).expect("reuse"), public);
    }
}
