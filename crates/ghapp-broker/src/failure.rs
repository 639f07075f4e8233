//! The one place a failed GitHub call becomes a [`BrokerError`]: the message a person can act
//! on, the facts as data (App, installation, target, GitHub's status, route and message), the
//! App's health — and what else the failure means for the caches, as a [`Consequence`] the
//! broker carries out (this module touches no cache).

use crate::app::{AppRuntime, Trouble};
use crate::cache::MintPlan;
use crate::error::BrokerError;
use crate::github::{ApiError, Bucket, TokenRequestBody};

/// What a failure means beyond the error, for the broker to apply to its caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Consequence {
    /// GitHub rejects the App's JWT: its cached tokens go.
    DropAppTokens,
    /// The installation no longer exists: its mappings and the key's cached token go.
    ForgetInstallation(u64),
    /// The installation is suspended: its mappings say so, and the key's cached token goes.
    MarkSuspended(u64),
}

/// A mapped failure.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the caller is told.
    pub error: BrokerError,
    /// What the caches must do about it, if anything.
    pub consequence: Option<Consequence>,
}

impl Failure {
    fn only(error: BrokerError) -> Failure {
        Failure {
            error,
            consequence: None,
        }
    }
}

/// `error` with GitHub's answer and the App attached as data.
fn with_answer(error: BrokerError, app: &AppRuntime, api: &ApiError) -> BrokerError {
    let (status, route, message) = api.answer();
    error
        .with_app(app.name())
        .with_github(status, route, message)
}

/// A failed GitHub call of `app` with nothing more specific to say; records the App's health.
/// `doing` says what was being done, for the log. A rate limit on one installation's bucket
/// says nothing about the App's other installations: it leaves the App's health alone.
pub(crate) fn api_failure(app: &AppRuntime, error: ApiError, doing: &str) -> Failure {
    let detail = error.detail();
    if let ApiError::Signer { .. } = &error {
        // Nothing reached GitHub: the App's signer failed. Cached tokens serve on their margin
        // as for an outage, and the message names the signer.
        app.health.fail(
            Trouble::Unreachable,
            format!("App {}: {detail}", app.name()),
        );
        tracing::warn!(app = %app.name(), "while {doing}: {detail}");
        let mapped = BrokerError::unavailable(format!("GitHub App {}: {detail}", app.describe()));
        return Failure::only(with_answer(mapped, app, &error));
    }
    if error.is_transient() {
        let one_installation = matches!(
            error,
            ApiError::RateLimited {
                bucket: Bucket::Installation(_),
                ..
            }
        );
        if !one_installation {
            app.health.fail(
                Trouble::Unreachable,
                format!("App {}: GitHub unreachable ({detail})", app.name()),
            );
        }
        tracing::warn!(app = %app.name(), "GitHub unreachable while {doing}: {detail}");
        let mapped = BrokerError::unavailable(format!("GitHub unreachable ({detail})"));
        return Failure::only(with_answer(mapped, app, &error));
    }
    let described = app.describe();
    let mapped = match &error {
        ApiError::JwtRejected { .. } => {
            let mapped = jwt_rejected_error(&described, &detail);
            app.health.fail(
                Trouble::BadKey,
                format!("App {}: {}", app.name(), mapped.message),
            );
            tracing::error!(app = %app.name(), "{}", mapped.message);
            return Failure {
                error: with_answer(mapped, app, &error),
                consequence: Some(Consequence::DropAppTokens),
            };
        }
        ApiError::Status { status: 403, .. } => {
            BrokerError::forbidden(format!("GitHub App {described}: {detail}"))
        }
        ApiError::Status { status: 404, .. } => {
            BrokerError::not_found(format!("GitHub App {described}: {detail}"))
        }
        ApiError::Status { status: 422, .. } => {
            BrokerError::unprocessable(format!("GitHub App {described}: {detail}"))
        }
        _ => BrokerError::internal(format!("GitHub App {described}: {detail}")),
    };
    Failure::only(with_answer(mapped, app, &error))
}

