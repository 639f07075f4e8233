//! Provisioning and deprovisioning one runner: the record and GitHub kept in step. A provision
//! reserves the name in the database first (the unique index decides races), then asks GitHub;
//! if GitHub refuses, the reservation goes and the audit trail says why.

use crate::audit::Actor;
use crate::error::StoreError;
use crate::github::{ApiFailure, JitConfig, JitRequest, RegistrationToken, RunnerApi, Target};
use crate::store::{NewRunner, Observed, Store};
use ghapp_protocol::runners::{ProvisionMode, RunnerRecord, RunnerState};
use ghapp_protocol::time::Timestamp;
use std::fmt;

/// The work folder a JIT runner gets when the request names none.
pub const DEFAULT_WORK_FOLDER: &str = "_work";

/// Why an operation failed.
#[derive(Debug)]
pub enum RunnerError {
    /// The database.
    Store(StoreError),
    /// GitHub.
    GitHub(ApiFailure),
}

impl RunnerError {
    /// The HTTP status the socket API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            RunnerError::Store(e) => e.http_status(),
            RunnerError::GitHub(e) => e.status,
        }
    }
}

impl fmt::Display for RunnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerError::Store(e) => e.fmt(f),
            RunnerError::GitHub(e) => e.fmt(f),
        }
    }
}

impl From<StoreError> for RunnerError {
    fn from(e: StoreError) -> Self {
        RunnerError::Store(e)
    }
}

/// What a provision handed out.
#[derive(Debug)]
pub enum Credential {
    /// A just-in-time configuration.
    Jit(JitConfig),
    /// A registration token.
    Registration(RegistrationToken),
}

/// A provisioned runner and what it starts with.
#[derive(Debug)]
pub struct Provisioned {
    /// The record, as stored.
    pub record: RunnerRecord,
    /// The secret the runner needs.
    pub credential: Credential,
}

/// Provisions `new` at `target`: reserves the name, asks GitHub (a JIT configuration, or a
/// registration token), records the outcome. `work_folder` is for JIT runners.
pub async fn provision<A: RunnerApi>(
    store: &Store,
    api: &A,
    target: &Target,
    new: &NewRunner,
    work_folder: &str,
    actor: &Actor,
) -> Result<Provisioned, RunnerError> {
    store.reserve(new, actor, Timestamp::now())?;
    let asked = match new.mode {
        ProvisionMode::Jit => api
            .generate_jitconfig(
                target,
                &JitRequest {
                    name: new.name.clone(),
                    runner_group_id: new.runner_group_id,
                    labels: new.labels.clone(),
                    work_folder: work_folder.to_string(),
                },
            )
            .await
            .map(Credential::Jit),
        ProvisionMode::RegistrationToken => api
            .registration_token(target)
            .await
            .map(Credential::Registration),
    };
    let credential = match asked {
        Ok(credential) => credential,
        Err(failure) => {
            store.abandon(&new.name, actor, Timestamp::now(), &failure.message)?;
            return Err(RunnerError::GitHub(failure));
        }
    };
    let (github_id, detail) = match &credential {
        Credential::Jit(jit) => (
            Some(jit.runner.id),
            serde_json::json!({
                "github_id": jit.runner.id,
                "jit_config": jit.encoded_jit_config.fingerprint(),
            }),
        ),
        Credential::Registration(token) => (
            None,
            serde_json::json!({
                "registration_token": token.token.fingerprint(),
                "expires_at": token.expires_at,
            }),
        ),
    };
    let record = store.provisioned(&new.name, github_id, actor, Timestamp::now(), &detail)?;
    Ok(Provisioned { record, credential })
}

/// The target of a record.
pub fn target_of(record: &RunnerRecord) -> Target {
    Target {
        host: record.host.clone(),
        org: record.org.clone(),
        repo: record.repo.clone(),
    }
}

/// Deletes the runner at GitHub (finding its id by name when it registered with a token) and
/// marks it deleted. A runner GitHub no longer has is simply marked. A GitHub failure changes
/// nothing.
pub async fn deprovision<A: RunnerApi>(
    store: &Store,
    api: &A,
    record: &RunnerRecord,
    actor: &Actor,
    reason: &str,
) -> Result<RunnerRecord, RunnerError> {
    let target = target_of(record);
    let id = match record.github_id {
        Some(id) => Some(id),
        None => api
            .list(&target)
            .await
            .map_err(RunnerError::GitHub)?
            .into_iter()
            .find(|r| r.name == record.name)
            .map(|r| r.id),
    };
    let existed = match id {
        Some(id) => api.delete(&target, id).await.map_err(RunnerError::GitHub)?,
        None => false,
    };
    let reason = if existed {
        format!("{reason}; deleted on GitHub")
    } else {
        format!("{reason}; GitHub had no such runner")
    };
    let changed = store.transition(
        &record.name,
        record.state,
        RunnerState::Deleted,
        Observed {
            github_id: id,
            busy: false,
        },
        actor,
        Timestamp::now(),
        &reason,
    )?;
    if !changed {
        // The sync moved it meanwhile: mark it from whatever state it is in now.
        if let Some(now) = store.get(&record.name)?
            && now.state != RunnerState::Deleted
        {
            store.transition(
                &record.name,
                now.state,
                RunnerState::Deleted,
                Observed::default(),
                actor,
                Timestamp::now(),
                &reason,
            )?;
        }
    }
    store.get(&record.name)?.ok_or_else(|| {
        RunnerError::Store(StoreError::NotFound {
            name: record.name.clone(),
        })
    })
}
