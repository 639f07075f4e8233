//! Minting: what to ask GitHub for ([`plan`]: narrowing and ceilings), the mint itself
//! ([`Minter`]), and checking that GitHub granted what was asked ([`check_minted`]).
//!
//! - A repository named → the token is narrowed to it, unless the App is `installation_wide`.
//! - Permissions asked must be within the App's ceiling (`permissions`), else 422 naming the
//!   first one beyond it. None asked → the ceiling (limited to what the installation has), or,
//!   without a ceiling, nothing (GitHub then grants everything the installation has).
//! - A repository found through a redirect (renamed) is narrowed by its id, as its old name no
//!   longer resolves.
//! - GitHub's answer must not grant more than asked, and must be narrowed as asked; otherwise
//!   the token is not served. GitHub's schema requires only `token` and `expires_at`: what the
//!   answer leaves out (`permissions`, `repositories`, `repository_selection`) is not held
//!   against it, what it carries is checked.

use crate::app::AppRuntime;
use crate::cache::{CachedToken, MintPlan, Narrowing, Scope};
use crate::error::BrokerError;
use crate::failure::{self, Failure};
use crate::github::MintedToken;
use crate::metrics::{Metrics, bump};
use crate::resolve::Resolved;
use ghapp_protocol::permissions::{Level, Permissions};
use std::sync::Arc;
use tokio::time::Instant;

/// What to mint for a request.
pub(crate) fn plan(
    app: &AppRuntime,
    host: &str,
    resolved: &Resolved,
    repo: Option<&str>,
    asked: &Permissions,
    target: String,
) -> Result<MintPlan, BrokerError> {
    let ceiling = app.config.permissions.as_ref();
    let permissions = if !asked.is_empty() {
        if let Some(ceiling) = ceiling
            && let Some((name, level)) = asked.first_beyond(ceiling)
        {
            return Err(BrokerError::unprocessable(format!(
                "permission {name}={level} exceeds the ceiling for {} (allowed: {})",
                app.name(),
                ceiling.to_list()
            )));
        }
        Some(asked.clone())
    } else {
        ceiling.map(|c| within_installation(c, &resolved.installation.permissions))
    };
    let narrowed_to = repo.filter(|_| !app.config.installation_wide);
    let narrowing = match (narrowed_to, resolved.installation.repository_id) {
        (Some(_), Some(id)) => Narrowing::Id(id),
        (Some(repo), None) => Narrowing::Name(repo.into()),
        (None, _) => Narrowing::None,
    };
    let mut key_repositories: Vec<String> =
        narrowed_to.iter().map(|r| r.to_ascii_lowercase()).collect();
    key_repositories.sort();
    key_repositories.dedup();
    // The App's own strings, shared (the request's host is the App's, as candidates are picked).
    let names = &app.names;
    let host = if *names.host == *host {
        names.host.clone()
    } else {
        host.into()
    };
    Ok(MintPlan::new(
        Scope {
            host,
            app_identity: names.identity.clone(),
            installation_id: resolved.installation.id,
            repositories: key_repositories,
            app_name: names.name.clone(),
            app_label: names.label.clone(),
            account: resolved.installation.account.as_str().into(),
            target: target.into_boxed_str(),
            narrowing,
            installation_permissions: resolved.installation.permissions.clone(),
        },
        permissions,
    ))
}

/// The ceiling limited to what the installation was granted (lower level wins), so a ceiling
/// wider than one installation still yields a token there. When GitHub did not report the
/// installation's permissions, or nothing is left, the ceiling is asked as is and GitHub's
/// answer decides.
fn within_installation(ceiling: &Permissions, installation: &Permissions) -> Permissions {
    if installation.is_empty() {
        return ceiling.clone();
    }
    let limited: Permissions = ceiling
        .iter()
        .filter_map(|(name, level)| {
            installation
                .get(name)
                .map(|granted| (name.to_string(), level.min(granted)))
        })
        .collect();
    if limited.is_empty() {
        ceiling.clone()
    } else {
        limited
    }
}

