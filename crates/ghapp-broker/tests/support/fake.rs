//! A scripted GitHub behind the broker's HTTP seam, for tests on tokio's paused clock.
//!
//! Its clock is tokio's (virtual) clock: `Date` headers and `expires_at` follow
//! `tokio::time::Instant`, so advancing time ages tokens exactly as GitHub would. It records
//! every request and every minted token's expiry, and can fail, stall or rate-limit on demand.

use ghapp_broker::transport::{
    HttpRequest, HttpResponse, HttpTransport, Method, SendFuture, TransportError,
    TransportErrorKind,
};
use ghapp_protocol::time::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// A scripted answer for matching requests.
#[derive(Clone, Debug)]
pub enum Script {
    /// Answer this status, with these headers and GitHub message.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        message: String,
    },
    /// Never answer (the broker's timeout must fire).
    Hang,
    /// Close without answering.
    Drop,
}

/// One installation.
#[derive(Clone, Debug)]
pub struct Installation {
    pub id: u64,
    pub account: String,
    pub org: bool,
    pub repos: Vec<String>,
    pub permissions: Value,
}

/// Status, headers and JSON body of an answer.
type Answer = (u16, Vec<(String, String)>, Value);

struct Rule {
    route_prefix: String,
    script: Script,
    times: Option<u64>,
}

struct State {
    token_ttl: Duration,
    clock_offset_secs: i64,
    latency: Duration,
    installations: Vec<Installation>,
    rules: VecDeque<Rule>,
    requests: BTreeMap<String, u64>,
    minted: HashMap<String, Instant>,
    mints: u64,
    headers_seen: Vec<Vec<(String, String)>>,
    /// Every request's route and arrival, in order.
    log: Vec<(String, Instant)>,
}

struct Inner {
    started_at: Instant,
    started_wall: SystemTime,
    state: Mutex<State>,
}

/// The fake. Clone handles share state.
#[derive(Clone)]
pub struct FakeGitHub(Arc<Inner>);

