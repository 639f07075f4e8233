//! ID tokens the emulator's OIDC issuers hand out: the claims of a [`MintIdToken`] request (the
//! GitHub Actions and Kubernetes shapes, overrides, hostile changes) and the signed compact JWS.
//! Well-formed tokens are signed by jsonwebtoken; only the deliberately broken ones (`alg: none`,
//! HS256 keyed with the public key) are put together by hand.

use crate::issuer::IssuerKey;
use crate::oidc::{
    DEFAULT_LIFETIME_SECS, DEFAULT_OVERSIZE_BYTES, Hostile, KUBERNETES_LIFETIME_SECS, MintIdToken,
    Preset,
};
use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The `aud` a [`Hostile::WrongAudience`] token carries.
pub const WRONG_AUDIENCE: &str = "wrong-audience";

/// The `iss` a [`Hostile::WrongIssuer`] token carries.
pub const WRONG_ISSUER: &str = "https://wrong-issuer.invalid";

/// How far in the past an [`Hostile::Expired`] token's `exp` is, and how far ahead a
/// [`Hostile::NotYetValid`] token's `nbf` is: ten minutes, well beyond any verifier's small leeway.
pub const HOSTILE_TIME_SHIFT_SECS: i64 = 600;

/// Why a mint request was refused (400 on the admin API).
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// A required field is missing.
    #[error("{field} is required without a preset")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A field has an unusable value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Signing failed.
    #[error("signing the ID token: {reason}")]
    Signing {
        /// What went wrong.
        reason: String,
    },
}

/// Ids of a repository the emulator knows: (repository id, owner id).
pub type RepoIds = Option<(u64, u64)>;

/// The claims of `request`, for an issuer at `issuer_url`, at `now` (Unix seconds).
/// `repo_ids` looks a repository up by owner and name (the Actions preset uses its ids).
pub fn claims(
    request: &MintIdToken,
    issuer_url: &str,
    now: i64,
    repo_ids: &dyn Fn(&str, &str) -> RepoIds,
) -> Result<Map<String, Value>, MintError> {
    let mut claims = Map::new();
    let (default_sub, default_aud, lifetime, nbf_before) = match &request.preset {
        None => (None, None, DEFAULT_LIFETIME_SECS, 0),
        Some(preset @ Preset::GithubActions { repository, .. }) => {
            let Some((owner, _)) = repository.split_once('/') else {
                return Err(MintError::Invalid {
                    field: "preset.repository",
                    reason: format!("{repository:?} is not OWNER/REPO"),
                });
            };
            let (sub, more) = github_actions(preset, repo_ids);
            claims.extend(more);
            (
                Some(sub),
                Some(json!(format!("https://github.com/{owner}"))),
                DEFAULT_LIFETIME_SECS,
                // GitHub's documented example token has nbf 600 s before iat.
                600,
            )
        }
        Some(preset @ Preset::Kubernetes { .. }) => {
            let (sub, more) = kubernetes(preset);
            claims.extend(more);
            (
                Some(sub),
                Some(json!([issuer_url])),
                KUBERNETES_LIFETIME_SECS,
                0,
            )
        }
    };
    let sub = request
        .sub
        .clone()
        .or(default_sub)
        .ok_or(MintError::Missing { field: "sub" })?;
    let aud = request
        .aud
        .clone()
        .or(default_aud)
        .ok_or(MintError::Missing { field: "aud" })?;
    let audience_ok = match &aud {
        Value::String(_) => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
        _ => false,
    };
    if !audience_ok {
        return Err(MintError::Invalid {
            field: "aud",
            reason: "a string or a non-empty array of strings".to_string(),
        });
    }
    let lifetime = request.lifetime_secs.unwrap_or(lifetime);
    if lifetime <= 0 {
        return Err(MintError::Invalid {
            field: "lifetime_secs",
            reason: format!("{lifetime} is not positive"),
        });
    }
    claims.insert("jti".into(), json!(uuid_like(&random_bytes())));
    claims.insert("sub".into(), json!(sub));
    claims.insert("aud".into(), aud);
    claims.insert("iss".into(), json!(issuer_url));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now - nbf_before));
    claims.insert("exp".into(), json!(now + lifetime));
    for (name, value) in &request.claims {
        claims.insert(name.clone(), value.clone());
    }
    match request.hostile {
        Some(Hostile::Expired) => {
            let exp = now - HOSTILE_TIME_SHIFT_SECS;
            claims.insert("exp".into(), json!(exp));
            claims.insert("iat".into(), json!(exp - lifetime));
            claims.insert("nbf".into(), json!(exp - lifetime - nbf_before));
        }
        Some(Hostile::NotYetValid) => {
            let later = now + HOSTILE_TIME_SHIFT_SECS;
            claims.insert("iat".into(), json!(later));
            claims.insert("nbf".into(), json!(later));
            claims.insert("exp".into(), json!(later + lifetime));
        }
        Some(Hostile::WrongAudience) => {
            claims.insert("aud".into(), json!(WRONG_AUDIENCE));
        }
        Some(Hostile::WrongIssuer) => {
            claims.insert("iss".into(), json!(WRONG_ISSUER));
        }
        Some(Hostile::Oversized) => {
            let size = request.oversize_bytes.unwrap_or(DEFAULT_OVERSIZE_BYTES);
            claims.insert("padding".into(), json!("x".repeat(size)));
        }
        _ => {}
    }
    Ok(claims)
}

