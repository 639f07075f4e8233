//! Upstream mode (`[upstream]`): tokens for the listed hosts come from a central ghapp broker's
//! `/v1/token` rather than from GitHub — this daemon holds no App key for them. [`Upstream`] is
//! that source of tokens: it plans a request (the cache key is the request itself: host,
//! repository, permissions) and fetches its token, and the broker's token cache, single-flight,
//! refresh-ahead and degraded margin serve it exactly as they serve minted tokens.
//!
//! This host's identity goes in `Authorization: Bearer`: an ID token (a projected
//! service-account token, read again for every request, as it rotates) or a client key. The
//! broker answers only what its policy for that identity allows; this daemon's own policy has
//! already been applied to the caller. The broker unreachable or failing (connection refused,
//! timeout, 5xx, 429) is `Unavailable`, so cached tokens keep serving down to
//! `degraded_min_ttl`; its refusals keep their kind (403, 404, 422, …) and its message.

use crate::app::{Health, Settings, Trouble};
use crate::cache::{CachedToken, MintPlan, Narrowing, Origin, Scope};
use crate::clock::{ANCHOR_SLACK, ServerTime};
use crate::config::{DaemonConfig, UpstreamConfig};
use crate::error::{BrokerError, ErrorKind};
use crate::failure::Failure;
use crate::request::{Request, TOKEN_LIFETIME};
use ghapp_protocol::api::{ErrorBody, TOKEN_PATH, TokenQuery, TokenResponse, UpstreamStatus};
use ghapp_protocol::duration::format_duration;
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::fingerprint;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

/// The App name a key-less daemon's tokens carry in its cache, status and audit.
const UPSTREAM_NAME: &str = "upstream";

/// How much less life a token has here than the broker counted when it answered: this daemon
/// anchors the broker's `expires_at` at the broker's `Date` and takes [`ANCHOR_SLACK`] off; both
/// are whole seconds, stamped at different moments (up to a second lost); and a second for the
/// answer's time in flight.
const RELAY_LOSS: Duration = Duration::from_secs(ANCHOR_SLACK.as_secs() + 2);

/// The least life to ask the broker for, so that its token still has what this daemon needs
/// when it arrives here, [`RELAY_LOSS`] later by this daemon's clock:
/// - for a caller, `min_ttl`: asked for `min_ttl` alone, the broker may answer with a token it
///   counts `min_ttl` left on — it does whenever it has not refreshed the key (an idle key, a
///   failing GitHub) — which arrives here with less, and the caller gets a 422 instead of it;
/// - for a refresh, `min_ttl + refresh_ahead`: asked for less, the broker answers with the token
///   it is itself about to refresh (both tiers fall due at about the same time, and this one
///   counts the token's end [`RELAY_LOSS`] earlier), which arrives already due for refresh
///   here, so the refresher asks again a quarter of its life later — two requests per host and
///   broker token instead of one (measured in scripts/bench.sh section s). Asked for this much,
///   a broker whose token is that close to its own refresh mints the new one a few seconds
///   early instead.
///
/// Capped below the hour GitHub's tokens live, which the broker refuses to promise.
pub(crate) fn asked_min_ttl(settings: &Settings, origin: Origin) -> Duration {
    let needed = match origin {
        Origin::Caller => settings.min_ttl,
        Origin::Refresh => settings.min_ttl + settings.refresh_ahead,
    };
    (needed + RELAY_LOSS).min(TOKEN_LIFETIME - Duration::from_secs(1))
}

/// The 422 for a caller whose `min_ttl` the token the upstream broker answered with cannot
/// meet here (`remaining` by this daemon's clock): the broker, not GitHub, chose that token.
pub(crate) fn relayed_too_short(
    plan: &Scope,
    remaining: Duration,
    required: Duration,
) -> BrokerError {
    BrokerError::unprocessable(format!(
        "the upstream broker answered for {} with a token with {} left here, less than the {} required (min_ttl; a relayed token loses up to {} on the way): lower min_ttl",
        plan.target,
        format_duration(remaining),
        format_duration(required),
        format_duration(RELAY_LOSS)
    ))
    .with_app(&*plan.app_name)
    .with_target(plan.target.clone())
}