/// Checks GitHub's answer against the request.
pub(crate) fn check_minted(plan: &MintPlan, minted: &MintedToken) -> Result<(), BrokerError> {
    let refuse = |what: String| {
        BrokerError::internal(format!(
            "GitHub App {}: the token GitHub minted for {} {what}; it was not used",
            plan.app_label, plan.target
        ))
    };
    if let Some(asked) = &plan.key.permissions
        && let Some(granted) = &minted.permissions
    {
        // GitHub adds `metadata: read` to every scoped token (repositories need it).
        let mut allowed = asked.clone();
        if allowed.get("metadata").is_none() {
            let _ = allowed.insert("metadata", Level::Read);
        }
        if let Some((name, level)) = granted.first_beyond(&allowed) {
            return Err(refuse(format!(
                "grants {name}:{level}, more than asked ({})",
                asked.to_list()
            )));
        }
        if let Some(odd) = minted.unrecognised_permissions.first() {
            return Err(refuse(format!("grants {odd}, which was not asked for")));
        }
    }
    if plan.narrowing == Narrowing::None {
        return Ok(());
    }
    if let Some(selection) = &minted.repository_selection
        && selection != "selected"
    {
        return Err(refuse(format!(
            "covers repository_selection {selection:?}, not the repositories asked ({})",
            plan.key.repositories.join(", ")
        )));
    }
    // Absent: GitHub's schema does not require the list; the selection (if any) was checked.
    let Some(granted) = &minted.repositories else {
        return Ok(());
    };
    if let Narrowing::Id(id) = plan.narrowing {
        let mut ids: Vec<Option<u64>> = granted.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        if ids != [Some(id)] {
            let names: Vec<&str> = granted.iter().map(|r| r.name.as_str()).collect();
            return Err(refuse(format!(
                "covers repositories [{}] instead of the repository with id {:?}",
                names.join(", "),
                [id]
            )));
        }
        return Ok(());
    }
    let mut names: Vec<String> = granted
        .iter()
        .map(|r| r.name.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    if names != plan.key.repositories {
        return Err(refuse(format!(
            "covers repositories [{}] instead of [{}]",
            names.join(", "),
            plan.key.repositories.join(", ")
        )));
    }
    Ok(())
}

/// Mints tokens and checks what GitHub granted; records mint metrics. Touches no cache: the
/// broker stores the token and carries out a failure's consequence.
pub(crate) struct Minter {
    metrics: Arc<Metrics>,
}

impl Minter {
    /// A minter recording into `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Minter { metrics }
    }

    /// Mints the token of `plan` with `app` and checks it against the plan.
    pub(crate) async fn mint(
        &self,
        app: &AppRuntime,
        plan: &Arc<MintPlan>,
    ) -> Result<Arc<CachedToken>, Failure> {
        let installation_id = plan.key.installation_id;
        let started = Instant::now();
        let minted = match app.client.create_token(installation_id, &plan.body()).await {
            Ok(minted) => minted,
            Err(error) => {
                bump(&self.metrics.mint_failures);
                let failure = failure::mint_failure(app, plan, error);
                self.metrics.record_github_failure(&failure.error);
                return Err(failure);
            }
        };
        app.health.ok();
        if let Err(error) = check_minted(plan, &minted) {
            bump(&self.metrics.mint_failures);
            tracing::error!(app = %app.name(), installation = installation_id, "{}", error.message);
            let error = error
                .with_app(app.name())
                .with_installation(installation_id)
                .with_target(plan.target.clone());
            return Err(Failure {
                error,
                consequence: None,
            });
        }
        let st = minted.server_time;
        let lifetime = st.remaining_until(minted.expires_at);
        // Not listed by GitHub: what was asked, else everything the installation has.
        let permissions = minted.permissions.clone().unwrap_or_else(|| {
            plan.key
                .permissions
                .clone()
                .unwrap_or_else(|| plan.installation_permissions.clone())
        });
        let token = CachedToken::arrived(minted.token, minted.expires_at, &st, plan, permissions);
        self.metrics.record_mint(app.name(), started.elapsed());
        tracing::info!(
            app = %app.name(),
            installation = installation_id,
            target = %plan.target,
            token = %token.token.fingerprint(),
            expires_in_secs = lifetime.as_secs(),
            clock_offset_secs = app.client.clock_offset(),
            "minted an installation token"
        );
        Ok(Arc::new(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ServerTime;
    use crate::github::{GrantedRepository, TokenRequestBody};
    use ghapp_protocol::secret::Token;
    use std::time::{Duration, SystemTime};

    fn narrowed_plan(body: TokenRequestBody) -> MintPlan {
        MintPlan::new(
            Scope {
                host: "github.com".into(),
                app_identity: "app".into(),
                installation_id: 100,
                repositories: vec!["widgets".into()],
                app_name: "acme-bot".into(),
                app_label: "acme-bot (id 1)".into(),
                account: "acme".into(),
                target: "acme/widgets".into(),
                narrowing: match (body.repository_ids.first(), body.repositories.first()) {
                    (Some(id), _) => Narrowing::Id(*id),
                    (None, Some(name)) => Narrowing::Name(name.as_str().into()),
                    (None, None) => Narrowing::None,
                },
                installation_permissions: Permissions::new(),
            },
            body.permissions.clone(),
        )
    }

    /// GitHub's minimal answer: only `token` and `expires_at`.
    fn minimal() -> MintedToken {
        MintedToken {
            token: Token::new("ghs_x"),
            expires_at: (SystemTime::now() + Duration::from_secs(3600)).into(),
            server_time: ServerTime::from_date_header(None),
            permissions: None,
            unrecognised_permissions: Vec::new(),
            repositories: None,
            repository_selection: None,
        }
    }

    #[test]
    fn minimal_answers_pass_and_what_they_carry_is_checked() {
        let by_name = narrowed_plan(TokenRequestBody {
            repositories: vec!["widgets".into()],
            permissions: Some(Permissions::parse_list("contents:read").unwrap()),
            ..TokenRequestBody::default()
        });
        assert!(check_minted(&by_name, &minimal()).is_ok());
        let wide = MintedToken {
            repository_selection: Some("all".into()),
            ..minimal()
        };
        let e = check_minted(&by_name, &wide).unwrap_err();
        assert!(
            e.message.contains("repository_selection \"all\""),
            "{}",
            e.message
        );
        let more = MintedToken {
            permissions: Some(Permissions::parse_list("contents:write").unwrap()),
            ..minimal()
        };
        assert!(check_minted(&by_name, &more).is_err(), "more than asked");
        let other = MintedToken {
            repositories: Some(vec![GrantedRepository {
                id: Some(1),
                name: "gadgets".into(),
            }]),
            ..minimal()
        };
        assert!(
            check_minted(&by_name, &other).is_err(),
            "another repository"
        );

        let by_id = narrowed_plan(TokenRequestBody {
            repository_ids: vec![42],
            ..TokenRequestBody::default()
        });
        assert!(check_minted(&by_id, &minimal()).is_ok());
        let renamed = |id| MintedToken {
            repositories: Some(vec![GrantedRepository {
                id: Some(id),
                name: "widgets".into(),
            }]),
            ..minimal()
        };
        assert!(check_minted(&by_id, &renamed(42)).is_ok(), "its new name");
        assert!(check_minted(&by_id, &renamed(43)).is_err(), "another id");
    }

    #[test]
    fn ceiling_is_limited_to_the_installation() {
        let ceiling =
            Permissions::parse_list("contents:write,issues:write,pull_requests:read").unwrap();
        let installation =
            Permissions::parse_list("contents:read,issues:write,metadata:read").unwrap();
        assert_eq!(
            within_installation(&ceiling, &installation).to_list(),
            "contents:read,issues:write"
        );
        assert_eq!(within_installation(&ceiling, &Permissions::new()), ceiling);
        let disjoint = Permissions::parse_list("checks:read").unwrap();
        assert_eq!(within_installation(&ceiling, &disjoint), ceiling);
    }
}
