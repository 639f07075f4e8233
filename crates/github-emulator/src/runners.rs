//! Self-hosted runners the emulator knows: registered by `generate-jitconfig`, or by the admin
//! route with a registration token (what `config.sh` does), each in one scope (an organization
//! or a repository). Tests drive their life through the admin route (`POST /_emulator/runners`):
//! online, offline, busy, and an ephemeral runner's finished job (GitHub then removes it).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whose runner: an organization (login, lower-cased) or a repository (id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerScope {
    /// An organization's.
    Organization(String),
    /// A repository's.
    Repository(u64),
}

/// One runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatedRunner {
    /// Its id (unique across scopes, as on GitHub).
    pub id: u64,
    /// Its name (unique within its scope).
    pub name: String,
    /// Its scope.
    pub scope: RunnerScope,
    /// Online (else offline).
    pub online: bool,
    /// Running a job.
    pub busy: bool,
    /// Takes one job, then is removed.
    pub ephemeral: bool,
    /// Its runner group.
    pub runner_group_id: u64,
    /// Its custom labels (the read-only `self-hosted`, `Linux`, `X64` come on top).
    pub labels: Vec<String>,
}

/// The read-only labels every runner has.
pub const SYSTEM_LABELS: [&str; 3] = ["self-hosted", "Linux", "X64"];

impl EmulatedRunner {
    /// GitHub's `runner` object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut labels = Vec::new();
        let mut id = 1;
        for name in SYSTEM_LABELS {
            labels.push(serde_json::json!({"id": id, "name": name, "type": "read-only"}));
            id += 1;
        }
        for name in &self.labels {
            if SYSTEM_LABELS.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                continue;
            }
            labels.push(serde_json::json!({"id": id, "name": name, "type": "custom"}));
            id += 1;
        }
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "os": "Linux",
            "status": if self.online { "online" } else { "offline" },
            "busy": self.busy,
            "runner_group_id": self.runner_group_id,
            "ephemeral": self.ephemeral,
            "labels": labels,
        })
    }
}

/// A runner of that name exists in the scope already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameInUse;

/// Every runner, and the registration tokens issued (token → scope, expiry).
#[derive(Debug, Default)]
pub struct Runners {
    /// The runners, in registration order.
    pub list: Vec<EmulatedRunner>,
    /// The last id handed out.
    pub last_id: u64,
    /// Registration tokens: the scope each registers runners in, and when it expires.
    pub registration_tokens: BTreeMap<String, (RunnerScope, i64)>,
}

impl Runners {
    /// The runners of `scope`.
    pub fn of(&self, scope: &RunnerScope) -> Vec<&EmulatedRunner> {
        self.list.iter().filter(|r| &r.scope == scope).collect()
    }

    /// Registers a runner; [`NameInUse`] when `scope` has one of that name (GitHub: 409).
    pub fn register(
        &mut self,
        scope: RunnerScope,
        name: &str,
        runner_group_id: u64,
        labels: Vec<String>,
        ephemeral: bool,
    ) -> Result<EmulatedRunner, NameInUse> {
        if self
            .list
            .iter()
            .any(|r| r.scope == scope && r.name.eq_ignore_ascii_case(name))
        {
            return Err(NameInUse);
        }
        self.last_id += 1;
        let runner = EmulatedRunner {
            id: self.last_id,
            name: name.to_string(),
            scope,
            online: false,
            busy: false,
            ephemeral,
            runner_group_id,
            labels,
        };
        self.list.push(runner.clone());
        Ok(runner)
    }

    /// Removes the runner `id` of `scope`; false when there is none.
    pub fn remove(&mut self, scope: &RunnerScope, id: u64) -> bool {
        let before = self.list.len();
        self.list.retain(|r| !(r.id == id && &r.scope == scope));
        self.list.len() < before
    }
}

/// `POST /_emulator/runners`: what happens to a runner (found by `id`, or by `name`), or a
/// registration with a registration token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RunnerAction {
    /// The runner connects: `status: online`.
    Online {
        /// Its id.
        #[serde(default)]
        id: Option<u64>,
        /// Or its name.
        #[serde(default)]
        name: Option<String>,
    },
    /// The runner disconnects: `status: offline`, not busy.
    Offline {
        /// Its id.
        #[serde(default)]
        id: Option<u64>,
        /// Or its name.
        #[serde(default)]
        name: Option<String>,
    },
    /// The runner takes a job: online and busy.
    Busy {
        /// Its id.
        #[serde(default)]
        id: Option<u64>,
        /// Or its name.
        #[serde(default)]
        name: Option<String>,
    },
    /// The runner's job finishes: an ephemeral runner is removed (as GitHub does), another
    /// becomes idle.
    FinishJob {
        /// Its id.
        #[serde(default)]
        id: Option<u64>,
        /// Or its name.
        #[serde(default)]
        name: Option<String>,
    },
    /// `config.sh --token TOKEN --name NAME`: registers a runner with a registration token
    /// (offline until it goes online).
    Register {
        /// The registration token.
        registration_token: String,
        /// The runner's name.
        name: String,
        /// Its labels.
        #[serde(default)]
        labels: Vec<String>,
        /// `--ephemeral`.
        #[serde(default)]
        ephemeral: bool,
        /// `--runnergroup` (default 1).
        #[serde(default)]
        runner_group_id: Option<u64>,
    },
}

/// Applies an admin action at `now` (Unix seconds); the runner concerned, or why not.
pub fn apply(
    runners: &mut Runners,
    action: RunnerAction,
    now: i64,
) -> Result<serde_json::Value, (u16, String)> {
    let find = |runners: &mut Runners, id: Option<u64>, name: Option<String>| {
        let index = runners.list.iter().position(|r| match (&id, &name) {
            (Some(id), _) => r.id == *id,
            (None, Some(name)) => r.name == *name,
            (None, None) => false,
        });
        index.ok_or((404, format!("no runner {id:?} {name:?}")))
    };
    match action {
        RunnerAction::Online { id, name } => {
            let i = find(runners, id, name)?;
            runners.list[i].online = true;
            Ok(runners.list[i].to_json())
        }
        RunnerAction::Offline { id, name } => {
            let i = find(runners, id, name)?;
            runners.list[i].online = false;
            runners.list[i].busy = false;
            Ok(runners.list[i].to_json())
        }
        RunnerAction::Busy { id, name } => {
            let i = find(runners, id, name)?;
            runners.list[i].online = true;
            runners.list[i].busy = true;
            Ok(runners.list[i].to_json())
        }
        RunnerAction::FinishJob { id, name } => {
            let i = find(runners, id, name)?;
            let runner = runners.list[i].clone();
            if runner.ephemeral {
                runners.list.remove(i);
                Ok(serde_json::json!({"removed": true, "runner": runner.to_json()}))
            } else {
                runners.list[i].busy = false;
                Ok(runners.list[i].to_json())
            }
        }
        RunnerAction::Register {
            registration_token,
            name,
            labels,
            ephemeral,
            runner_group_id,
        } => {
            let Some((scope, expires)) = runners
                .registration_tokens
                .get(&registration_token)
                .cloned()
            else {
                return Err((404, "unknown registration token".into()));
            };
            if expires <= now {
                return Err((401, "the registration token expired".into()));
            }
            runners
                .register(
                    scope,
                    &name,
                    runner_group_id.unwrap_or(1),
                    labels,
                    ephemeral,
                )
                .map(|r| r.to_json())
                .map_err(|NameInUse| (409, format!("a runner named {name} exists already")))
        }
    }
}