/// A failed `access_tokens` call for `plan`.
pub(crate) fn mint_failure(app: &AppRuntime, plan: &MintPlan, error: ApiError) -> Failure {
    let id = plan.key.installation_id;
    let installation = format!("installation {id} ({})", plan.account);
    let (mapped, consequence) = match &error {
        ApiError::Status {
            status: 403,
            message,
            ..
        } if message.to_ascii_lowercase().contains("suspended") => (
            suspended_error(&app.describe(), id, &plan.account),
            Some(Consequence::MarkSuspended(id)),
        ),
        ApiError::Status { status: 404, .. } => (
            BrokerError::not_found(format!(
                "GitHub App {} {installation} no longer exists (uninstalled or reinstalled): {}",
                app.describe(),
                error.detail()
            )),
            Some(Consequence::ForgetInstallation(id)),
        ),
        ApiError::Status { status: 422, .. } => (
            BrokerError::unprocessable(format!(
                "GitHub refused a token for {} from App {} ({installation}; asked {}): {}",
                plan.target,
                app.describe(),
                describe_request(&plan.body()),
                error.detail()
            )),
            None,
        ),
        ApiError::Status { status: 403, .. } => (
            BrokerError::forbidden(format!(
                "GitHub refused a token for {} from App {} ({installation}): {}",
                plan.target,
                app.describe(),
                error.detail()
            )),
            None,
        ),
        _ => {
            let failure = api_failure(app, error, &format!("minting a token for {}", plan.target));
            return Failure {
                error: failure
                    .error
                    .with_installation(id)
                    .with_target(plan.target.clone()),
                consequence: failure.consequence,
            };
        }
    };
    Failure {
        error: with_answer(mapped, app, &error)
            .with_installation(id)
            .with_target(plan.target.clone()),
        consequence,
    }
}

/// One runner-token call, for [`runner_failure`].
pub(crate) struct RunnerCall<'a> {
    /// `organization acme` or `repository acme/widgets`.
    pub target: String,
    /// `registration` or `remove`.
    pub kind: &'static str,
    /// The permission the installation token needs.
    pub permission: &'static str,
    /// A repository's runners (else an organization's).
    pub repository: bool,
    /// The installation whose token was used …
    pub installation_id: u64,
    /// … and its account.
    pub account: &'a str,
}

/// A failed runner-token call.
pub(crate) fn runner_failure(app: &AppRuntime, call: &RunnerCall<'_>, error: ApiError) -> Failure {
    let RunnerCall {
        target,
        kind,
        permission,
        repository,
        installation_id,
        account,
    } = call;
    let (setting, not_found_advice) = if *repository {
        (
            "the repository permission \"Administration: write\"",
            "the App's installation must cover the repository",
        )
    } else {
        (
            "the organization permission \"Self-hosted runners: write\"",
            "a user account has no organization runners: ask for a repository's runner token (`ghapp runner-token OWNER/REPO`)",
        )
    };
    let mapped = match &error {
        ApiError::Status {
            status: 403,
            message,
            route,
        } => BrokerError::forbidden(format!(
            "GitHub App {} installation {installation_id} ({account}) may not manage the self-hosted runners of {target}: give the App {setting} ({permission}) and accept it for the installation (HTTP 403 from {route}: {message})",
            app.describe(),
        )),
        ApiError::Status {
            status: 404,
            message,
            route,
        } => BrokerError::not_found(format!(
            "{target} has no self-hosted runner settings GitHub App {} can reach (HTTP 404 from {route}: {message}); {not_found_advice}",
            app.describe()
        )),
        _ => {
            let failure = api_failure(
                app,
                error,
                &if kind.contains(' ') {
                    format!("{kind} of {target}")
                } else {
                    format!("getting a runner {kind} token for {target}")
                },
            );
            return Failure {
                error: failure
                    .error
                    .with_installation(*installation_id)
                    .with_target(target.clone()),
                consequence: failure.consequence,
            };
        }
    };
    Failure::only(
        with_answer(mapped, app, &error)
            .with_installation(*installation_id)
            .with_target(target.clone()),
    )
}

/// "GitHub App acme-bot (id 12345) installation 100 (acme) is suspended".
pub(crate) fn suspended_error(app: &str, installation_id: u64, account: &str) -> BrokerError {
    BrokerError::forbidden(format!(
        "GitHub App {app} installation {installation_id} ({account}) is suspended: an owner of {account} must unsuspend it in the account's installed GitHub Apps settings"
    ))
    .with_installation(installation_id)
}

/// The "bad key" error: GitHub does not accept this App's JWT.
fn jwt_rejected_error(app: &str, detail: &str) -> BrokerError {
    BrokerError::internal(format!(
        "GitHub rejected the JWT of App {app} ({detail}): check app_id/client_id and that the private key is the App's current key"
    ))
}

/// "widgets; contents:read": what a mint asked for, in messages.
fn describe_request(body: &TokenRequestBody) -> String {
    let repos = if body.repositories.is_empty() {
        "all repositories".to_string()
    } else {
        body.repositories.join(", ")
    };
    let perms = body
        .permissions
        .as_ref()
        .map_or("all granted permissions".to_string(), |p| p.to_list());
    format!("{repos}; {perms}")
}
