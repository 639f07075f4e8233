//! Who signs an App JWT: the seam between the JWT (`jwt.rs`: claims, reuse, clock) and the
//! private key. A [`Signer`] gets the JWT's signing input (`base64url(header).base64url(claims)`)
//! and returns the raw RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256).
//!
//! - the PEM key ([`crate::key::AppKey`], `pem.rs`): today's behaviour, the key in memory;
//!   [`NextKeyFile`] the rotation's next key file, read when first needed;
//! - `pkcs11.rs` (cargo feature `pkcs11`): a key on a PKCS#11 token (HSM, SoftHSM);
//! - `kms.rs` (cargo feature `aws-kms`): a key in AWS KMS.
//! - `command.rs`: `sign_command`, a program that signs its stdin (ghapp never sees the key);
//!
//! Signers block (a child process, a C library): `jwt.rs` calls them on tokio's blocking pool,
//! one signature at a time per App, and only when the reused JWT runs out of life.

#[cfg(feature = "aws-kms")]
mod aws_profile;
mod command;
#[cfg(feature = "aws-kms")]
mod kms;
mod pem;
#[cfg(feature = "pkcs11")]
mod pkcs11;

pub use command::CommandSigner;
pub use pem::NextKeyFile;

use crate::config::{AppConfig, SignerKind};
use crate::error::BrokerError;
use crate::key::AppKey;
use std::fmt;
use std::sync::Arc;

/// Signs App JWTs. Implementations block; they are called off the async runtime.
pub trait Signer: Send + Sync {
    /// The raw RSASSA-PKCS1-v1_5 SHA-256 signature of `input` (the JWT's signing input).
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError>;

    /// The signer as messages name it: `file /etc/ghapp/acme.pem`, `command /usr/bin/sign-jwt`,
    /// `PKCS#11 token "ghapp" key "acme"`. Never a secret.
    fn describe(&self) -> &str;

    /// `sha256:…`: the fingerprint of the public key when the signer knows it (the same value
    /// for the same key wherever it is held), else of the signer's configuration.
    fn fingerprint(&self) -> String;

    /// True when signing is fast and needs no I/O (a key in memory): done inline rather than
    /// on the blocking pool.
    fn is_inline(&self) -> bool {
        false
    }

    /// How long callers wait for one signature before it counts as failed, for a signer that
    /// cannot stop itself (a call into a C library); `None` when the signer keeps its own
    /// deadline (a command is killed at `sign_timeout`) or needs none.
    fn wait_limit(&self) -> Option<std::time::Duration> {
        None
    }
}

impl fmt::Debug for dyn Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("signer", &self.describe())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// A signature that could not be made: which signer, and why (never key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer {signer}: {detail}")]
pub struct SignError {
    /// The signer, as [`Signer::describe`] names it.
    pub signer: String,
    /// What went wrong.
    pub detail: String,
}

impl SignError {
    /// A failure of `signer`.
    pub fn new(signer: &dyn Signer, detail: impl Into<String>) -> Self {
        SignError {
            signer: signer.describe().to_string(),
            detail: detail.into(),
        }
    }
}

/// The signers of `app`, in the order they are tried: the configured key or signer first, then
/// the `next_*` key of a rotation, if any.
pub fn signers_for(app: &AppConfig) -> Result<Vec<Arc<dyn Signer>>, BrokerError> {
    let label = &app.name;
    let first: Arc<dyn Signer> = match app.signer {
        None => Arc::new(AppKey::load(app)?),
        Some(SignerKind::Command) => {
            let argv = app.sign_command.as_deref().unwrap_or_default();
            Arc::new(CommandSigner::new(argv, app.sign_timeout).map_err(|e| app_error(label, e))?)
        }
        Some(SignerKind::Pkcs11) => pkcs11_signer(app, app.pkcs11_key_label.as_deref(), false)?,
        Some(SignerKind::AwsKms) => kms_signer(app, app.kms_key_id.as_deref().unwrap_or_default())?,
    };
    let mut signers = vec![first];
    if let Some(path) = &app.next_private_key_file {
        signers.push(Arc::new(NextKeyFile::new(path, label)));
    } else if let Some(argv) = &app.next_sign_command {
        signers.push(Arc::new(
            CommandSigner::new(argv, app.sign_timeout).map_err(|e| app_error(label, e))?,
        ));
    } else if let Some(key_label) = &app.next_pkcs11_key_label {
        signers.push(pkcs11_signer(app, Some(key_label), true)?);
    } else if let Some(key_id) = &app.next_kms_key_id {
        signers.push(kms_signer(app, key_id)?);
    }
    Ok(signers)
}

fn app_error(label: &str, message: String) -> BrokerError {
    BrokerError::internal(format!("GitHub App {label}: {message}"))
}

#[cfg(feature = "pkcs11")]
fn pkcs11_signer(
    app: &AppConfig,
    key_label: Option<&str>,
    later: bool,
) -> Result<Arc<dyn Signer>, BrokerError> {
    let signer = pkcs11::Pkcs11Signer::open(app, key_label.unwrap_or_default(), later)
        .map_err(|e| app_error(&app.name, e))?;
    Ok(Arc::new(signer))
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11_signer(
    app: &AppConfig,
    _key_label: Option<&str>,
    _later: bool,
) -> Result<Arc<dyn Signer>, BrokerError> {
    Err(app_error(
        &app.name,
        "signer = \"pkcs11\" is not built into this ghapp (cargo feature pkcs11; docs/keys.md)"
            .into(),
    ))
}

#[cfg(feature = "aws-kms")]
fn kms_signer(app: &AppConfig, key_id: &str) -> Result<Arc<dyn Signer>, BrokerError> {
    let signer = kms::KmsSigner::new(app, key_id).map_err(|e| app_error(&app.name, e))?;
    Ok(Arc::new(signer))
}

#[cfg(not(feature = "aws-kms"))]
fn kms_signer(app: &AppConfig, _key_id: &str) -> Result<Arc<dyn Signer>, BrokerError> {
    Err(app_error(
        &app.name,
        "signer = \"aws_kms\" is not built into this ghapp (cargo feature aws-kms; docs/keys.md)"
            .into(),
    ))
}
