//! The runner service's routes (docs/runners.md, docs/socket-api.md): provision, list, read
//! and deprovision the caller's runners, an admin sync and cleanup, and `/health`. Every runner
//! belongs to the identity that provisioned it ([`Caller::identity_key`]); a caller sees and
//! deletes only its own. What a caller may provision for — organizations or repositories, hosts,
//! runner groups, labels — is its policy entry's, as for tokens, and the entry's permission
//! ceiling must allow the runner permission.
//!
//! The routing module reads the body (within its limits) and hands it here with the caller.

use crate::access::{Grant, PeerPolicy};
use crate::audit::{AuditEvent, Outcome};
use crate::identity::Caller;
use crate::reply::Reply;
use crate::runner_service::{RunnerService, ServiceApi, runner_host, sync_now};
use crate::service::TokenService;
use crate::settings::Settings;
use crate::state::State;
use ghapp_protocol::api;
use ghapp_protocol::runners::{
    self as wire, CleanupRequest, ProvisionMode, ProvisionRequest, ProvisionResponse, RunnerList,
    RunnerRecord, ServiceHealth,
};
use ghapp_protocol::secret::Token;
use ghapp_runners::lifecycle::{self, Credential, DEFAULT_WORK_FOLDER, RunnerError};
use ghapp_runners::{Actor, Limits, NewRunner, Target};
use hyper::Method;
use std::time::Duration;

/// Names the routes use themselves; no runner may be called so.
const RESERVED_NAMES: [&str; 3] = ["provision", "sync", "cleanup"];

/// A runner-service route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerRoute {
    /// `POST /api/v1/runners/provision`.
    Provision,
    /// `GET /api/v1/runners`.
    List,
    /// `GET`/`DELETE /api/v1/runners/{name}` (the name still unvalidated).
    Runner(String),
    /// `POST /api/v1/runners/sync`.
    Sync,
    /// `POST /api/v1/runners/cleanup`.
    Cleanup,
    /// `GET /health`.
    Health,
}

impl RunnerRoute {
    /// The route of `path`, if it is one of the runner service's (exact match).
    pub fn parse(path: &str) -> Option<RunnerRoute> {
        Some(match path {
            wire::PROVISION_PATH => RunnerRoute::Provision,
            wire::RUNNERS_PATH => RunnerRoute::List,
            wire::SYNC_PATH => RunnerRoute::Sync,
            wire::CLEANUP_PATH => RunnerRoute::Cleanup,
            wire::SERVICE_HEALTH_PATH => RunnerRoute::Health,
            _ => {
                let name = path.strip_prefix(wire::RUNNER_PREFIX)?;
                if name.is_empty() || name.contains('/') {
                    return None;
                }
                RunnerRoute::Runner(name.to_string())
            }
        })
    }

    /// The label in metrics and the audit log (never the raw path).
    pub fn label(&self) -> &'static str {
        match self {
            RunnerRoute::Provision => wire::PROVISION_PATH,
            RunnerRoute::List => wire::RUNNERS_PATH,
            RunnerRoute::Runner(_) => "/api/v1/runners/{name}",
            RunnerRoute::Sync => wire::SYNC_PATH,
            RunnerRoute::Cleanup => wire::CLEANUP_PATH,
            RunnerRoute::Health => wire::SERVICE_HEALTH_PATH,
        }
    }

    /// The `Allow` header value.
    pub fn allow(&self) -> &'static str {
        match self {
            RunnerRoute::Provision | RunnerRoute::Sync | RunnerRoute::Cleanup => "POST",
            RunnerRoute::Runner(_) => "GET, DELETE",
            RunnerRoute::List | RunnerRoute::Health => "GET",
        }
    }

    /// Whether the route takes `method`.
    pub fn takes(&self, method: &Method) -> bool {
        match self {
            RunnerRoute::Provision | RunnerRoute::Sync | RunnerRoute::Cleanup => {
                method == Method::POST
            }
            RunnerRoute::Runner(_) => method == Method::GET || method == Method::DELETE,
            RunnerRoute::List | RunnerRoute::Health => method == Method::GET,
        }
    }

    /// Probes are not worth an audit line.
    pub fn audited(&self) -> bool {
        !matches!(self, RunnerRoute::Health)
    }
}