/// Where this host's credential for the broker is read from, for every request.
#[derive(Debug, Clone)]
enum Identity {
    /// An ID token file (a projected service-account token).
    IdTokenFile(PathBuf),
    /// A client key file.
    ClientKeyFile(PathBuf),
}

impl Identity {
    fn file(&self) -> (&'static str, &PathBuf) {
        match self {
            Identity::IdTokenFile(path) => ("id_token_file", path),
            Identity::ClientKeyFile(path) => ("client_key_file", path),
        }
    }

    /// The bearer credential, read now (never logged; an empty file is refused).
    fn read(&self) -> Result<Zeroizing<String>, String> {
        let (key, path) = self.file();
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read upstream.{key} {}: {e}", path.display()))?,
        );
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
            return Err(format!(
                "upstream.{key} {} does not hold one credential (empty, or several words)",
                path.display()
            ));
        }
        Ok(Zeroizing::new(trimmed.to_string()))
    }
}

/// The central broker this daemon gets its tokens from.
pub(crate) struct Upstream {
    /// Its base URL, without a trailing `/`.
    url: String,
    /// The git hosts it serves for this daemon (lower-cased).
    hosts: Vec<String>,
    identity: Identity,
    client: reqwest::Client,
    /// Its standing: failing → cached tokens serve on their margin.
    pub health: Health,
    /// Hosts asked over plain http (loopback test setups): asked so of the broker, refreshes
    /// included.
    http_hosts: Mutex<HashSet<String>>,
    /// Its identity in cache keys (a fingerprint of the URL), shared by every plan.
    key_identity: Arc<str>,
    name: Arc<str>,
    label: Arc<str>,
}

impl Upstream {
    /// The upstream `config` describes, with an HTTP client on `[daemon]`'s timeouts.
    pub(crate) fn build(
        config: &UpstreamConfig,
        daemon: &DaemonConfig,
    ) -> Result<Upstream, BrokerError> {
        let fail = |message: String| BrokerError::internal(format!("[upstream]: {message}"));
        let url = config.url.trim_end_matches('/').to_string();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(daemon.connect_timeout)
            .timeout(daemon.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca_file) = &config.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| fail(format!("cannot read ca_file {}: {e}", ca_file.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certs| !certs.is_empty())
                .ok_or_else(|| {
                    fail(format!(
                        "ca_file {} holds no usable PEM certificate",
                        ca_file.display()
                    ))
                })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        let identity = match (&config.id_token_file, &config.client_key_file) {
            (Some(path), _) => Identity::IdTokenFile(path.clone()),
            (None, Some(path)) => Identity::ClientKeyFile(path.clone()),
            (None, None) => return Err(fail("no id_token_file or client_key_file".into())),
        };
        tracing::info!(upstream = %url, hosts = ?config.hosts, identity = identity.file().0, "tokens for these hosts come from the upstream broker; no App key here");
        Ok(Upstream {
            key_identity: format!("upstream:{}", fingerprint(&url)).into(),
            name: UPSTREAM_NAME.into(),
            label: format!("upstream {url}").into(),
            url,
            hosts: config.hosts.clone(),
            identity,
            client,
            health: Health::default(),
            http_hosts: Mutex::new(HashSet::new()),
        })
    }

    /// True if tokens for `host` come from this upstream.
    pub(crate) fn serves(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host)
    }

    /// Its identity in cache keys.
    pub(crate) fn key_identity(&self) -> &str {
        &self.key_identity
    }

    /// True if `plan` is one of this upstream's.
    pub(crate) fn planned(&self, plan: &MintPlan) -> bool {
        *plan.key.app_identity == *self.key_identity
    }

    /// True while the broker is failing (cached tokens serve on their margin).
    pub(crate) fn failing(&self) -> bool {
        self.health.trouble() == Some(Trouble::Unreachable)
    }

