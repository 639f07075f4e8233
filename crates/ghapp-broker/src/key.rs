//! An App's private key, from one of three sources: a file (refused when group/others can read
//! it), an environment variable, or a command's stdout (run without a shell, bounded in time).
//!
//! The PEM bytes live in zeroizing buffers and are dropped as soon as the signing key is built;
//! [`AppKey`] prints only the fingerprint of the key's public half, so a key rotation shows in
//! `ghapp status` without revealing anything.

use crate::config::AppConfig;
use crate::error::BrokerError;
use ghapp_protocol::secret::fingerprint;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, EncodingKey};
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long `private_key_command` may run before it is killed.
pub const KEY_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes read as a PEM key from any source (an RSA-4096 PEM is about 3.3 KB).
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// A loaded App signing key. `Debug` shows the source and the public fingerprint only.
pub struct AppKey {
    encoding: EncodingKey,
    fingerprint: String,
    source: String,
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppKey")
            .field("source", &self.source)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl AppKey {
    /// Loads the key of `app` from its configured source.
    pub fn load(app: &AppConfig) -> Result<AppKey, BrokerError> {
        let label = &app.name;
        if let Some(path) = &app.private_key_file {
            return AppKey::load_file(path, label);
        }
        if let Some(var) = &app.private_key_env {
            let pem = read_key_env(var)
                .map_err(|e| BrokerError::internal(format!("GitHub App {label}: {e}")))?;
            return AppKey::from_pem(&pem, format!("environment variable {var}"), label);
        }
        if let Some(argv) = &app.private_key_command {
            let pem = run_key_command(argv, KEY_COMMAND_TIMEOUT)
                .map_err(|e| BrokerError::internal(format!("GitHub App {label}: {e}")))?;
            let program = argv.first().map(String::as_str).unwrap_or_default();
            return AppKey::from_pem(&pem, format!("command {program}"), label);
        }
        Err(BrokerError::internal(format!(
            "GitHub App {label}: no private key source: set private_key_file, private_key_env or private_key_command"
        )))
    }

    /// Loads a PEM key file of the App labelled `label` (`private_key_file`,
    /// `next_private_key_file`), refused when group or others may access it.
    pub fn load_file(path: &Path, label: &str) -> Result<AppKey, BrokerError> {
        let pem = read_key_file(path)
            .map_err(|e| BrokerError::internal(format!("GitHub App {label}: {e}")))?;
        AppKey::from_pem(&pem, format!("file {}", path.display()), label)
    }

    /// Builds a key from PEM bytes (PKCS#1 `BEGIN RSA PRIVATE KEY` as GitHub issues them, or
    /// PKCS#8), checking that it really is an RSA private key.
    pub fn from_pem(pem: &[u8], source: String, label: &str) -> Result<AppKey, BrokerError> {
        let not_rsa = |detail: String| {
            BrokerError::internal(format!(
                "GitHub App {label}: the private key from {source} is not an RSA private key in PEM form ({detail}): use the .pem file downloaded from the App's settings page"
            ))
        };
        // Decoded here rather than by jsonwebtoken's PEM parser, which leaves the base64 text and
        // the DER in freed, unzeroized memory.
        let der = pem_to_der(pem).map_err(|e| not_rsa(e.to_string()))?;
        let encoding = EncodingKey::from_rsa_der(&der);
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|e| not_rsa(e.to_string()))?;
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return Err(not_rsa("not RSA".into()));
        };
        let fingerprint = fingerprint(&format!("{}.{}", rsa.n, rsa.e));
        Ok(AppKey {
            encoding,
            fingerprint,
            source,
        })
    }

    /// `sha256:…` of the public half: identifies the key without revealing it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Where the key came from (`file /etc/ghapp/acme.pem`), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The signing key.
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// The PEM labels of an RSA private key: PKCS#1 (as GitHub issues them) and PKCS#8.
const PEM_LABELS: [&str; 2] = ["RSA PRIVATE KEY", "PRIVATE KEY"];

