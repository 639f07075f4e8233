//! Signed answers (the seed token microservice's way): `Accept: application/jwt` on `/v1/token`
//! gets the answer as a compact JWS, ES256, signed with the daemon's answer key, and
//! `GET /.well-known/jwks.json` publishes the public key with its RFC 7638 thumbprint as `kid`.
//!
//! The answer key (`[network] answer_key_file`, default `answer-key.pem` in the daemon's state
//! directory, see [`default_answer_key_file`]) is a PKCS#8 PEM P-256 key, generated 0600 when
//! absent and refused when group or others may read it. When it changes (the file replaced and
//! SIGHUP, or a restart) the old public key stays published until the last answer it signed has
//! expired: next to the key, `<key>.published.json` records every published public key and how
//! long it must stay, so a restart keeps them too. It holds public keys only.

use ghapp_protocol::api::TokenResponse;
use ghapp_protocol::time::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The media type that asks for, and labels, a signed answer.
pub const JWT_MEDIA_TYPE: &str = "application/jwt";
/// The answer key's file name in the state directory.
pub const DEFAULT_ANSWER_KEY_FILE: &str = "answer-key.pem";
/// The largest answer key file read.
const MAX_KEY_BYTES: u64 = 16 * 1024;

/// Where the answer key lives when the config names none: `answer-key.pem` in
/// `$STATE_DIRECTORY` (systemd's `StateDirectory=ghapp`), else `$XDG_STATE_HOME/ghapp`, else
/// `~/.local/state/ghapp`, else (root without a home) `/var/lib/ghapp`.
pub fn default_answer_key_file() -> PathBuf {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = if let Some(dirs) = nonempty("STATE_DIRECTORY") {
        // systemd lists several directories separated by ':' when the unit names several.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        PathBuf::from(first)
    } else if let Some(state) = nonempty("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        state.join("ghapp")
    } else if let Some(home) = nonempty("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        home.join(".local/state/ghapp")
    } else {
        PathBuf::from("/var/lib/ghapp")
    };
    dir.join(DEFAULT_ANSWER_KEY_FILE)
}

/// Why the answer key cannot be used; names the file, never shows the key.
#[derive(Debug, thiserror::Error)]
pub struct AnswerKeyError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for AnswerKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "answer key {}: {}", self.file.display(), self.reason)
    }
}

fn error(file: &Path, reason: impl Into<String>) -> AnswerKeyError {
    AnswerKeyError {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// A public key as published: an EC P-256 JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    /// The x coordinate, base64url.
    pub x: String,
    /// The y coordinate, base64url.
    pub y: String,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// `ES256`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

impl PublicJwk {
    /// The JWK of an uncompressed P-256 point (`04 || x || y`).
    fn from_point(point: &[u8]) -> Option<PublicJwk> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if point.len() != 65 || point[0] != 4 {
            return None;
        }
        let (x, y) = (b64.encode(&point[1..33]), b64.encode(&point[33..]));
        // RFC 7638: the required members, lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64.encode(Sha256::digest(canonical.as_bytes()));
        Some(PublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x,
            y,
            kid,
            alg: "ES256".into(),
            use_: "sig".into(),
        })
    }
}

/// The answer key in force.
struct AnswerKey {
    encoding: EncodingKey,
    jwk: PublicJwk,
}

/// A public key kept published after its key was replaced.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Retired {
    jwk: PublicJwk,
    /// Unix seconds: the last answer it signed expires then.
    until: i64,
}

/// `<key>.published.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Published {
    /// The key in force and the expiry of the last answer it signed (Unix seconds).
    current: Option<Retired>,
    /// Replaced keys still published.
    #[serde(default)]
    retired: Vec<Retired>,
}

/// Signs answers and publishes the keys that verify them.
pub struct AnswerSigner {
    key_file: PathBuf,
    published_file: PathBuf,
    current: RwLock<Arc<AnswerKey>>,
    /// Expiry of the last answer the key in force signed (Unix seconds; 0: none).
    signed_until: AtomicI64,
    /// What the published file says of it, so it is rewritten only when that grows.
    persisted_until: AtomicI64,
    retired: Mutex<Vec<Retired>>,
    /// Serialises rewrites of the published file.
    writing: Mutex<()>,
}