    /// What `request` is asked of the broker, as a cache key: host, owner, repository,
    /// permissions (the installation is the broker's business: 0 here).
    pub(crate) fn plan(&self, request: &Request) -> MintPlan {
        if request.http {
            self.http_hosts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(request.host.clone());
        }
        let target = request.target();
        let repositories: Vec<String> = request
            .repo
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect();
        let permissions = (!request.permissions.is_empty()).then(|| request.permissions.clone());
        let narrowing = match repositories.first() {
            Some(repo) => Narrowing::Name(repo.as_str().into()),
            None => Narrowing::None,
        };
        let scope = Scope {
            host: request.host.as_str().into(),
            app_identity: self.key_identity.clone(),
            installation_id: 0,
            repositories,
            app_name: self.name.clone(),
            app_label: self.label.clone(),
            // The owner as the broker is asked (the key's; lower-cased, as GitHub's names are
            // case-insensitive), so "owner" in answers is never empty for a repository.
            account: request
                .owner
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .into(),
            target: target.label().into(),
            narrowing,
            installation_permissions: Permissions::new(),
        };
        MintPlan::new(scope, permissions)
    }

    /// The broker's token for `plan`, with at least `min_ttl` left as the broker sees it.
    pub(crate) async fn fetch(
        &self,
        plan: &Arc<MintPlan>,
        min_ttl: Duration,
    ) -> Result<Arc<CachedToken>, Failure> {
        let http = self
            .http_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&*plan.key.host);
        let unavailable = |why: String| {
            self.health.fail(Trouble::Unreachable, why.clone());
            failure(BrokerError::unavailable(why), plan)
        };
        let bearer = self.identity.read().map_err(unavailable)?;
        let query = TokenQuery {
            host: Some(plan.key.host.to_string()),
            owner: (!plan.account.is_empty()).then(|| plan.account.to_string()),
            repo: plan.key.repositories.first().cloned(),
            permissions: plan.key.permissions.clone().unwrap_or_default(),
            min_ttl: Some(min_ttl),
            protocol: http.then(|| "http".to_string()),
        };
        let url = format!("{}{TOKEN_PATH}?{}", self.url, query.to_query_string());
        let answer = self
            .client
            .get(&url)
            .bearer_auth(&*bearer)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "the upstream broker {} is unreachable: {}",
                    self.url,
                    transport_reason(&e)
                ))
            })?;
        let status = answer.status().as_u16();
        let date = answer
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = answer.bytes().await.map_err(|e| {
            unavailable(format!(
                "the upstream broker {} broke off its answer: {}",
                self.url,
                transport_reason(&e)
            ))
        })?;
        if status != 200 {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| "no error message".into());
            let why = format!(
                "the upstream broker {} answered {status}: {message}",
                self.url
            );
            let kind = match status {
                400 => ErrorKind::BadRequest,
                401 | 403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Ambiguous,
                422 => ErrorKind::Unprocessable,
                _ => return Err(unavailable(why)),
            };
            // The broker is up and said no: that is an answer, not an outage.
            self.health.ok();
            return Err(failure(BrokerError::new(kind, why), plan));
        }
        let answer: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            unavailable(format!(
                "the upstream broker {} answered something that is not a token ({e})",
                self.url
            ))
        })?;
        self.health.ok();
        let st = ServerTime::from_date_header(date.as_deref());
        let remaining = st.remaining_until(answer.expires_at);
        let token = CachedToken::arrived(
            answer.token,
            answer.expires_at,
            &st,
            plan,
            answer.permissions,
        );
        tracing::info!(upstream = %self.url, target = %plan.target, token = %token.token.fingerprint(), app = %answer.app, installation = answer.installation_id, expires_in_secs = remaining.as_secs(), "got a token from the upstream broker");
        Ok(Arc::new(token))
    }

    /// For `/v1/status`: where it is and whether it answers.
    pub(crate) fn status(&self) -> UpstreamStatus {
        UpstreamStatus {
            url: self.url.clone(),
            hosts: self.hosts.clone(),
            healthy: self.health.trouble().is_none(),
            problem: self.health.describe(),
        }
    }
}

/// A failure of `plan` with no consequence for the caches (the broker's installations are its
/// own business).
fn failure(error: BrokerError, plan: &MintPlan) -> Failure {
    Failure {
        error: error.with_target(plan.target.clone()),
        consequence: None,
    }
}