/// Decodes the first PEM block into DER, every intermediate in a zeroizing buffer allocated once
/// at its final size (a growing `Vec` frees copies of its old contents without zeroizing them).
fn pem_to_der(pem: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    use base64::Engine;
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    let find = |haystack: &[u8], needle: &[u8]| {
        haystack
            .windows(needle.len())
            .position(|window| window == needle)
    };
    let start = find(pem, BEGIN).ok_or("no -----BEGIN line")?;
    let rest = &pem[start + BEGIN.len()..];
    let line_end = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no line after -----BEGIN")?;
    let label = rest[..line_end]
        .trim_ascii_end()
        .strip_suffix(b"-----")
        .ok_or("a malformed -----BEGIN line")?;
    if !PEM_LABELS.iter().any(|l| l.as_bytes() == label) {
        return Err("the PEM block is not a private key");
    }
    let body = &rest[line_end + 1..];
    let body = &body[..find(body, END).ok_or("no -----END line")?];
    let mut base64_text = Zeroizing::new(Vec::with_capacity(body.len()));
    base64_text.extend(body.iter().filter(|b| !b.is_ascii_whitespace()));
    let mut der = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(base64_text.len())]);
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(&*base64_text, &mut der)
        .map_err(|_| "the PEM body is not base64")?;
    der.truncate(len);
    if label == b"RSA PRIVATE KEY" {
        return Ok(der);
    }
    // PKCS#8 wraps the PKCS#1 key that the signing key is built from: take it out.
    let info =
        pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(|_| "not a PKCS#8 private key")?;
    if info.algorithm.oid != RSA_ENCRYPTION {
        return Err("the PKCS#8 key is not an RSA key");
    }
    Ok(Zeroizing::new(info.private_key.to_vec()))
}

