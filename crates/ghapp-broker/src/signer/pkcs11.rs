//! `signer = "pkcs11"`: the App's key on a PKCS#11 token (an HSM, SoftHSM, a smart card),
//! through the `cryptoki` crate. ghapp sends the JWT's signing input and gets the signature
//! (`CKM_SHA256_RSA_PKCS`); the key never leaves the token.
//!
//! A module is loaded and initialised once per process (PKCS#11 allows one `C_Initialize`
//! per module), shared by every App, key and reload that names it. The first key's session is
//! opened and logged in when the signer is built (so a wrong module, token, key or PIN fails the
//! start or the reload); a rotation's next key (`next_pkcs11_key_label`) may be put on the token
//! later and is looked up when it must sign. A session is opened again after any failure (a
//! token pulled and put back).

use super::{SignError, Signer};
use crate::config::AppConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use ghapp_protocol::secret::fingerprint;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The most bytes read from `pkcs11_pin_file`.
const MAX_PIN_BYTES: u64 = 256;

/// A key on a PKCS#11 token.
pub struct Pkcs11Signer {
    context: Pkcs11,
    token_label: String,
    key_label: String,
    pin: Option<AuthPin>,
    /// `sign_timeout`: how long callers wait for the token.
    timeout: Duration,
    describe: String,
    /// Of the public key once the token showed it, else of the configuration.
    fingerprint: Mutex<String>,
    session: Mutex<Option<(Session, ObjectHandle)>>,
}

impl Pkcs11Signer {
    /// Loads the App's module; unless `later`, finds its token and the key labelled
    /// `key_label` and logs in now.
    pub fn open(app: &AppConfig, key_label: &str, later: bool) -> Result<Self, String> {
        let module = app
            .pkcs11_module
            .as_deref()
            .ok_or("pkcs11_module is not set")?;
        let token_label = app
            .pkcs11_token_label
            .clone()
            .ok_or("pkcs11_token_label is not set")?;
        let describe = format!("PKCS#11 token {token_label:?} key {key_label:?}");
        let pin = read_pin(app).map_err(|e| format!("{describe}: {e}"))?;
        let context = context(module).map_err(|e| format!("{describe}: {e}"))?;
        let configured = fingerprint(&format!(
            "pkcs11\0{}\0{token_label}\0{key_label}",
            module.display()
        ));
        let signer = Pkcs11Signer {
            context,
            token_label,
            key_label: key_label.to_string(),
            pin,
            timeout: app.sign_timeout,
            fingerprint: Mutex::new(configured),
            describe,
            session: Mutex::new(None),
        };
        if !later {
            let opened = signer
                .login()
                .map_err(|e| format!("{}: {e}", signer.describe))?;
            *signer.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(opened);
        }
        Ok(signer)
    }

    /// A logged-in session on the token and the handle of the key.
    fn login(&self) -> Result<(Session, ObjectHandle), String> {
        let slots = self
            .context
            .get_slots_with_token()
            .map_err(|e| format!("listing slots: {e}"))?;
        let slot = slots
            .into_iter()
            .find(|slot| {
                self.context
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == self.token_label)
            })
            .ok_or("no token with this label in the module")?;
        let session = self
            .context
            .open_ro_session(slot)
            .map_err(|e| format!("opening a session: {e}"))?;
        if let Some(pin) = &self.pin {
            match session.login(UserType::User, Some(pin)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                    return Err("the PIN is incorrect".into());
                }
                Err(e) => return Err(format!("logging in: {e}")),
            }
        }
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
        ];
        let keys = session
            .find_objects(&template)
            .map_err(|e| format!("finding the key: {e}"))?;
        match keys.as_slice() {
            [key] => {
                if let Some(public) = public_fingerprint(&session, *key) {
                    *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = public;
                }
                Ok((session, *key))
            }
            [] => Err("no private key with this label on the token (or no PIN to see it)".into()),
            _ => Err(format!(
                "{} private keys carry this label: give the key a unique label",
                keys.len()
            )),
        }
    }
}

impl Signer for Pkcs11Signer {
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if session.is_none() {
            *session = Some(self.login().map_err(|e| SignError::new(self, e))?);
        }
        let Some((open, key)) = session.as_ref() else {
            return Err(SignError::new(self, "no session"));
        };
        match open.sign(&Mechanism::Sha256RsaPkcs, *key, input) {
            Ok(signature) => Ok(signature),
            Err(e) => {
                // Open a new session next time: the token may have been reset or re-inserted.
                *session = None;
                Err(SignError::new(self, format!("signing: {e}")))
            }
        }
    }

    fn describe(&self) -> &str {
        &self.describe
    }

    fn wait_limit(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn fingerprint(&self) -> String {
        self.fingerprint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The process's context for `module`, loaded and initialised on first use.
fn context(module: &Path) -> Result<Pkcs11, String> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(module)
        .map_err(|e| format!("cannot load the PKCS#11 module {}: {e}", module.display()))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(format!(
                "cannot initialise the PKCS#11 module {}: {e}",
                module.display()
            ));
        }
    }
    contexts.insert(module.to_path_buf(), context.clone());
    Ok(context)
}

/// The user PIN from `pkcs11_pin_env` or `pkcs11_pin_file` (refused when group or others may
/// read it), if any; a trailing newline is not part of it.
fn read_pin(app: &AppConfig) -> Result<Option<AuthPin>, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let text = if let Some(var) = &app.pkcs11_pin_env {
        std::env::var(var).map_err(|_| format!("pkcs11_pin_env {var} is not set"))?
    } else if let Some(path) = &app.pkcs11_pin_file {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open pkcs11_pin_file {}: {e}", path.display()))?;
        let mode = file
            .metadata()
            .map_err(|e| format!("cannot stat pkcs11_pin_file {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "pkcs11_pin_file {} is open to group/others (mode {:04o}): run chmod 600 {}",
                path.display(),
                mode & 0o7777,
                path.display()
            ));
        }
        let mut text = String::new();
        file.take(MAX_PIN_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read pkcs11_pin_file {}: {e}", path.display()))?;
        text
    } else {
        return Ok(None);
    };
    let pin = text.trim_end_matches(['\r', '\n']);
    Ok(Some(AuthPin::new(pin.into())))
}

/// The fingerprint of the key's public half, as [`crate::key::AppKey`] computes it, when the
/// token shows the modulus and exponent: the same key has the same fingerprint in a PEM file
/// and on a token.
fn public_fingerprint(session: &Session, key: ObjectHandle) -> Option<String> {
    let attributes = session
        .get_attributes(
            key,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .ok()?;
    let (mut n, mut e) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(bytes) => n = Some(bytes),
            Attribute::PublicExponent(bytes) => e = Some(bytes),
            _ => {}
        }
    }
    let encode = |bytes: &[u8]| {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        URL_SAFE_NO_PAD.encode(&bytes[start..])
    };
    Some(fingerprint(&format!("{}.{}", encode(&n?), encode(&e?))))
}