/// The GitHub Actions claims (all strings, as GitHub sends them) and `sub`.
fn github_actions(
    preset: &Preset,
    repo_ids: &dyn Fn(&str, &str) -> RepoIds,
) -> (String, Map<String, Value>) {
    let Preset::GithubActions {
        repository,
        git_ref,
        environment,
        workflow_file,
        actor,
    } = preset
    else {
        return (String::new(), Map::new());
    };
    let (owner, name) = repository.split_once('/').unwrap_or((repository, ""));
    let sub = match environment {
        Some(env) => format!("repo:{repository}:environment:{env}"),
        None => format!("repo:{repository}:ref:{git_ref}"),
    };
    let (repository_id, owner_id) = repo_ids(owner, name).unwrap_or((100_001, 1001));
    let ref_type = if git_ref.starts_with("refs/tags/") {
        "tag"
    } else {
        "branch"
    };
    let workflow_path = format!("{repository}/.github/workflows/{workflow_file}@{git_ref}");
    let sha: String = random_bytes()
        .iter()
        .chain(random_bytes()[..4].iter())
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut claims = Map::new();
    let mut put = |name: &str, value: String| {
        claims.insert(name.to_string(), Value::String(value));
    };
    put("ref", git_ref.clone());
    put("sha", sha);
    put("repository", repository.clone());
    put("repository_owner", owner.to_string());
    put("repository_id", repository_id.to_string());
    put("repository_owner_id", owner_id.to_string());
    put("repository_visibility", "private".into());
    put("actor", actor.clone());
    put("actor_id", "583231".into());
    put(
        "run_id",
        (1_000_000_000 + fastrand::u64(..1_000_000_000)).to_string(),
    );
    put("run_number", fastrand::u32(1..1000).to_string());
    put("run_attempt", "1".into());
    put("runner_environment", "github-hosted".into());
    put(
        "workflow",
        workflow_file.trim_end_matches(".yml").to_string(),
    );
    put("workflow_ref", workflow_path.clone());
    put("job_workflow_ref", workflow_path);
    put("event_name", "push".into());
    put("ref_type", ref_type.into());
    put("head_ref", String::new());
    put("base_ref", String::new());
    if let Some(env) = environment {
        put("environment", env.clone());
    }
    (sub, claims)
}

/// The Kubernetes claims (the nested `kubernetes.io`) and `sub`.
fn kubernetes(preset: &Preset) -> (String, Map<String, Value>) {
    let Preset::Kubernetes {
        namespace,
        service_account,
        pod,
        node,
    } = preset
    else {
        return (String::new(), Map::new());
    };
    let uid = |kind: &str, name: &str| {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{kind}/{namespace}/{name}").as_bytes(),
        );
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_ref()[..16]);
        uuid_like(&bytes)
    };
    let mut claims = Map::new();
    claims.insert(
        "kubernetes.io".into(),
        json!({
            "namespace": namespace,
            "node": { "name": node, "uid": uid("node", node) },
            "pod": { "name": pod, "uid": uid("pod", pod) },
            "serviceaccount": { "name": service_account, "uid": uid("serviceaccount", service_account) },
        }),
    );
    (
        format!("system:serviceaccount:{namespace}:{service_account}"),
        claims,
    )
}

/// A signed (or deliberately mis-signed) token: its header `alg`, `kid` and the compact JWS.
#[derive(Debug)]
pub struct Signed {
    /// The header's `alg`.
    pub alg: String,
    /// The header's `kid`.
    pub kid: String,
    /// The token.
    pub token: String,
}