/// `rsaEncryption` (RFC 8017), the algorithm of an RSA key in PKCS#8.
const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Reads a key file, refusing one that group or others may access or that another non-root
/// user owns. Mode and owner are checked on the open file, so the file checked is the file read.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open key file {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat key file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("key file {} is not a regular file", path.display()));
    }
    use std::os::unix::fs::MetadataExt;
    if !ghapp_protocol::config::trusted_owner(meta.uid()) {
        return Err(format!(
            "key file {} is owned by uid {}, neither this process's uid nor root: that user could swap the key; chown it to the daemon's user",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o044 != 0 {
        return Err(format!(
            "key file {} is readable by group/others (mode {mode:04o}): run chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    if mode & 0o033 != 0 {
        return Err(format!(
            "key file {} is writable by group/others (mode {mode:04o}): run chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let mut pem = Zeroizing::new(Vec::with_capacity(MAX_KEY_BYTES as usize + 1));
    file.take(MAX_KEY_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    if pem.len() as u64 > MAX_KEY_BYTES {
        return Err(format!(
            "key file {} is larger than {MAX_KEY_BYTES} bytes: not a PEM key",
            path.display()
        ));
    }
    Ok(pem)
}

/// Reads a key from an environment variable. CI systems often flatten a PEM to one line with
/// literal `\n`; those are turned back into newlines.
fn read_key_env(var: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::os::unix::ffi::OsStringExt;
    let value = std::env::var_os(var)
        .ok_or_else(|| format!("environment variable {var} (private_key_env) is not set"))?;
    let bytes = Zeroizing::new(value.into_vec());
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "environment variable {var} (private_key_env) is empty"
        ));
    }
    if !bytes.contains(&b'\n') && bytes.windows(2).any(|w| w == b"\\n") {
        let mut unescaped = Zeroizing::new(Vec::with_capacity(bytes.len()));
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'n') {
                unescaped.push(b'\n');
                i += 2;
            } else {
                unescaped.push(bytes[i]);
                i += 1;
            }
        }
        return Ok(unescaped);
    }
    Ok(bytes)
}

/// Runs `argv` without a shell, with no stdin, and returns its stdout. Killed after `timeout`;
/// a non-zero exit is an error quoting the first line of stderr (unless it looks like a key).
fn run_key_command(argv: &[String], timeout: Duration) -> Result<Zeroizing<Vec<u8>>, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "private_key_command is empty".to_string())?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run private_key_command {program}: {e}"))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or("private_key_command: no stdout pipe")?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or("private_key_command: no stderr pipe")?;
    // Readers on threads, so a chatty command cannot fill a pipe and stall while we wait.
    let out_reader = std::thread::spawn(move || {
        // Allocated once at full size: a growing Vec would free unzeroized partial copies.
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_BYTES as usize + 1));
        let _ = (&mut stdout).take(MAX_KEY_BYTES + 1).read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "private_key_command {program} did not finish within {}s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("private_key_command {program}: {e}")),
        }
    };
    let out = out_reader
        .join()
        .map_err(|_| "private_key_command: stdout reader failed")?;
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let first_line = text.lines().next().unwrap_or("").trim();
        let said = if first_line.is_empty() || first_line.contains("PRIVATE KEY") {
            String::new()
        } else {
            format!(": {}", first_line.chars().take(200).collect::<String>())
        };
        return Err(format!(
            "private_key_command {program} failed ({status}){said}"
        ));
    }
    if out.len() as u64 > MAX_KEY_BYTES {
        return Err(format!(
            "private_key_command {program} printed more than {MAX_KEY_BYTES} bytes: not a PEM key"
        ));
    }
    if out.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "private_key_command {program} printed nothing on stdout"
        ));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A 2048-bit RSA key in PKCS#1 PEM, generated for these tests only.
    pub(crate) const TEST_KEY_PEM: &str = include_str!("../tests/data/test-key.pem");

    fn app(toml_extra: &str) -> AppConfig {
        let text = format!("[[app]]\nname = \"acme-bot\"\napp_id = 1\n{toml_extra}\n");
        crate::config::Config::parse(&text, Path::new("t.toml"))
            .unwrap()
            .apps
            .remove(0)
    }

    #[test]
    fn file_source_checks_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, TEST_KEY_PEM).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = app(&format!(
            "private_key_file = {:?}",
            path.display().to_string()
        ));
        let err = AppKey::load(&cfg).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "GitHub App acme-bot: key file {p} is readable by group/others (mode 0644): run chmod 600 {p}",
                p = path.display()
            )
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key = AppKey::load(&cfg).unwrap();
        assert!(key.fingerprint().starts_with("sha256:"));
        let debug = format!("{key:?}");
        assert!(
            debug.contains("fingerprint") && !debug.contains("MII"),
            "{debug}"
        );
    }

    #[test]
    fn command_source_runs_without_shell_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, TEST_KEY_PEM).unwrap();
        let cat = vec!["cat".to_string(), path.display().to_string()];
        let pem = run_key_command(&cat, Duration::from_secs(5)).unwrap();
        let key = AppKey::from_pem(&pem, "command cat".into(), "a").unwrap();
        let from_file = AppKey::from_pem(TEST_KEY_PEM.as_bytes(), "x".into(), "a").unwrap();
        assert_eq!(key.fingerprint(), from_file.fingerprint());

        let err = run_key_command(
            &["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(err.contains("failed (exit status: 3): nope"), "{err}");
        let started = Instant::now();
        let err = run_key_command(&["sleep".into(), "30".into()], Duration::from_millis(200))
            .unwrap_err();
        assert!(err.contains("did not finish within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err =
            run_key_command(&["/nonexistent/prog".into()], Duration::from_secs(1)).unwrap_err();
        assert!(
            err.contains("cannot run private_key_command /nonexistent/prog"),
            "{err}"
        );
        // `$(…)` is passed literally: no shell.
        let err =
            run_key_command(&["echo".into(), "$(id)".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(&err[..], b"$(id)\n");
    }

    #[test]
    fn env_source_unescapes_flattened_pem() {
        let flattened = TEST_KEY_PEM.trim_end().replace('\n', "\\n");
        // SAFETY: test-only variable names unique to this test; no other thread reads them.
        unsafe { std::env::set_var("GHAPP_TEST_KEY_FLAT", &flattened) };
        let cfg = app("private_key_env = \"GHAPP_TEST_KEY_FLAT\"");
        let key = AppKey::load(&cfg).unwrap();
        assert!(key.source().contains("GHAPP_TEST_KEY_FLAT"));
        let err = AppKey::load(&app("private_key_env = \"GHAPP_TEST_KEY_UNSET\"")).unwrap_err();
        assert!(
            err.message
                .contains("GHAPP_TEST_KEY_UNSET (private_key_env) is not set"),
            "{}",
            err.message
        );
    }

    #[test]
    fn pem_blocks_decode_to_der_and_other_blocks_are_refused() {
        let der = pem_to_der(TEST_KEY_PEM.as_bytes()).unwrap();
        assert_eq!(der[0], 0x30, "a DER SEQUENCE");
        let key = AppKey::from_pem(TEST_KEY_PEM.as_bytes(), "t".into(), "a").unwrap();
        assert!(key.fingerprint().starts_with("sha256:"));
        assert!(
            pem_to_der(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(
            pem_to_der(b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n").is_err()
        );
        assert!(pem_to_der(b"no pem here").is_err());
    }

    #[test]
    fn a_pkcs8_key_is_the_same_key() {
        let pkcs8 = std::process::Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/test-key.pem"
            ))
            .output()
            .unwrap();
        assert!(pkcs8.stdout.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        let from_pkcs8 = AppKey::from_pem(&pkcs8.stdout, "p8".into(), "a").unwrap();
        let from_pkcs1 = AppKey::from_pem(TEST_KEY_PEM.as_bytes(), "p1".into(), "a").unwrap();
        assert_eq!(from_pkcs8.fingerprint(), from_pkcs1.fingerprint());
    }

    #[test]
    fn garbage_is_not_a_key() {
        let err = AppKey::from_pem(
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "x".into(),
            "a",
        )
        .unwrap_err();
        assert!(
            err.message.contains("is not an RSA private key"),
            "{}",
            err.message
        );
    }
}