/// Answers one runner-service request of `caller`, whose body was read already.
#[allow(clippy::too_many_arguments)]
pub async fn handle<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    route: RunnerRoute,
    method: &Method,
    query: Option<&str>,
    body: &[u8],
    audit: &mut AuditEvent,
) -> Reply {
    let Some(runners) = state.runners.as_deref() else {
        if route == RunnerRoute::Health {
            return health(None);
        }
        return Reply::error(
            404,
            "the runner service is not configured: add a [runners] table to the daemon's config (docs/runners.md)",
        );
    };
    if route == RunnerRoute::Health {
        return health(Some(runners));
    }
    // The one policy model: on the socket a credential the caller presents narrows its uid's grant.
    let grant = settings.access.judge(caller);
    if let Some(refusal) = grant.refusal_for(caller) {
        audit.outcome = Outcome::DeniedPolicy;
        return Reply::error(refusal.status(), refusal.message());
    }
    let actor = Actor {
        identity: caller.identity_key(),
        address: caller.origin.address().map(|a| a.to_string()),
    };
    match route {
        RunnerRoute::Provision => {
            let request: ProvisionRequest = match parse_body(body) {
                Ok(request) => request,
                Err(reply) => return reply,
            };
            provision(state, settings, runners, &grant, &actor, request, audit).await
        }
        RunnerRoute::List => list(runners, &grant, &actor, query),
        RunnerRoute::Runner(name) => {
            let name = match wire::check_runner_name(&name) {
                Ok(name) => name,
                Err(e) => return Reply::error(400, e),
            };
            let record = match runners.store.get(&name) {
                Ok(Some(record)) if record.owner_identity == actor.identity => record,
                Ok(_) => {
                    return Reply::error(
                        404,
                        format!(
                            "you have no runner named {name} (runners are visible only to the identity that provisioned them)"
                        ),
                    );
                }
                Err(e) => return Reply::error(e.http_status(), e.to_string()),
            };
            audit.owner = Some(record.org.clone());
            audit.repo = record.repo.clone();
            if method == Method::DELETE {
                deprovision(state, runners, &actor, record, audit).await
            } else {
                Reply::json(200, &record)
            }
        }
        RunnerRoute::Sync | RunnerRoute::Cleanup => {
            if !grant.is_unrestricted() {
                audit.outcome = Outcome::DeniedPolicy;
                return Reply::error(
                    403,
                    "sync and cleanup act on every caller's runners: they are for callers no policy restricts",
                );
            }
            let limits = if route == RunnerRoute::Sync {
                runners.limits()
            } else {
                let request: CleanupRequest = match parse_body(body) {
                    Ok(request) => request,
                    Err(reply) => return reply,
                };
                Limits {
                    offline_after: Duration::from_secs(request.offline_for_secs),
                    pending_after: runners.cleanup_after,
                }
            };
            let report = sync_now(&state.service, runners, limits).await;
            if let Err(e) = runners.store.note(
                &actor,
                ghapp_protocol::time::Timestamp::now(),
                if route == RunnerRoute::Sync {
                    "sync"
                } else {
                    "cleanup"
                },
                None,
                &serde_json::json!({
                    "offline_after_secs": limits.offline_after.as_secs(),
                    "transitions": report.transitions.len(),
                    "failures": report.failures,
                }),
            ) {
                return Reply::error(500, e.to_string());
            }
            Reply::json(200, &report)
        }
        RunnerRoute::Health => health(Some(runners)),
    }
}

/// `GET /health`: the runner database answers (also served to network callers without a
/// credential).
pub fn health(runners: Option<&RunnerService>) -> Reply {
    match runners.map(|r| r.store.ping()) {
        Some(Err(e)) => Reply::error(503, e.to_string()),
        answered => Reply::json(
            200,
            &ServiceHealth {
                status: "ok".to_string(),
                runners: answered.is_some(),
            },
        ),
    }
}

/// `/health` for a caller not authenticated (the network's probes): the database's path and
/// SQLite's words stay out of the answer — a `503` says only that it does not answer.
pub fn public_health(runners: Option<&RunnerService>) -> Reply {
    match runners.map(|r| r.store.ping()) {
        Some(Err(e)) => {
            tracing::debug!("runner health check failed: {e}");
            Reply::error(
                503,
                "the runner database does not answer (the daemon's socket and log say why)",
            )
        }
        _ => health(runners),
    }
}

/// A JSON body of the expected shape; serde's messages quote the input, so only the kind of
/// error and where it is are said.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                "not valid JSON"
            }
            serde_json::error::Category::Eof => "incomplete JSON",
            serde_json::error::Category::Data => {
                "JSON of another shape (an unknown or mistyped field)"
            }
        };
        Reply::error(
            400,
            format!(
                "invalid body: {kind} (line {}, column {}); see docs/runners.md",
                e.line(),
                e.column()
            ),
        )
    })
}

