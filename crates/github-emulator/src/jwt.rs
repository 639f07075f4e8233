//! App JWT verification with GitHub's rules, check order and exact messages (facts file A.1, E.1):
//!
//! 1. three base64url parts, JSON header with `alg` = `RS256`, JSON claims object — else
//!    401 `A JSON web token could not be decoded` (reason `undecodable`);
//! 2. `iss` is an integer, a numeric string, or a known client id — else 401
//!    `'Issuer' claim ('iss') must be an Integer` (`bad_iss`);
//! 3. the App exists — else 404 `Integration not found` (`unknown_app`);
//! 4. the RS256 signature verifies against that App's key — else `undecodable` (a wrong key and a
//!    key/App-id mismatch look the same on GitHub);
//! 5. `exp` is a number after now — else `'Expiration time' claim ('exp') must be a numeric value
//!    representing the future time at which the assertion expires` (`expired`);
//! 6. `exp` ≤ now + 600 — else `'Expiration time' claim ('exp') is too far in the future`
//!    (`exp_too_far`);
//! 7. `iat` is an integer ≤ now + [`IAT_LEEWAY_SECS`] — else `'Issued at' claim ('iat') must be
//!    an Integer representing the time that the assertion was issued` (`iat_future`).
//!
//! "now" is the emulator's clock (system time + the `clock_offset` fault).

use crate::model::App;
use base64::Engine as _;
use http::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;

/// How far ahead of the emulator's clock `iat` may be. GitHub tolerates a little skew; we allow
/// one second so a client that stamps `iat = now` on the same machine always passes, while any
/// real skew (the daemon must backdate `iat`) is caught.
pub const IAT_LEEWAY_SECS: i64 = 1;

/// The furthest `exp` may be ahead of now.
pub const MAX_EXP_AHEAD_SECS: i64 = 600;

/// Message for an undecodable JWT (also for a wrong key).
pub const MSG_UNDECODABLE: &str = "A JSON web token could not be decoded";
/// Message for a bad `iss`.
pub const MSG_BAD_ISS: &str = "'Issuer' claim ('iss') must be an Integer";
/// Message for `exp` in the past.
pub const MSG_EXPIRED: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
/// Message for `exp` too far ahead.
pub const MSG_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
/// Message for `iat` in the future.
pub const MSG_IAT_FUTURE: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

/// Why a JWT was rejected; the `reason` names are the admin stats keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a decodable RS256 JWT, or the signature does not verify.
    Undecodable,
    /// `iss` is neither an App id nor a known client id.
    BadIss,
    /// No App with that id.
    UnknownApp,
    /// `exp` missing, not a number, or not in the future.
    Expired,
    /// `exp` more than 600 s ahead.
    ExpTooFar,
    /// `iat` missing, not an integer, or in the future.
    IatFuture,
    /// No credentials at all on a JWT route.
    Missing,
}

impl Rejection {
    /// The stats key.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Undecodable => "undecodable",
            Rejection::BadIss => "bad_iss",
            Rejection::UnknownApp => "unknown_app",
            Rejection::Expired => "expired",
            Rejection::ExpTooFar => "exp_too_far",
            Rejection::IatFuture => "iat_future",
            Rejection::Missing => "missing",
        }
    }

    /// The HTTP status GitHub answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::UnknownApp => StatusCode::NOT_FOUND,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// GitHub's exact message.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Undecodable => MSG_UNDECODABLE,
            Rejection::BadIss => MSG_BAD_ISS,
            Rejection::UnknownApp => "Integration not found",
            Rejection::Expired => MSG_EXPIRED,
            Rejection::ExpTooFar => MSG_EXP_TOO_FAR,
            Rejection::IatFuture => MSG_IAT_FUTURE,
            Rejection::Missing => "Requires authentication",
        }
    }
}

fn b64(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

fn json_object(part: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(&b64(part)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Verifies an App JWT and returns the App id it authenticates.
pub fn verify(token: &str, apps: &BTreeMap<u64, App>, now: i64) -> Result<u64, Rejection> {
    verify_with_keys(token, apps, &BTreeMap::new(), now)
}

/// [`verify`], where an App listed in `rotated_keys` is checked against those public keys
/// (PKCS#1 DER; any may sign) instead of its fixture key — after `add_key`/`remove_key`.
pub fn verify_with_keys(
    token: &str,
    apps: &BTreeMap<u64, App>,
    rotated_keys: &BTreeMap<u64, Vec<Vec<u8>>>,
    now: i64,
) -> Result<u64, Rejection> {
    verify_with_options(token, apps, rotated_keys, now, true)
}

/// [`verify_with_keys`]; with `accept_client_id` false an `iss` that is a client id is refused
/// as `bad_iss` (GitHub Enterprise Server before 3.14 knows only App ids).
pub fn verify_with_options(
    token: &str,
    apps: &BTreeMap<u64, App>,
    rotated_keys: &BTreeMap<u64, Vec<Vec<u8>>>,
    now: i64,
    accept_client_id: bool,
) -> Result<u64, Rejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Undecodable);
    };
    let header_json = json_object(header).ok_or(Rejection::Undecodable)?;
    if header_json.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(Rejection::Undecodable);
    }
    let claims_json = json_object(claims).ok_or(Rejection::Undecodable)?;
    let signature = b64(signature).ok_or(Rejection::Undecodable)?;

    let app_id = match claims_json.get("iss") {
        Some(Value::Number(n)) => n.as_u64().ok_or(Rejection::BadIss)?,
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().map_err(|_| Rejection::BadIss)?
        }
        Some(Value::String(_)) if !accept_client_id => return Err(Rejection::BadIss),
        Some(Value::String(s)) => apps
            .values()
            .find(|app| app.client_id.as_deref() == Some(s.as_str()))
            .map(|app| app.id)
            .ok_or(Rejection::BadIss)?,
        _ => return Err(Rejection::BadIss),
    };
    let app = apps.get(&app_id).ok_or(Rejection::UnknownApp)?;

    let signed = &token[..header.len() + 1 + claims.len()];
    let keys: Vec<&[u8]> = match rotated_keys.get(&app_id) {
        Some(rotated) => rotated.iter().map(Vec::as_slice).collect(),
        None => vec![app.public_key_der.as_slice()],
    };
    let verified = keys.iter().any(|der| {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            der,
        )
        .verify(signed.as_bytes(), &signature)
        .is_ok()
    });
    if !verified {
        return Err(Rejection::Undecodable);
    }

    let exp = claims_json
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(Rejection::Expired)?;
    if exp <= now {
        return Err(Rejection::Expired);
    }
    if exp > now + MAX_EXP_AHEAD_SECS {
        return Err(Rejection::ExpTooFar);
    }
    let iat = claims_json
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(Rejection::IatFuture)?;
    if iat > now + IAT_LEEWAY_SECS {
        return Err(Rejection::IatFuture);
    }
    Ok(app_id)
}

/// Whether a bearer credential looks like a JWT (three dot-separated parts, not a `ghs_` token;
/// stateless installation tokens contain two dots too but start with `ghs_`).
pub fn looks_like_jwt(credential: &str) -> bool {
    !credential.starts_with("gh") && credential.split('.').count() == 3
}