impl FakeGitHub {
    /// A GitHub with installation 100 on org `acme` (repos widgets, gadgets) and 200 on user
    /// `octo` (tools), minting tokens that live `token_ttl`.
    pub fn new(token_ttl: Duration) -> FakeGitHub {
        let perms = json!({"contents": "write", "metadata": "read"});
        FakeGitHub(Arc::new(Inner {
            started_at: Instant::now(),
            started_wall: SystemTime::now(),
            state: Mutex::new(State {
                token_ttl,
                clock_offset_secs: 0,
                latency: Duration::ZERO,
                installations: vec![
                    Installation {
                        id: 100,
                        account: "acme".into(),
                        org: true,
                        repos: vec!["widgets".into(), "gadgets".into()],
                        permissions: perms.clone(),
                    },
                    Installation {
                        id: 200,
                        account: "octo".into(),
                        org: false,
                        repos: vec!["tools".into()],
                        permissions: perms,
                    },
                ],
                rules: VecDeque::new(),
                requests: BTreeMap::new(),
                minted: HashMap::new(),
                mints: 0,
                headers_seen: Vec::new(),
                log: Vec::new(),
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap()
    }

    /// GitHub's wall clock: the virtual clock plus the offset.
    pub fn now_wall(&self) -> SystemTime {
        let elapsed = Instant::now() - self.0.started_at;
        let base = self.0.started_wall + elapsed;
        let offset = self.lock().clock_offset_secs;
        if offset >= 0 {
            base + Duration::from_secs(offset as u64)
        } else {
            base - Duration::from_secs((-offset) as u64)
        }
    }

    /// Shifts GitHub's clock (`Date`, `expires_at`) by `secs`.
    pub fn set_clock_offset(&self, secs: i64) {
        self.lock().clock_offset_secs = secs;
    }

    /// Delay before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Requests whose route (`"POST /app/installations/100/access_tokens"`) starts with
    /// `route_prefix` get `script`, `times` times (None: until cleared).
    pub fn script(&self, route_prefix: &str, script: Script, times: Option<u64>) {
        self.lock().rules.push_back(Rule {
            route_prefix: route_prefix.into(),
            script,
            times,
        });
    }

    /// Every request answers `status` from now on.
    pub fn fail_all(&self, status: u16) {
        self.script(
            "",
            Script::Status {
                status,
                headers: vec![],
                message: "Service Unavailable".into(),
            },
            None,
        );
    }

    /// Removes every script.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Tokens minted so far.
    pub fn mints(&self) -> u64 {
        self.lock().mints
    }

    /// Requests seen for a route (`"GET /repos/acme/widgets/installation"`).
    pub fn requests(&self, route: &str) -> u64 {
        self.lock().requests.get(route).copied().unwrap_or(0)
    }

    /// All requests seen.
    pub fn total_requests(&self) -> u64 {
        self.lock().requests.values().sum()
    }

    /// Life left of a token this fake minted, by the virtual clock.
    pub fn remaining(&self, token: &str) -> Duration {
        let expires = *self
            .lock()
            .minted
            .get(token)
            .expect("a token this fake minted");
        expires.saturating_duration_since(Instant::now())
    }

    /// When requests whose route starts with `route_prefix` arrived, in order.
    pub fn arrivals(&self, route_prefix: &str) -> Vec<Instant> {
        self.lock()
            .log
            .iter()
            .filter(|(route, _)| route.starts_with(route_prefix))
            .map(|(_, at)| *at)
            .collect()
    }

    /// Headers of every request, in order.
    pub fn headers_seen(&self) -> Vec<Vec<(String, String)>> {
        self.lock().headers_seen.clone()
    }

    fn answer(&self, request: &HttpRequest) -> Result<Answer, Script> {
        let path = request.url.split_once("://").map_or("", |(_, r)| r);
        let path = &path[path.find('/').unwrap_or(path.len())..];
        let path = path.split('?').next().unwrap_or(path);
        let route = format!("{} {}", request.method.as_str(), path);
        let mut state = self.lock();
        *state.requests.entry(route.clone()).or_default() += 1;
        state.headers_seen.push(request.headers.clone());
        state.log.push((route.clone(), Instant::now()));
        let mut scripted = None;
        for rule in state.rules.iter_mut() {
            if route.starts_with(&rule.route_prefix) && rule.times != Some(0) {
                if let Some(t) = rule.times.as_mut() {
                    *t -= 1;
                }
                scripted = Some(rule.script.clone());
                break;
            }
        }
        state.rules.retain(|r| r.times != Some(0));
        if let Some(script) = scripted {
            return Err(script);
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let not_found = || {
            (
                404,
                vec![],
                json!({"message": "Not Found", "status": "404"}),
            )
        };
        let installation_json = |i: &Installation| {
            json!({"id": i.id, "account": {"login": i.account}, "app_id": 1, "permissions": i.permissions, "suspended_at": null,
                   "repository_selection": "selected", "target_type": if i.org {"Organization"} else {"User"}})
        };
        let found = match (request.method, segments.as_slice()) {
            (Method::Get, ["repos", owner, repo, "installation"]) => state
                .installations
                .iter()
                .find(|i| i.account == *owner && i.repos.iter().any(|r| r == repo))
                .map(|i| (200, vec![], installation_json(i))),
            // Where GitHub redirects the look-up of a renamed repository: repository ids are
            // 1000 + the installation's id.
            (Method::Get, ["repositories", id, "installation"]) => state
                .installations
                .iter()
                .find(|i| id.parse::<u64>().ok() == Some(1000 + i.id))
                .map(|i| (200, vec![], installation_json(i))),
            (Method::Get, ["orgs", org, "installation"]) => state
                .installations
                .iter()
                .find(|i| i.org && i.account == *org)
                .map(|i| (200, vec![], installation_json(i))),
            (Method::Get, ["users", user, "installation"]) => state
                .installations
                .iter()
                .find(|i| !i.org && i.account == *user)
                .map(|i| (200, vec![], installation_json(i))),
            (Method::Get, ["app", "installations"]) => Some((
                200,
                vec![],
                Value::Array(state.installations.iter().map(installation_json).collect()),
            )),
            (Method::Post, ["app", "installations", id, "access_tokens"]) => {
                let id: u64 = id.parse().unwrap_or(0);
                let installation = state.installations.iter().find(|i| i.id == id).cloned();
                installation.map(|i| {
                    let body: Value = request.body.as_ref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(json!({}));
                    state.mints += 1;
                    let token = format!("ghs_fake{:032}", state.mints);
                    let ttl = state.token_ttl;
                    state.minted.insert(token.clone(), Instant::now() + ttl);
                    let mut answer = json!({
                        "token": token,
                        "expires_at": rfc3339(self.wall_now_locked(&state) + ttl),
                        "permissions": body.get("permissions").cloned().unwrap_or(i.permissions.clone()),
                        "repository_selection": "selected",
                    });
                    if let Some(repos) = body.get("repositories").and_then(Value::as_array) {
                        answer["repositories"] = Value::Array(repos.iter().map(|r| json!({"name": r})).collect());
                    }
                    (201, vec![], answer)
                })
            }
            (Method::Post, ["orgs", _org, "actions", "runners", kind]) => Some((
                201,
                vec![],
                json!({"token": format!("RUNNER{}", kind.len()), "expires_at": "2030-01-22T12:13:35.123-08:00"}),
            )),
            _ => None,
        };
        Ok(found.unwrap_or_else(not_found))
    }

    fn wall_now_locked(&self, state: &State) -> SystemTime {
        let base = self.0.started_wall + (Instant::now() - self.0.started_at);
        let offset = state.clock_offset_secs;
        if offset >= 0 {
            base + Duration::from_secs(offset as u64)
        } else {
            base - Duration::from_secs((-offset) as u64)
        }
    }
}

fn rfc3339(at: SystemTime) -> String {
    Timestamp::from(at).to_string()
}

impl HttpTransport for FakeGitHub {
    fn send(&self, request: HttpRequest) -> SendFuture {
        let fake = self.clone();
        Box::pin(async move {
            let latency = fake.lock().latency;
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let date = httpdate::fmt_http_date(fake.now_wall());
            match fake.answer(&request) {
                Ok((status, mut headers, body)) => {
                    headers.push(("date".into(), date));
                    headers.push(("x-ratelimit-remaining".into(), "4999".into()));
                    Ok(HttpResponse {
                        status,
                        headers,
                        body: serde_json::to_vec(&body).unwrap().into(),
                    })
                }
                Err(Script::Status {
                    status,
                    mut headers,
                    message,
                }) => {
                    headers.push(("date".into(), date));
                    Ok(HttpResponse {
                        status,
                        headers,
                        body: serde_json::to_vec(
                            &json!({"message": message, "status": status.to_string()}),
                        )
                        .unwrap()
                        .into(),
                    })
                }
                Err(Script::Hang) => {
                    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                    Err(TransportError {
                        kind: TransportErrorKind::Timeout,
                        message: "hung".into(),
                    })
                }
                Err(Script::Drop) => Err(TransportError {
                    kind: TransportErrorKind::Other,
                    message: "connection closed before message completed".into(),
                }),
            }
        })
    }
}