/// Why a request did not get through, without the URL's query (which names the repository,
/// harmless, but the error chain repeats it at length).
fn transport_reason(error: &reqwest::Error) -> String {
    let mut reason = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::refresh_due_at;
    use crate::cache::test_support::settings;
    use ghapp_protocol::secret::Token;
    use ghapp_protocol::time::Timestamp;
    use std::time::SystemTime;
    use tokio::time::Instant;

    /// The token as [`Upstream::fetch`] stores it when the broker, holding a token with exactly
    /// `left` by its clock (whole seconds), writes `expires_at` just before a second boundary and
    /// stamps `Date` just after it — the worst case of the two roundings.
    fn arrived(left: Duration) -> CachedToken {
        let broker_clock = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let expires_at = Timestamp::from(broker_clock + left);
        let st = ServerTime {
            received: Instant::now(),
            local_now: broker_clock + Duration::from_secs(1),
            server_now: broker_clock + Duration::from_secs(1),
        };
        let plan = Arc::new(MintPlan::new(
            Scope {
                host: "github.com".into(),
                app_identity: "upstream:test".into(),
                installation_id: 0,
                repositories: vec!["widgets".into()],
                app_name: UPSTREAM_NAME.into(),
                app_label: "upstream test".into(),
                account: "acme".into(),
                target: "acme/widgets".into(),
                narrowing: Narrowing::Name("widgets".into()),
                installation_permissions: Permissions::new(),
            },
            None,
        ));
        CachedToken::arrived(
            Token::new("ghs_relayed"),
            expires_at,
            &st,
            &plan,
            Permissions::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_token_arrives_with_min_ttl_left() {
        let s = settings();
        let asked = asked_min_ttl(&s, Origin::Caller);
        assert_eq!(asked, Duration::from_secs(1800 + 4));
        let now = Instant::now();
        assert!(
            arrived(asked).remaining(now) >= s.min_ttl,
            "a token the broker counts {asked:?} left on still has min_ttl here"
        );
        // What was asked before: min_ttl alone, which a broker token can meet and still arrive
        // with less than min_ttl here (the caller then got a 422).
        assert!(arrived(s.min_ttl).remaining(now) < s.min_ttl);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refreshed_token_arrives_not_yet_due_for_refresh() {
        let s = settings();
        let asked = asked_min_ttl(&s, Origin::Refresh);
        assert_eq!(asked, Duration::from_secs(1800 + 300 + 4));
        let now = Instant::now();
        let token = arrived(asked);
        assert!(
            refresh_due_at(&token, &s) >= now,
            "not due on arrival: the refresher does not come straight back"
        );
        // Asked for min_ttl alone, the broker's token it is about to refresh itself (it has
        // min_ttl + refresh_ahead left by the broker's clock) arrives already due here; the
        // refresher then comes back after a quarter of its life.
        let stale = arrived(s.min_ttl + s.refresh_ahead);
        assert!(stale.expires - now < s.min_ttl + s.refresh_ahead);
        assert_eq!(
            refresh_due_at(&stale, &s),
            now + stale.lifetime() / 4,
            "due at once but for the quarter-life floor"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_relayed_token_too_short_is_blamed_on_the_upstream_broker() {
        let token = arrived(Duration::from_secs(600));
        let remaining = token.remaining(Instant::now());
        let error = relayed_too_short(&token.key, remaining, Duration::from_secs(1800));
        assert_eq!(error.kind, ErrorKind::Unprocessable);
        assert_eq!(error.kind.http_status(), 422);
        assert!(
            error
                .message
                .starts_with("the upstream broker answered for acme/widgets with a token with "),
            "{}",
            error.message
        );
        assert!(error.message.contains(&format!(
            "{} left here, less than the 30m required (min_ttl; a relayed token loses up to 4s on the way): lower min_ttl",
            format_duration(remaining)
        )), "{}", error.message);
        assert!(!error.message.contains("GitHub"), "{}", error.message);
        assert_eq!(error.target(), Some("acme/widgets"));
        assert_eq!(error.app(), Some(UPSTREAM_NAME));
    }

    #[test]
    fn never_asks_for_the_hour_the_broker_cannot_promise() {
        // Beyond what config validation lets through (min_ttl + refresh_ahead under 55m).
        let mut s = settings();
        s.min_ttl = Duration::from_secs(3590);
        s.refresh_ahead = Duration::from_secs(8);
        assert_eq!(
            asked_min_ttl(&s, Origin::Refresh),
            TOKEN_LIFETIME - Duration::from_secs(1)
        );
    }
}
