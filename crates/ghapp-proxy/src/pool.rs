//! The credential pool: installation tokens from ghapp's broker (through [`TokenSource`]) and
//! personal tokens from `[[proxy.credential]]`. It remembers each credential's last
//! `x-ratelimit-*` answer, picks the one with the most remaining, and rests one GitHub answered
//! with a primary or secondary rate limit until its reset (or `retry-after`).

use crate::TokenSource;
use ghapp_protocol::secret::Token;
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a credential rests after a rate-limit answer that names no reset time (GitHub:
/// "wait at least one minute").
pub const DEFAULT_REST: Duration = Duration::from_secs(60);

/// How long an installation the broker could not serve is skipped before it is asked again.
pub const UNAVAILABLE_FOR: Duration = Duration::from_secs(30);

/// One credential of the pool; also the cache's credential class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialId {
    /// The installation on this account (lower case).
    Installation(String),
    /// The `[[proxy.credential]]` at this index.
    Personal(usize),
}

/// A personal token and its name.
struct Personal {
    name: String,
    token: Token,
}

/// What the pool knows of one credential's budget for one rate-limit resource (`core`,
/// `graphql`, `search`: GitHub counts each separately).
#[derive(Debug, Clone, Default)]
struct Health {
    remaining: Option<u64>,
    reset: Option<u64>,
    resting_until: Option<Instant>,
}

/// The rate-limit resource a request draws on: `graphql` for GraphQL, `search` for
/// `/search/…`, else `core`.
pub fn resource_of(graphql: bool, path: &str) -> &'static str {
    if graphql {
        "graphql"
    } else if path.starts_with("/search/") {
        "search"
    } else {
        "core"
    }
}

/// What a credential's last answer said, for telemetry.
#[derive(Debug, Clone)]
pub struct CredentialReport {
    /// The credential's label (`installation:acme`, `personal:ci-bot`).
    pub label: String,
    /// The rate-limit resource (`core`, `graphql`, `search`).
    pub resource: &'static str,
    /// `x-ratelimit-remaining`, when seen.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset` (Unix seconds), when seen.
    pub reset: Option<u64>,
}

/// Why no credential can serve a request.
#[derive(Debug, Clone)]
pub enum NoCredential {
    /// Every candidate is rate limited; the first is back at this time.
    Resting {
        /// Seconds until the first candidate may be used again.
        retry_after: u64,
    },
    /// None of the candidates exists (no installation on the account, no personal token).
    Unavailable {
        /// What the broker said last, if anything.
        reason: String,
    },
}

/// The pool.
pub struct Pool {
    source: Arc<dyn TokenSource>,
    personals: Vec<Personal>,
    health: Mutex<HashMap<(CredentialId, &'static str), Health>>,
    unavailable: Mutex<HashMap<CredentialId, Instant>>,
}

impl Pool {
    /// A pool over the broker and these personal tokens (name, token).
    pub fn new(source: Arc<dyn TokenSource>, personals: Vec<(String, Token)>) -> Pool {
        Pool {
            source,
            personals: personals
                .into_iter()
                .map(|(name, token)| Personal { name, token })
                .collect(),
            health: Mutex::new(HashMap::new()),
            unavailable: Mutex::new(HashMap::new()),
        }
    }

    /// A credential's label for metrics, logs and cache keys; never a secret.
    pub fn label(&self, id: &CredentialId) -> String {
        match id {
            CredentialId::Installation(owner) => format!("installation:{owner}"),
            CredentialId::Personal(index) => format!(
                "personal:{}",
                self.personals.get(*index).map_or("?", |p| p.name.as_str())
            ),
        }
    }

    /// A credential's class in cache keys: the installation's account, or a personal token's
    /// fingerprint (names are local: two daemons may give one name to different tokens).
    pub fn cache_class(&self, id: &CredentialId) -> String {
        match id {
            CredentialId::Installation(owner) => format!("installation:{owner}"),
            CredentialId::Personal(index) => format!(
                "personal:{}",
                self.personals
                    .get(*index)
                    .map_or_else(|| "?".to_string(), |p| p.token.fingerprint())
            ),
        }
    }