fn list(runners: &RunnerService, grant: &Grant<'_>, actor: &Actor, query: Option<&str>) -> Reply {
    let pairs: Vec<(String, String)> = form_pairs(query.unwrap_or(""));
    let flag = |name: &str| pairs.iter().any(|(k, v)| k == name && v == "true");
    let everyone = flag("all");
    if everyone && !grant.is_unrestricted() {
        return Reply::error(
            403,
            "all=true lists every caller's runners: it is for callers no policy restricts",
        );
    }
    let owner = (!everyone).then_some(actor.identity.as_str());
    match runners.store.list(owner, flag("deleted")) {
        Ok(runners) => Reply::json(200, &RunnerList { runners }),
        Err(e) => Reply::error(e.http_status(), e.to_string()),
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// Whether `label` matches `pattern` (`*`: any run of characters), ignoring case as GitHub
/// does for labels.
fn label_matches(pattern: &str, label: &str) -> bool {
    let (pattern, label) = (pattern.to_ascii_lowercase(), label.to_ascii_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == label;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !label.starts_with(first) || !label[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &label[first.len()..label.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The policy's runner rules: the host, the organization or repository (and the runner
/// permission within the ceiling), the group, the labels.
fn check_policy(
    policy: &PeerPolicy,
    target: &Target,
    group: u64,
    labels: &[String],
) -> Result<(), (u16, String)> {
    let refused = |r: crate::access::Refusal| (r.status(), r.message().to_string());
    policy.check_host(&target.host).map_err(refused)?;
    match &target.repo {
        Some(repo) => policy.check_repository_runner(&target.org, repo),
        None => policy.check_runner(&target.org),
    }
    .map_err(refused)?;
    let entry = policy.index;
    if let Some(groups) = &policy.runner_groups
        && !groups.contains(&group)
    {
        return Err((
            403,
            format!(
                "runner group {group} is not allowed by policy entry {entry} (runner_groups = {groups:?})"
            ),
        ));
    }
    if let Some(allowed) = &policy.runner_labels
        && let Some(label) = labels
            .iter()
            .find(|l| !allowed.iter().any(|p| label_matches(p, l)))
    {
        return Err((
            403,
            format!(
                "label {label:?} is not allowed by policy entry {entry} (runner_labels = {allowed:?})"
            ),
        ));
    }
    Ok(())
}

/// The organization and repository a provision is for.
fn target_of(
    request: &ProvisionRequest,
    runners: &RunnerService,
    host: String,
) -> Result<Target, String> {
    let (org, repo) = match (&request.org, &request.repo) {
        (Some(_), Some(_)) => {
            return Err("name either org or repo (OWNER/REPO), not both".to_string());
        }
        (None, Some(full)) => {
            let (owner, repo) = full
                .split_once('/')
                .ok_or_else(|| format!("repo must be OWNER/REPO, got {full:?}"))?;
            let owner = api::check_name("owner", owner).map_err(|e| e.to_string())?;
            let repo = api::check_name("repo", repo).map_err(|e| e.to_string())?;
            (owner, Some(repo))
        }
        (Some(org), None) => (
            api::check_name("org", org).map_err(|e| e.to_string())?,
            None,
        ),
        (None, None) => match &runners.default_owner {
            Some(owner) => (owner.clone(), None),
            None => {
                return Err(
                    "name the organization (org) or repository (repo), or set [runners] owner"
                        .to_string(),
                );
            }
        },
    };
    Ok(Target {
        host,
        org: org.to_ascii_lowercase(),
        repo: repo.map(|r| r.to_ascii_lowercase()),
    })
}

async fn provision<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    runners: &RunnerService,
    grant: &Grant<'_>,
    actor: &Actor,
    request: ProvisionRequest,
    audit: &mut AuditEvent,
) -> Reply {
    let name = match wire::check_runner_name(&request.runner_name) {
        Ok(name) if RESERVED_NAMES.contains(&name.as_str()) => {
            return Reply::error(400, format!("runner_name {name} is reserved by the API"));
        }
        Ok(name) => name,
        Err(e) => return Reply::error(400, e),
    };
    let labels = match wire::check_labels(&request.labels) {
        Ok(labels) => labels,
        Err(e) => return Reply::error(422, format!("labels: {e}")),
    };
    let work_folder = request
        .work_folder
        .clone()
        .unwrap_or_else(|| DEFAULT_WORK_FOLDER.to_string());
    if work_folder.is_empty()
        || work_folder.len() > 200
        || work_folder.chars().any(char::is_control)
    {
        return Reply::error(422, "work_folder: 1–200 characters, no control characters");
    }
    let group = request.runner_group_id.unwrap_or(1);
    let mode = request.mode.unwrap_or_default();
    let host = runner_host(settings.default_host.as_deref());
    let target = match target_of(&request, runners, host) {
        Ok(target) => target,
        Err(e) => return Reply::error(400, e),
    };
    audit.host = Some(target.host.clone());
    audit.owner = Some(target.org.clone());
    audit.repo = target.repo.clone();
    if let Some((status, message)) = grant
        .policies()
        .find_map(|policy| check_policy(policy, &target, group, &labels).err())
    {
        audit.outcome = Outcome::DeniedPolicy;
        let _ = runners.store.note(
            actor,
            ghapp_protocol::time::Timestamp::now(),
            "provision_refused",
            Some(&name),
            &serde_json::json!({ "reason": message }),
        );
        return Reply::error(status, message);
    }
    let new = NewRunner {
        name,
        owner_identity: actor.identity.clone(),
        host: target.host.clone(),
        org: target.org.clone(),
        repo: target.repo.clone(),
        labels,
        runner_group_id: group,
        ephemeral: request.ephemeral,
        mode,
    };
    let api = ServiceApi(&state.service);
    let provisioned = match lifecycle::provision(
        &runners.store,
        &api,
        &target,
        &new,
        &work_folder,
        actor,
    )
    .await
    {
        Ok(provisioned) => provisioned,
        Err(e) => return runner_error(&e),
    };
    audit.outcome = Outcome::Granted;
    let record = provisioned.record;
    let response = match provisioned.credential {
        Credential::Jit(jit) => {
            audit.token_fingerprint = Some(jit.encoded_jit_config.fingerprint());
            let command = format!("./run.sh --jitconfig {}", jit.encoded_jit_config.expose());
            ProvisionResponse {
                runner_name: record.name.clone(),
                runner_id: record.github_id,
                github_url: jit.url,
                mode: ProvisionMode::Jit,
                encoded_jit_config: Some(jit.encoded_jit_config),
                registration_token: None,
                expires_at: None,
                configuration_command: Token::new(command),
                runner: record,
            }
        }
        Credential::Registration(token) => {
            audit.token_fingerprint = Some(token.token.fingerprint());
            audit.expires_at = Some(token.expires_at);
            let command = config_command(&record, &token.url, token.token.expose());
            ProvisionResponse {
                runner_name: record.name.clone(),
                runner_id: record.github_id,
                github_url: token.url,
                mode: ProvisionMode::RegistrationToken,
                encoded_jit_config: None,
                registration_token: Some(token.token),
                expires_at: Some(token.expires_at),
                configuration_command: Token::new(command),
                runner: record,
            }
        }
    };
    Reply::json(201, &response)
}

/// `./config.sh --url URL --token TOKEN --name NAME --labels a,b [--runnergroup N]
/// [--ephemeral]`, every word shell-quoted where it needs it: labels may hold `;`, `$(…)` and
/// quotes, and this line is printed to be run by a shell.
fn config_command(record: &RunnerRecord, url: &str, token: &str) -> String {
    let labels = record.labels.join(",");
    let group = record.runner_group_id.to_string();
    let mut words = vec![
        "./config.sh",
        "--url",
        url,
        "--token",
        token,
        "--name",
        &record.name,
        "--labels",
        &labels,
    ];
    if record.repo.is_none() && record.runner_group_id != 1 {
        words.extend(["--runnergroup", &group]);
    }
    if record.ephemeral {
        words.push("--ephemeral");
    }
    // Only a NUL defeats quoting, and no word here can hold one (labels, names and the
    // token are printable ASCII; the URL is GitHub's).
    shlex::try_join(words.iter().copied()).unwrap_or_default()
}

async fn deprovision<S: TokenService>(
    state: &State<S>,
    runners: &RunnerService,
    actor: &Actor,
    record: RunnerRecord,
    audit: &mut AuditEvent,
) -> Reply {
    if record.state == ghapp_protocol::runners::RunnerState::Deleted {
        return Reply::json(200, &record);
    }
    let api = ServiceApi(&state.service);
    match lifecycle::deprovision(
        &runners.store,
        &api,
        &record,
        actor,
        &format!("deprovisioned by {}", actor.identity),
    )
    .await
    {
        Ok(record) => {
            audit.outcome = Outcome::Ok;
            Reply::json(200, &record)
        }
        Err(e) => runner_error(&e),
    }
}

fn runner_error(error: &RunnerError) -> Reply {
    Reply::error(error.http_status(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_label_globs() {
        assert_eq!(
            RunnerRoute::parse("/api/v1/runners/provision"),
            Some(RunnerRoute::Provision)
        );
        assert_eq!(
            RunnerRoute::parse("/api/v1/runners/ci-1"),
            Some(RunnerRoute::Runner("ci-1".into()))
        );
        assert_eq!(RunnerRoute::parse("/api/v1/runners/a/b"), None);
        assert_eq!(RunnerRoute::parse("/api/v1/runners/"), None);
        assert_eq!(RunnerRoute::parse("/health"), Some(RunnerRoute::Health));
        assert!(label_matches("linux-*", "Linux-X64"));
        assert!(label_matches("*gpu*", "big-gpu-box"));
        assert!(label_matches("gpu", "GPU"));
        assert!(!label_matches("linux-*", "windows"));
        assert!(!label_matches("a*b*c", "acb"));
    }
}