impl fmt::Debug for AnswerSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerSigner")
            .field("key_file", &self.key_file)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl AnswerSigner {
    /// Loads the key at `key_file`, generating it (0600, its directory 0700 when created) when
    /// absent, and the keys published before.
    pub fn open(key_file: &Path) -> Result<AnswerSigner, AnswerKeyError> {
        let key = load_or_generate(key_file)?;
        let published_file = published_file_of(key_file);
        let published = read_published(&published_file);
        let now = Timestamp::now().unix_seconds();
        let mut retired: Vec<Retired> = published
            .retired
            .into_iter()
            .filter(|r| r.until > now && r.jwk.kid != key.jwk.kid)
            .collect();
        let mut signed_until = 0;
        match published.current {
            Some(previous) if previous.jwk.kid == key.jwk.kid => signed_until = previous.until,
            Some(previous) if previous.until > now => {
                tracing::info!(kid = %previous.jwk.kid, "the answer key changed since the last start; its predecessor stays published until its last answer expires");
                retired.push(previous);
            }
            _ => {}
        }
        let signer = AnswerSigner {
            key_file: key_file.to_path_buf(),
            published_file,
            current: RwLock::new(Arc::new(key)),
            signed_until: AtomicI64::new(signed_until),
            persisted_until: AtomicI64::new(signed_until),
            retired: Mutex::new(retired),
            writing: Mutex::new(()),
        };
        signer.persist_or_warn();
        Ok(signer)
    }

    /// The `kid` of the key in force.
    pub fn kid(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .jwk
            .kid
            .clone()
    }

    /// The key file.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// Reads the key file again (SIGHUP). A new key is put in force and the old one stays
    /// published until its last answer expires; a file that does not load leaves the key in
    /// force (the error is returned for the log). `Ok(true)` when the key changed.
    pub fn reload(&self) -> Result<bool, AnswerKeyError> {
        let key = load_or_generate(&self.key_file)?;
        let previous = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            if current.jwk.kid == key.jwk.kid {
                return Ok(false);
            }
            std::mem::replace(&mut *current, Arc::new(key))
        };
        let until = self.signed_until.swap(0, Ordering::SeqCst);
        self.persisted_until.store(0, Ordering::SeqCst);
        if until > Timestamp::now().unix_seconds() {
            self.retired_keys().push(Retired {
                jwk: previous.jwk.clone(),
                until,
            });
        }
        self.persist_or_warn();
        Ok(true)
    }

    /// The answer as a compact JWS: `sub` (the caller's identity key), the token's fields, `iat`
    /// now and `exp` the token's expiry.
    pub fn sign(&self, caller: &str, answer: &TokenResponse) -> Result<String, AnswerKeyError> {
        let now = Timestamp::now().unix_seconds();
        let exp = answer.expires_at.unix_seconds();
        let claims = AnswerClaims {
            sub: caller,
            token: answer.token.expose(),
            expires_at: answer.expires_at,
            installation_id: answer.installation_id,
            repositories: &answer.repositories,
            permissions: &answer.permissions,
            iat: now,
            exp,
        };
        let key = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.jwk.kid.clone());
        let jws = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| error(&self.key_file, format!("cannot sign an answer: {e}")))?;
        self.signed_until.fetch_max(exp, Ordering::SeqCst);
        // Written down before the answer leaves, so a restart with another key keeps this one
        // published long enough; rewritten only when the latest expiry grows (a new token).
        if self.persisted_until.fetch_max(exp, Ordering::SeqCst) < exp {
            self.persist_or_warn();
        }
        Ok(jws)
    }

    /// `{"keys": [...]}`: the key in force and every replaced key whose last answer has not
    /// expired yet.
    pub fn jwks(&self) -> serde_json::Value {
        let now = Timestamp::now().unix_seconds();
        let mut keys = vec![
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .jwk
                .clone(),
        ];
        let mut retired = self.retired_keys();
        retired.retain(|r| r.until > now);
        keys.extend(retired.iter().map(|r| r.jwk.clone()));
        serde_json::json!({ "keys": keys })
    }

    fn retired_keys(&self) -> std::sync::MutexGuard<'_, Vec<Retired>> {
        self.retired.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`AnswerSigner::persist`]; a failure only loses what a restart with another key would
    /// need (the daemon keeps serving, and says so).
    fn persist_or_warn(&self) {
        if let Err(e) = self.persist() {
            tracing::warn!(
                "{e}; a restart with another answer key will not keep this key published"
            );
        }
    }

    /// Rewrites the published file (atomically: a temp file renamed over it).
    fn persist(&self) -> Result<(), AnswerKeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let now = Timestamp::now().unix_seconds();
        let published = Published {
            current: Some(Retired {
                jwk: self
                    .current
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .jwk
                    .clone(),
                until: self.signed_until.load(Ordering::SeqCst),
            }),
            retired: self
                .retired_keys()
                .iter()
                .filter(|r| r.until > now)
                .cloned()
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&published).unwrap_or_default();
        let temp = self.published_file.with_extension("json.tmp");
        // Made anew, never opened through what is there: a symlink planted at the temporary
        // name would otherwise have the daemon overwrite whatever it points to. (A leftover of
        // a crash, or such a symlink, is removed; removing a symlink leaves its target alone.)
        let _ = std::fs::remove_file(&temp);
        // 0644 whatever the umask: a group-writable record would not be trusted at the next start.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .and_then(|mut file| file.write_all(&text))
            .and_then(|()| std::fs::rename(&temp, &self.published_file))
            .map_err(|e| {
                error(
                    &self.published_file,
                    format!("cannot record the published keys: {e}"),
                )
            })
    }
}