/// Signs `claims` with `key` (its `kid` in the header) as `hostile` says; `stray` is the key a
/// [`Hostile::WrongKey`] token is signed with instead (one in no JWKS).
pub fn sign(
    claims: &Map<String, Value>,
    key: &IssuerKey,
    hostile: Option<Hostile>,
    stray: Option<&IssuerKey>,
) -> Result<Signed, MintError> {
    let kid = match hostile {
        Some(Hostile::UnknownKid) => format!("unknown-{}", hex(&random_bytes())),
        _ => key.kid.clone(),
    };
    match hostile {
        Some(Hostile::AlgNone) => {
            let token = format!(
                "{}.{}.",
                b64(&json!({ "alg": "none", "typ": "JWT", "kid": kid })),
                b64(&Value::Object(claims.clone()))
            );
            return Ok(Signed {
                alg: "none".into(),
                kid,
                token,
            });
        }
        Some(confusion @ (Hostile::Hs256PublicKeyPem | Hostile::Hs256PublicKeyDer)) => {
            let secret = if confusion == Hostile::Hs256PublicKeyPem {
                crate::keys::pem_encode("PUBLIC KEY", &key.spki_der).into_bytes()
            } else {
                key.spki_der.clone()
            };
            let signing_input = format!(
                "{}.{}",
                b64(&json!({ "alg": "HS256", "typ": "JWT", "kid": kid })),
                b64(&Value::Object(claims.clone()))
            );
            let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
            let tag = aws_lc_rs::hmac::sign(&hmac_key, signing_input.as_bytes());
            let token = format!(
                "{signing_input}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
            );
            return Ok(Signed {
                alg: "HS256".into(),
                kid,
                token,
            });
        }
        _ => {}
    }
    let signer = match (hostile, stray) {
        (Some(Hostile::WrongKey), Some(stray)) => stray,
        (Some(Hostile::WrongKey), None) => {
            return Err(MintError::Signing {
                reason: "no stray key for a wrong-key token".into(),
            });
        }
        _ => key,
    };
    let algorithm = match key.alg {
        crate::oidc::Alg::RS256 => jsonwebtoken::Algorithm::RS256,
        crate::oidc::Alg::ES256 => jsonwebtoken::Algorithm::ES256,
    };
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = Some(kid.clone());
    let token = jsonwebtoken::encode(&header, claims, &signer.encoding).map_err(|e| {
        MintError::Signing {
            reason: e.to_string(),
        }
    })?;
    Ok(Signed {
        alg: key.alg.as_str().into(),
        kid,
        token,
    })
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(value).unwrap_or_default())
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 bytes as `8-4-4-4-12` hex (the shape of a `jti` or a Kubernetes uid).
fn uuid_like(bytes: &[u8; 16]) -> String {
    let h = hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_repos(_: &str, _: &str) -> RepoIds {
        None
    }

    #[test]
    fn github_actions_preset_shapes_sub_and_defaults_the_audience() {
        let request = MintIdToken {
            preset: Some(Preset::GithubActions {
                repository: "acme/widgets".into(),
                git_ref: "refs/heads/main".into(),
                environment: None,
                workflow_file: "ci.yml".into(),
                actor: "octocat".into(),
            }),
            ..MintIdToken::default()
        };
        let claims = claims(&request, "http://i", 1000, &no_repos).expect("claims");
        assert_eq!(claims["sub"], "repo:acme/widgets:ref:refs/heads/main");
        assert_eq!(claims["aud"], "https://github.com/acme");
        assert_eq!(claims["repository_owner"], "acme");
        assert_eq!(
            claims["job_workflow_ref"],
            "acme/widgets/.github/workflows/ci.yml@refs/heads/main"
        );
        assert_eq!(claims["exp"], 1300);
        assert_eq!(claims["sha"].as_str().map(str::len), Some(40));
    }

    #[test]
    fn no_preset_needs_sub_and_aud_and_overrides_win() {
        let mut request = MintIdToken::default();
        assert!(claims(&request, "http://i", 0, &no_repos).is_err());
        request.sub = Some("s".into());
        request.aud = Some(json!("ghapp"));
        request.claims.insert("exp".into(), json!(5));
        let built = claims(&request, "http://i", 0, &no_repos).expect("claims");
        assert_eq!(built["exp"], 5);
        request.hostile = Some(Hostile::Expired);
        let built = claims(&request, "http://i", 1000, &no_repos).expect("claims");
        assert_eq!(built["exp"], 400);
    }
}
