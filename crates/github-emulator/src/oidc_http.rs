//! The OIDC issuer over HTTP: the public documents (discovery and JWKS, on the API port but
//! outside GitHub's API: no User-Agent rule, no rate limits, no request counters) and the admin
//! routes under `/_emulator/oidc/` (mint, rotate, issuers, fetch counters).

use crate::core::Core;
use crate::http::{Body, json, read_body};
use crate::id_token;
use crate::issuer::{IssuerError, IssuerKey, issuer_url};
use crate::oidc::{Alg, Hostile, IssuerRef, MintIdToken, MintedIdToken, RotateOidcKeys};
use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json as j;

/// Largest admin request body (the claims of an oversized token are made here, not sent).
const MAX_ADMIN_BODY: usize = 1 << 20;

/// Whether a path on the API port belongs to the OIDC issuer.
pub fn is_public_path(path: &str) -> bool {
    path.starts_with("/.well-known/") || path.starts_with("/oidc/")
}

/// Serves `GET {issuer}/.well-known/openid-configuration` and `GET {issuer}/.well-known/jwks`.
pub async fn public(core: &Core, method: &Method, path: &str) -> Response<Body> {
    let (name, document) = match path.strip_prefix("/oidc/") {
        Some(rest) => match rest.split_once('/') {
            Some((name, document)) => (name, format!("/{document}")),
            None => return not_found(),
        },
        None => ("", path.to_string()),
    };
    let document = document.trim_end_matches('/');
    if document != "/.well-known/openid-configuration" && document != "/.well-known/jwks" {
        return not_found();
    }
    if !crate::issuer::valid_name(name) || !core.oidc.exists(name) {
        return not_found();
    }
    if method != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if let Err(e) = core.oidc.ensure(name).await {
        tracing::warn!("OIDC issuer {name:?}: {e}");
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    let issuer = issuer_url(&core.bases().api, name);
    let body = if document == "/.well-known/jwks" {
        core.oidc.fetch_jwks(name)
    } else {
        core.oidc.count_discovery(name).then(|| discovery(&issuer))
    };
    let mut response = match body {
        Some(body) => json(StatusCode::OK, &body),
        None => not_found(),
    };
    if let Ok(date) = HeaderValue::from_str(&core.clock.http_date()) {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

/// The discovery document, in the shape of GitHub Actions' (which names `jwks_uri` under
/// `/.well-known/jwks`), with both algorithms the issuer signs with.
fn discovery(issuer: &str) -> serde_json::Value {
    j!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": [
            "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository",
            "repository_id", "repository_owner", "repository_owner_id", "run_id", "run_number",
            "run_attempt", "actor", "actor_id", "workflow", "workflow_ref", "event_name",
            "ref_type", "job_workflow_ref", "environment", "kubernetes.io"
        ],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "scopes_supported": ["openid"],
    })
}

/// Serves `/_emulator/oidc/...` (the caller has matched the prefix).
pub async fn admin(core: &Core, method: &Method, path: &str, body: Incoming) -> Response<Body> {
    let bytes = match read_body(body, MAX_ADMIN_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match (method, path.trim_end_matches('/')) {
        (&Method::GET, "/_emulator/oidc/stats") => json(StatusCode::OK, &core.oidc.stats()),
        (&Method::DELETE, "/_emulator/oidc/stats") => {
            core.oidc.reset_stats();
            json(StatusCode::OK, &j!({ "ok": true }))
        }
        (&Method::POST, "/_emulator/oidc/issuers") => match parse::<IssuerRef>(&bytes) {
            Ok(request) => match core.oidc.ensure(&request.issuer).await {
                Ok(()) => info(core, &request.issuer),
                Err(e) => issuer_error(&e),
            },
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        (&Method::POST, "/_emulator/oidc/token") => match parse::<MintIdToken>(&bytes) {
            Ok(request) => mint(core, &request).await,
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        (&Method::POST, "/_emulator/oidc/rotate") => match parse::<RotateOidcKeys>(&bytes) {
            Ok(request) => rotate(core, &request).await,
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        _ => error(StatusCode::NOT_FOUND, "unknown admin route"),
    }
}

fn info(core: &Core, name: &str) -> Response<Body> {
    match core.oidc.info(name, &core.bases().api) {
        Ok(info) => json(StatusCode::OK, &info),
        Err(e) => issuer_error(&e),
    }
}

async fn mint(core: &Core, request: &MintIdToken) -> Response<Body> {
    if let Err(e) = core.oidc.ensure(&request.issuer).await {
        return issuer_error(&e);
    }
    let key_issuer = request.signing_issuer.as_deref().unwrap_or(&request.issuer);
    if let Err(e) = core.oidc.ensure(key_issuer).await {
        return issuer_error(&e);
    }
    let key = match core.oidc.signing_key(key_issuer, request.alg) {
        Ok(key) => key,
        Err(e) => return issuer_error(&e),
    };
    let stray = if request.hostile == Some(Hostile::WrongKey) {
        match generate(request.alg).await {
            Ok(key) => Some(key),
            Err(response) => return response,
        }
    } else {
        None
    };
    let issuer = issuer_url(&core.bases().api, &request.issuer);
    let repo_ids = |owner: &str, name: &str| core.repo(owner, name).map(|r| (r.id, r.owner.id));
    let claims = match id_token::claims(request, &issuer, core.clock.unix(), &repo_ids) {
        Ok(claims) => claims,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match id_token::sign(&claims, &key, request.hostile, stray.as_ref()) {
        Ok(signed) => {
            tracing::debug!(issuer = %issuer, kid = %signed.kid, alg = %signed.alg, "ID token minted");
            json(
                StatusCode::OK,
                &MintedIdToken {
                    token: signed.token,
                    alg: signed.alg,
                    kid: signed.kid,
                    claims,
                },
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn rotate(core: &Core, request: &RotateOidcKeys) -> Response<Body> {
    if let Err(e) = core.oidc.ensure(&request.issuer).await {
        return issuer_error(&e);
    }
    let key = match generate(request.alg).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    match core.oidc.rotate(&request.issuer, key, request.keep_old) {
        Ok(rotated) => json(StatusCode::OK, &rotated),
        Err(e) => issuer_error(&e),
    }
}

/// A fresh key, made off the async threads.
async fn generate(alg: Alg) -> Result<IssuerKey, Response<Body>> {
    match tokio::task::spawn_blocking(move || IssuerKey::generate(alg)).await {
        Ok(Ok(key)) => Ok(key),
        Ok(Err(e)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("generating an {} key: {e:#}", alg.as_str()),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("key generation task: {e}"),
        )),
    }
}

/// The request body as `T` (an empty body reads as `{}`); the error is the 400 message.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| format!("invalid request: {e}"))
}

fn issuer_error(e: &IssuerError) -> Response<Body> {
    let status = match e {
        IssuerError::InvalidName { .. } => StatusCode::BAD_REQUEST,
        IssuerError::Unknown { .. } => StatusCode::NOT_FOUND,
        IssuerError::KeyGeneration { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &j!({ "ok": false, "error": message }))
}

fn not_found() -> Response<Body> {
    plain(StatusCode::NOT_FOUND, "Not Found")
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(crate::http::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
