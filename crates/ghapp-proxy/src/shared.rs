//! The seam to a cache shared by several daemons: [`SharedStore`] holds opaque values under the
//! proxy's cache keys with an expiry. The daemon implements it with the broker's sealed Redis
//! store (`[cache]`: values AES-256-GCM-sealed with the key as associated data, names derived
//! by HMAC), so this crate knows neither Redis nor the sealing. [`encode`] and [`decode`] turn
//! an [`Entry`] into those values and back.

use crate::BoxFuture;
use crate::cache::Entry;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A store shared with other daemons. Both operations are best effort: a store that is down
/// or slow answers `None` (or stores nothing) within its own deadline, never an error the
/// request would have to carry.
pub trait SharedStore: Send + Sync + 'static {
    /// The value under `key` and its life left.
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<(Vec<u8>, Duration)>>;
    /// Stores `value` under `key` for `ttl`.
    fn store<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, ()>;
}

/// An entry as stored: GitHub's answer, validators, and when GitHub last confirmed it (Unix
/// milliseconds, sealed with the rest). The reader takes the older of that time and the one
/// the store's expiry implies: the expiry alone would make a value a Redis writer replays
/// under its name look just confirmed, and the sealed time alone would trust clocks to agree.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// When GitHub last confirmed the answer, Unix milliseconds (absent in values written
    /// before it was stored: the expiry alone then).
    #[serde(default)]
    confirmed_unix_ms: Option<u64>,
    status: u16,
    /// Header names and base64 values (a value may hold any byte but a control).
    headers: Vec<(String, String)>,
    /// The body, base64.
    body: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// The bytes stored for `entry`.
pub fn encode(entry: &Entry) -> Vec<u8> {
    let confirmed = SystemTime::now()
        .checked_sub(entry.validated.elapsed())
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .and_then(|since| u64::try_from(since.as_millis()).ok());
    let stored = Stored {
        confirmed_unix_ms: confirmed,
        status: entry.status.as_u16(),
        headers: entry
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), BASE64.encode(value.as_bytes())))
            .collect(),
        body: BASE64.encode(&entry.body),
        etag: entry.etag.clone(),
        last_modified: entry.last_modified.clone(),
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The entry `bytes` hold, confirmed by GitHub at `validated` (what the store's expiry
/// implies) or at the time sealed inside, whichever is older; `None` for anything malformed.
pub fn decode(bytes: &[u8], validated: Instant) -> Option<Entry> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let sealed = stored.confirmed_unix_ms.map(|ms| {
        let age = SystemTime::now()
            .duration_since(UNIX_EPOCH + Duration::from_millis(ms))
            .unwrap_or(Duration::ZERO);
        // Older than this process's clock can express: as old as it can.
        Instant::now()
            .checked_sub(age)
            .unwrap_or_else(oldest_instant)
    });
    let validated = sealed.map_or(validated, |sealed| sealed.min(validated));
    let mut headers = HeaderMap::with_capacity(stored.headers.len());
    for (name, value) in stored.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(&BASE64.decode(value).ok()?).ok()?;
        headers.append(name, value);
    }
    Some(Entry {
        status: StatusCode::from_u16(stored.status).ok()?,
        headers,
        body: Bytes::from(BASE64.decode(stored.body).ok()?),
        etag: stored.etag,
        last_modified: stored.last_modified,
        validated,
    })
}

/// The oldest `Instant` representable, found by halving back from now.
fn oldest_instant() -> Instant {
    let now = Instant::now();
    let mut back = Duration::from_secs(1 << 40);
    while !back.is_zero() {
        if let Some(earlier) = now.checked_sub(back) {
            return earlier;
        }
        back /= 2;
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let mut headers = HeaderMap::new();
        headers.insert("etag", HeaderValue::from_static("\"abc\""));
        headers.append("link", HeaderValue::from_static("<a>; rel=\"next\""));
        headers.append("link", HeaderValue::from_bytes(b"<b>; x=\xe9").unwrap());
        let entry = Entry {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"{\"full_name\":\"acme/widgets\"}\x00\xff"),
            etag: Some("\"abc\"".into()),
            last_modified: None,
            validated: Instant::now(),
        };
        let at = Instant::now();
        let back = decode(&encode(&entry), at).expect("decodes");
        // Confirmed now and sealed with it: the store's (later) time is not taken.
        assert_eq!(back.status, entry.status);
        assert_eq!(back.headers, entry.headers);
        assert_eq!(back.body, entry.body);
        assert_eq!(back.etag, entry.etag);
        assert!(back.validated <= at);
        assert!(back.validated >= entry.validated - Duration::from_secs(1));
        assert!(decode(b"{}", at).is_none());
        assert!(decode(b"not json", at).is_none());
    }
}
