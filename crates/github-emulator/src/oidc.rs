//! The emulator as an OIDC issuer — the wire types of its admin routes (not GitHub's API
//! surface), typed so Rust tests can build and read them; the JSON forms are documented in
//! docs/emulator.md ("OIDC issuer").
//!
//! Issuers: the default issuer (name `""`) is the API base URL exactly as printed in the URL line
//! (`oidc_issuer`), with its discovery document at `{issuer}/.well-known/openid-configuration`
//! and keys at `{issuer}/.well-known/jwks`. Further issuers, for tests that need two (a `kid` of
//! one issuer on another's token), are `{api_url}/oidc/{name}`, created by
//! `POST /_emulator/oidc/issuers` or by the first mint or rotation that names them.
//!
//! | admin route | body → answer |
//! |---|---|
//! | `POST /_emulator/oidc/issuers` | [`IssuerRef`] → [`IssuerInfo`] |
//! | `POST /_emulator/oidc/token` | [`MintIdToken`] → [`MintedIdToken`] |
//! | `POST /_emulator/oidc/rotate` | [`RotateOidcKeys`] → [`Rotated`] |
//! | `GET` / `DELETE /_emulator/oidc/stats` | → [`OidcStats`] / resets it |

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How long a minted ID token lives by default with the GitHub Actions preset or no preset
/// (GitHub's tokens live five minutes).
pub const DEFAULT_LIFETIME_SECS: i64 = 300;

/// How long a Kubernetes-preset token lives by default (the kubelet's default
/// `expirationSeconds`, one hour).
pub const KUBERNETES_LIFETIME_SECS: i64 = 3600;

/// Bytes of padding an [`Hostile::Oversized`] token carries by default (a "100 KB token").
pub const DEFAULT_OVERSIZE_BYTES: usize = 100_000;

/// A signing algorithm the issuer publishes a key for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Alg {
    /// RSA PKCS#1 v1.5 with SHA-256 (2048-bit keys) — what GitHub and Kubernetes use.
    #[default]
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl Alg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }
}

/// Names an issuer (`POST /_emulator/oidc/issuers`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerRef {
    /// `""` (or omitted) = the default issuer; else 1–32 of `a-z`, `0-9`, `-`.
    #[serde(default)]
    pub issuer: String,
}

/// Where an issuer is and which keys it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerInfo {
    /// The `iss` its tokens carry (and its discovery document names).
    pub issuer: String,
    /// `{issuer}/.well-known/openid-configuration`.
    pub discovery_url: String,
    /// `{issuer}/.well-known/jwks`.
    pub jwks_uri: String,
    /// The `kid`s in its JWKS, in publication order.
    pub kids: Vec<String>,
    /// The `kid` that signs RS256 tokens now.
    pub rs256_kid: String,
    /// The `kid` that signs ES256 tokens now.
    pub es256_kid: String,
}

/// A token shape preset; every claim it sets can be overridden by [`MintIdToken::claims`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Preset {
    /// A GitHub Actions ID token: `sub` `repo:OWNER/REPO:ref:REF` (or
    /// `repo:OWNER/REPO:environment:ENV`), `repository`, `repository_owner`, `repository_id`,
    /// `repository_owner_id` (the emulator's ids when the repository is in the fixture),
    /// `ref`, `ref_type`, `sha`, `workflow`, `workflow_ref`, `job_workflow_ref`, `actor`,
    /// `actor_id`, `event_name`, `run_id`, `run_number`, `run_attempt`, `runner_environment`,
    /// `repository_visibility`, `head_ref`, `base_ref`, `jti`; `nbf` = `iat` − 600 s as in GitHub's
    /// documented example; default `aud` `https://github.com/OWNER` (GitHub's default audience).
    GithubActions {
        /// `OWNER/REPO`.
        #[serde(default = "default_repository")]
        repository: String,
        /// The git ref, e.g. `refs/heads/main` or `refs/tags/v1`.
        #[serde(default = "default_ref", rename = "ref")]
        git_ref: String,
        /// A deployment environment: `sub` becomes `repo:OWNER/REPO:environment:ENV`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        environment: Option<String>,
        /// The workflow file (`.github/workflows/<this>`), also in `job_workflow_ref`.
        #[serde(default = "default_workflow_file")]
        workflow_file: String,
        /// The user who started the run.
        #[serde(default = "default_actor")]
        actor: String,
    },
    /// A Kubernetes projected service-account token: `sub`
    /// `system:serviceaccount:NAMESPACE:NAME` and the nested `kubernetes.io` claim (`namespace`,
    /// `pod {name, uid}`, `serviceaccount {name, uid}`, `node {name, uid}`); `aud` an array,
    /// default `[issuer]` (the API server's default audience); `nbf` = `iat`; one hour.
    Kubernetes {
        /// The namespace.
        #[serde(default = "default_namespace")]
        namespace: String,
        /// The service account's name.
        #[serde(default = "default_service_account")]
        service_account: String,
        /// The pod's name.
        #[serde(default = "default_pod")]
        pod: String,
        /// The node's name.
        #[serde(default = "default_node")]
        node: String,
    },
}