/// The daemon's answer signer, opened at start when `[network]` is configured and otherwise on
/// first use (a daemon on the Unix socket alone writes no key until a signed answer or the JWKS
/// is asked for).
pub struct AnswerKeys {
    file: Mutex<PathBuf>,
    signer: std::sync::OnceLock<Arc<AnswerSigner>>,
    opening: Mutex<()>,
}

impl AnswerKeys {
    /// Keys from `file`, not opened yet.
    pub fn new(file: PathBuf) -> AnswerKeys {
        AnswerKeys {
            file: Mutex::new(file),
            signer: std::sync::OnceLock::new(),
            opening: Mutex::new(()),
        }
    }

    /// Names the key file (before the first use; later, the file in use stays until restart).
    pub fn set_file(&self, file: PathBuf) {
        if self.signer.get().is_none() {
            *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        }
    }

    /// The key file.
    pub fn file(&self) -> PathBuf {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The signer, opening (or generating) the key on first use.
    pub fn signer(&self) -> Result<Arc<AnswerSigner>, AnswerKeyError> {
        if let Some(signer) = self.signer.get() {
            return Ok(signer.clone());
        }
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(signer) = self.signer.get() {
            return Ok(signer.clone());
        }
        let signer = Arc::new(AnswerSigner::open(&self.file())?);
        Ok(self.signer.get_or_init(|| signer).clone())
    }

    /// SIGHUP: re-reads the key if it was opened; `None` when it was not.
    pub fn reload(&self) -> Option<Result<bool, AnswerKeyError>> {
        self.signer.get().map(|signer| signer.reload())
    }
}

#[derive(Serialize)]
struct AnswerClaims<'a> {
    sub: &'a str,
    token: &'a str,
    expires_at: Timestamp,
    installation_id: u64,
    repositories: &'a [String],
    permissions: &'a ghapp_protocol::permissions::Permissions,
    iat: i64,
    exp: i64,
}

/// `<key file>.published.json`.
pub fn published_file_of(key_file: &Path) -> PathBuf {
    let mut name = key_file.file_name().unwrap_or_default().to_os_string();
    name.push(".published.json");
    key_file.with_file_name(name)
}

/// The longest a replaced key is kept published on the word of the record: an installation
/// token lives at most an hour, so no answer outlives that (plus slack for clocks).
pub const MAX_RETIRED_LIFE_SECS: i64 = 3600 + 300;

/// The record of published keys, read only if it can be trusted as the key itself is: a regular
/// file that neither another user owns nor group/others may write (checked on the open file).
/// A record that cannot be trusted is ignored (and replaced): whoever could write it could get a
/// key of their choice published in the JWKS. Replaced keys are kept at most
/// [`MAX_RETIRED_LIFE_SECS`] from now, whatever the record says.
fn read_published(path: &Path) -> Published {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(file) = std::fs::File::open(path) else {
        return Published::default();
    };
    let untrusted = match file.metadata() {
        Err(e) => Some(format!("cannot stat it: {e}")),
        Ok(meta) if !meta.is_file() => Some("it is not a regular file".to_string()),
        Ok(meta) if !ghapp_protocol::config::trusted_owner(meta.uid()) => Some(format!(
            "it is owned by uid {}, neither this process's uid nor root",
            meta.uid()
        )),
        Ok(meta) if meta.permissions().mode() & 0o022 != 0 => Some(format!(
            "it is writable by group/others (mode {:04o})",
            meta.permissions().mode() & 0o7777
        )),
        Ok(_) => None,
    };
    if let Some(why) = untrusted {
        tracing::warn!(
            "{} is not trusted ({why}): none of the keys it lists is published; starting a new record",
            path.display()
        );
        return Published::default();
    }
    let mut bytes = Vec::new();
    if file
        .take(MAX_PUBLISHED_BYTES)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return Published::default();
    }
    let mut published: Published = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(
            "{} is not a published-keys record ({e}); starting a new one",
            path.display()
        );
        Published::default()
    });
    let latest = Timestamp::now().unix_seconds() + MAX_RETIRED_LIFE_SECS;
    for entry in published
        .current
        .iter_mut()
        .chain(published.retired.iter_mut())
    {
        entry.until = entry.until.min(latest);
    }
    published
}