    /// The credentials that may serve a path naming `owner` (or none): that account's
    /// installation and the personal tokens; an owner-less path gets the default installation
    /// instead, and so does an owner whose installation the broker cannot serve.
    pub fn candidates(&self, owner: Option<&str>, default: Option<&str>) -> Vec<CredentialId> {
        let now = Instant::now();
        let mut out = Vec::new();
        let first = owner.or(default);
        if let Some(account) = first {
            out.push(CredentialId::Installation(account.to_ascii_lowercase()));
        }
        let owner_unavailable = owner.is_some_and(|o| {
            self.unavailable_lock()
                .get(&CredentialId::Installation(o.to_ascii_lowercase()))
                .is_some_and(|until| *until > now)
        });
        if owner_unavailable && let Some(default) = default {
            let id = CredentialId::Installation(default.to_ascii_lowercase());
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out.extend((0..self.personals.len()).map(CredentialId::Personal));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(CredentialId, &'static str), Health>> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unavailable_lock(&self) -> std::sync::MutexGuard<'_, HashMap<CredentialId, Instant>> {
        self.unavailable.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_unavailable(&self, id: &CredentialId, now: Instant) -> bool {
        self.unavailable_lock()
            .get(id)
            .is_some_and(|until| *until > now)
    }

    /// Whether `id` may be used now for `resource` (not resting, not known unavailable).
    pub fn usable(&self, id: &CredentialId, resource: &'static str) -> bool {
        let now = Instant::now();
        !self.is_unavailable(id, now)
            && self
                .lock()
                .get(&(id.clone(), resource))
                .is_none_or(|h| h.resting_until.is_none_or(|t| t <= now))
    }

    /// The usable candidate with the most `x-ratelimit-remaining` (one not yet used counts as
    /// having the most; ties go to the earlier candidate), skipping `tried`.
    pub fn pick(
        &self,
        candidates: &[CredentialId],
        tried: &[CredentialId],
        resource: &'static str,
    ) -> Result<CredentialId, NoCredential> {
        let now = Instant::now();
        let unavailable: Vec<CredentialId> = candidates
            .iter()
            .filter(|id| self.is_unavailable(id, now))
            .cloned()
            .collect();
        let health = self.lock();
        let mut best: Option<(&CredentialId, u64)> = None;
        let mut first_back: Option<Instant> = None;
        let mut any_resting = false;
        for id in candidates.iter().filter(|id| !tried.contains(id)) {
            if unavailable.contains(id) {
                continue;
            }
            let h = health.get(&(id.clone(), resource));
            if let Some(until) = h.and_then(|h| h.resting_until).filter(|t| *t > now) {
                any_resting = true;
                first_back = Some(first_back.map_or(until, |b| b.min(until)));
                continue;
            }
            let score = h.and_then(|h| h.remaining).unwrap_or(u64::MAX);
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((id, score));
            }
        }
        if let Some((id, _)) = best {
            return Ok(id.clone());
        }
        if any_resting {
            let wait = first_back.map_or(DEFAULT_REST, |t| t.saturating_duration_since(now));
            return Err(NoCredential::Resting {
                retry_after: wait.as_secs().max(1),
            });
        }
        Err(NoCredential::Unavailable {
            reason: "no installation or personal token of the proxy can serve this path".into(),
        })
    }

    /// The secret of `id`: a personal token, or an installation token from the broker (an
    /// error marks the installation unavailable for a while).
    pub async fn secret(&self, id: &CredentialId, host: &str) -> Result<Token, String> {
        match id {
            CredentialId::Personal(index) => self
                .personals
                .get(*index)
                .map(|p| p.token.clone())
                .ok_or_else(|| format!("no personal credential {index}")),
            CredentialId::Installation(owner) => {
                match self.source.installation_token(host, owner).await {
                    Ok(token) => Ok(token),
                    Err(reason) => {
                        self.unavailable_lock()
                            .insert(id.clone(), Instant::now() + UNAVAILABLE_FOR);
                        Err(reason)
                    }
                }
            }
        }
    }

    /// Records an answer's `x-ratelimit-remaining` / `-reset` for `id` and `resource`.
    pub fn observe(&self, id: &CredentialId, resource: &'static str, headers: &HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let remaining = number("x-ratelimit-remaining");
        let reset = number("x-ratelimit-reset");
        if remaining.is_none() && reset.is_none() {
            return;
        }
        let mut health = self.lock();
        let h = health.entry((id.clone(), resource)).or_default();
        if remaining.is_some() {
            h.remaining = remaining;
        }
        if reset.is_some() {
            h.reset = reset;
        }
    }

    /// Rests `id` after a rate-limit answer: until `retry-after`, else `x-ratelimit-reset`,
    /// else [`DEFAULT_REST`]. Returns how long.
    pub fn rest(&self, id: &CredentialId, resource: &'static str, headers: &HeaderMap) -> Duration {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let wait = match (number("retry-after"), number("x-ratelimit-reset")) {
            (Some(secs), _) => Duration::from_secs(secs.max(1)),
            (None, Some(reset)) if reset > now_unix => Duration::from_secs(reset - now_unix),
            _ => DEFAULT_REST,
        };
        let mut health = self.lock();
        let h = health.entry((id.clone(), resource)).or_default();
        h.resting_until = Some(Instant::now() + wait);
        h.remaining = Some(0);
        wait
    }

    /// What is known of every credential used so far.
    pub fn report(&self) -> Vec<CredentialReport> {
        let health = self.lock().clone();
        health
            .into_iter()
            .map(|((id, resource), h)| CredentialReport {
                label: self.label(&id),
                resource,
                remaining: h.remaining,
                reset: h.reset,
            })
            .collect()
    }
}

/// Whether an answer is GitHub's primary or secondary rate limit: 403/429 with no requests
/// remaining, a `retry-after`, or a rate-limit message.
pub fn is_rate_limited(status: u16, headers: &HeaderMap, body: &[u8]) -> bool {
    if status != 403 && status != 429 {
        return false;
    }
    if status == 429 || headers.contains_key("retry-after") {
        return true;
    }
    if headers
        .get("x-ratelimit-remaining")
        .is_some_and(|v| v.as_bytes() == b"0")
    {
        return true;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    text.contains("rate limit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    struct NoBroker;

    impl TokenSource for NoBroker {
        fn installation_token<'a>(
            &'a self,
            _host: &'a str,
            owner: &'a str,
        ) -> crate::BoxFuture<'a, Result<Token, String>> {
            Box::pin(async move { Err(format!("no installation on {owner}")) })
        }
    }

    fn pool() -> Pool {
        Pool::new(
            Arc::new(NoBroker),
            vec![
                ("a".into(), Token::new("pat-a")),
                ("b".into(), Token::new("pat-b")),
            ],
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn picks_the_most_remaining_and_rests_rate_limited_ones() {
        let pool = pool();
        let candidates = pool.candidates(Some("Acme"), Some("acme"));
        assert_eq!(
            candidates,
            vec![
                CredentialId::Installation("acme".into()),
                CredentialId::Personal(0),
                CredentialId::Personal(1)
            ]
        );
        // Nothing known: the first.
        let first = pool.pick(&candidates, &[], "core").expect("pick");
        assert_eq!(first, CredentialId::Installation("acme".into()));
        pool.observe(&first, "core", &headers(&[("x-ratelimit-remaining", "10")]));
        pool.observe(
            &CredentialId::Personal(0),
            "core",
            &headers(&[("x-ratelimit-remaining", "500")]),
        );
        pool.observe(
            &CredentialId::Personal(1),
            "core",
            &headers(&[("x-ratelimit-remaining", "20")]),
        );
        assert_eq!(
            pool.pick(&candidates, &[], "core").expect("pick"),
            CredentialId::Personal(0)
        );
        // Each resource has its own budget.
        assert_eq!(pool.pick(&candidates, &[], "graphql").expect("pick"), first);
        // A secondary limit rests the credential for that resource only.
        let waited = pool.rest(
            &CredentialId::Personal(0),
            "core",
            &headers(&[("retry-after", "30")]),
        );
        assert_eq!(waited, Duration::from_secs(30));
        assert!(!pool.usable(&CredentialId::Personal(0), "core"));
        assert!(pool.usable(&CredentialId::Personal(0), "graphql"));
        assert_eq!(
            pool.pick(&candidates, &[], "core").expect("pick"),
            CredentialId::Personal(1)
        );
        pool.rest(&CredentialId::Personal(1), "core", &headers(&[]));
        pool.rest(&first, "core", &headers(&[]));
        match pool.pick(&candidates, &[], "core") {
            Err(NoCredential::Resting { retry_after }) => assert!((1..=30).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_installation_the_broker_cannot_serve_falls_back_to_the_default() {
        let pool = pool();
        let id = CredentialId::Installation("other".into());
        assert!(pool.secret(&id, "github.com").await.is_err());
        assert!(!pool.usable(&id, "core"));
        let candidates = pool.candidates(Some("other"), Some("acme"));
        assert!(candidates.contains(&CredentialId::Installation("acme".into())));
        assert_eq!(
            pool.secret(&CredentialId::Personal(1), "github.com")
                .await
                .expect("pat")
                .expose(),
            "pat-b"
        );
    }

    #[test]
    fn rate_limit_answers_are_recognised() {
        assert!(is_rate_limited(
            403,
            &headers(&[("x-ratelimit-remaining", "0")]),
            b""
        ));
        assert!(is_rate_limited(
            403,
            &headers(&[("retry-after", "60")]),
            b""
        ));
        assert!(is_rate_limited(429, &headers(&[]), b""));
        assert!(is_rate_limited(
            403,
            &headers(&[]),
            b"{\"message\":\"You have exceeded a secondary rate limit\"}"
        ));
        assert!(!is_rate_limited(
            403,
            &headers(&[("x-ratelimit-remaining", "4000")]),
            b"Resource not accessible by integration"
        ));
        assert!(!is_rate_limited(
            200,
            &headers(&[("x-ratelimit-remaining", "0")]),
            b""
        ));
    }
}