fn default_repository() -> String {
    "acme/widgets".to_string()
}
fn default_ref() -> String {
    "refs/heads/main".to_string()
}
fn default_workflow_file() -> String {
    "ci.yml".to_string()
}
fn default_actor() -> String {
    "octocat".to_string()
}
fn default_namespace() -> String {
    "default".to_string()
}
fn default_service_account() -> String {
    "ghapp-client".to_string()
}
fn default_pod() -> String {
    "client-0".to_string()
}
fn default_node() -> String {
    "node-1".to_string()
}

/// A deliberately bad token, for tests of a verifier. Each is otherwise the token the request
/// describes, signed normally unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    /// `exp` ten minutes ago (`iat`/`nbf` moved back with it), beyond any small leeway.
    Expired,
    /// `nbf` and `iat` ten minutes ahead.
    NotYetValid,
    /// `aud` = `wrong-audience`.
    WrongAudience,
    /// `iss` = `https://wrong-issuer.invalid` (discovery of the real issuer still works).
    WrongIssuer,
    /// Signed by a fresh key that is in no JWKS, under the `kid` of the issuer's signing key.
    WrongKey,
    /// Signed by the issuer's real signing key, under a `kid` no JWKS has (so only a verifier
    /// that ignores `kid` and tries every key would accept it).
    UnknownKid,
    /// Header `{"alg":"none"}` with the real `kid` and an empty signature (`h.p.`).
    AlgNone,
    /// `alg: HS256`, the real `kid`, HMAC-SHA256 keyed with the issuer's public key as its
    /// SubjectPublicKeyInfo PEM text (the classic confusion: it verifies only for a verifier that
    /// takes the algorithm from the token and feeds the public key to HMAC).
    Hs256PublicKeyPem,
    /// As [`Hostile::Hs256PublicKeyPem`], keyed with the public key's SubjectPublicKeyInfo DER.
    Hs256PublicKeyDer,
    /// A `padding` claim of [`MintIdToken::oversize_bytes`] bytes (default 100,000); signed
    /// normally.
    Oversized,
}

/// `POST /_emulator/oidc/token`: mint an ID token.
///
/// Claims are built in this order, later steps winning: the preset's claims; `iss`, `sub`,
/// `aud`, `iat`, `nbf`, `exp`; [`MintIdToken::claims`]; the hostile variant's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintIdToken {
    /// The issuer whose `iss` the token carries: `""` = default; another name is created on use.
    #[serde(default)]
    pub issuer: String,
    /// A shape preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// `sub`; required without a preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `aud`: a string or an array of strings; required without a preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    /// More claims (or overrides of any claim above), any JSON.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
    /// Seconds from `iat` to `exp` (default: 300, or 3600 with the Kubernetes preset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<i64>,
    /// Which of the issuer's keys signs it (default RS256).
    #[serde(default)]
    pub alg: Alg,
    /// Sign with this other issuer's current key and `kid` instead (the token still names
    /// `issuer`): "a kid of one issuer on another's token".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_issuer: Option<String>,
    /// Make it deliberately bad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostile: Option<Hostile>,
    /// Padding size for [`Hostile::Oversized`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversize_bytes: Option<usize>,
}

/// The answer to [`MintIdToken`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedIdToken {
    /// The compact JWS.
    pub token: String,
    /// The header's `alg` (`none` and `HS256` for those hostile variants).
    pub alg: String,
    /// The header's `kid`.
    pub kid: String,
    /// The claims as signed.
    pub claims: Map<String, Value>,
}

/// `POST /_emulator/oidc/rotate`: a new key becomes the signing key for `alg`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateOidcKeys {
    /// The issuer (`""` = default).
    #[serde(default)]
    pub issuer: String,
    /// Which key to replace (default RS256).
    #[serde(default)]
    pub alg: Alg,
    /// Keep the old key in the JWKS (tokens it signed still verify) or drop it.
    pub keep_old: bool,
}

/// The answer to [`RotateOidcKeys`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    /// The new signing key's `kid`.
    pub kid: String,
    /// The key it replaced.
    pub previous_kid: String,
    /// Every `kid` in the JWKS now.
    pub kids: Vec<String>,
}

/// `GET /_emulator/oidc/stats`: fetches of the public OIDC routes since start (or the last
/// `DELETE /_emulator/oidc/stats`), so tests can assert there is no JWKS fetch storm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcStats {
    /// Discovery documents served, all issuers.
    pub discovery_fetches: u64,
    /// JWKS documents served, all issuers.
    pub jwks_fetches: u64,
    /// Per issuer name (`""` = default).
    pub issuers: BTreeMap<String, IssuerFetches>,
}

/// Fetches of one issuer's documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerFetches {
    /// Discovery documents served.
    pub discovery_fetches: u64,
    /// JWKS documents served.
    pub jwks_fetches: u64,
}