/// The largest published-keys record read.
const MAX_PUBLISHED_BYTES: u64 = 1024 * 1024;

/// Whether `accept` (an `Accept` header value) names `application/jwt`.
pub fn wants_jwt(accept: &str) -> bool {
    accept.split(',').any(|range| {
        range
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(JWT_MEDIA_TYPE))
    })
}

fn load_or_generate(path: &Path) -> Result<AnswerKey, AnswerKeyError> {
    let pem = match read_key(path)? {
        Some(pem) => pem,
        None => generate(path)?,
    };
    let text = std::str::from_utf8(&pem).map_err(|_| error(path, "is not a PEM file"))?;
    let pair = rcgen::KeyPair::from_pem(text).map_err(|_| {
        error(
            path,
            "is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)",
        )
    })?;
    if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(error(
            path,
            "is not an EC P-256 key: answers are signed ES256 (generate one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`, or remove the file to have one generated)",
        ));
    }
    let jwk = PublicJwk::from_point(pair.public_key_raw())
        .ok_or_else(|| error(path, "holds no uncompressed P-256 public point"))?;
    let encoding = EncodingKey::from_ec_pem(&pem)
        .map_err(|e| error(path, format!("cannot be used to sign ES256: {e}")))?;
    Ok(AnswerKey { encoding, jwk })
}

/// The key's PEM, `None` when the file does not exist. Refused when group/others may read or
/// write it or another non-root user owns it (checked on the open file).
fn read_key(path: &Path) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, AnswerKeyError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(path, format!("cannot open: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| error(path, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(error(path, "is not a regular file"));
    }
    if let Some(problem) = ghapp_protocol::config::private_key_file_problem(path, &meta) {
        return Err(error(path, problem));
    }
    let mut pem = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_KEY_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| error(path, format!("cannot read: {e}")))?;
    if pem.len() as u64 > MAX_KEY_BYTES {
        return Err(error(
            path,
            format!("is larger than {MAX_KEY_BYTES} bytes: not a PEM key"),
        ));
    }
    Ok(Some(pem))
}

/// Creates a new P-256 key at `path`, 0600, never replacing a file (a concurrent start that
/// wrote one first wins, and its key is read).
fn generate(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, AnswerKeyError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| error(path, format!("cannot create its directory: {e}")))?;
    }
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| error(path, format!("cannot generate a P-256 key: {e}")))?;
    let pem = zeroize::Zeroizing::new(pair.serialize_pem().into_bytes());
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(&pem)
                .and_then(|()| file.sync_all())
                .map_err(|e| error(path, format!("cannot write: {e}")))?;
            tracing::info!("generated the answer key {}", path.display());
            Ok(pem)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(path)?.ok_or_else(|| error(path, "appeared and vanished while being created"))
        }
        Err(e) => Err(error(path, format!("cannot create: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_that_ask_for_a_jwt() {
        assert!(wants_jwt("application/jwt"));
        assert!(wants_jwt("application/json;q=0.5, Application/JWT; q=1"));
        assert!(!wants_jwt("application/json"));
        assert!(!wants_jwt("application/jwt-ish"));
        assert!(!wants_jwt(""));
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 7638 has only an RSA example; this pins the EC member order and encoding.
        let mut point = vec![4u8];
        point.extend([1u8; 32]);
        point.extend([2u8; 32]);
        let jwk = PublicJwk::from_point(&point).unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64.encode([1u8; 32]),
            b64.encode([2u8; 32])
        );
        assert_eq!(jwk.kid, b64.encode(Sha256::digest(canonical)));
        assert!(PublicJwk::from_point(&point[1..]).is_none());
    }

    #[test]
    fn a_generated_key_is_private_and_reused_and_an_open_one_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/answer-key.pem");
        let signer = AnswerSigner::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let kid = signer.kid();
        drop(signer);
        assert_eq!(
            AnswerSigner::open(&path).unwrap().kid(),
            kid,
            "same key after a restart"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = AnswerSigner::open(&path).unwrap_err().to_string();
        assert!(
            refused.contains("readable or writable by group/others"),
            "{refused}"
        );
    }
}
