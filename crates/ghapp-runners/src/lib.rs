//! The self-hosted runner service's state and logic, independent of HTTP (docs/runners.md):
//!
//! | module | its one job |
//! |---|---|
//! | [`store`] | the SQLite database: open (WAL, integrity check, migrations), runner records, backups |
//! | `schema` | the migrations compiled into the binary, versioned by `PRAGMA user_version` |
//! | [`audit`] | the append-only, hash-chained audit trail: append, verify, export |
//! | [`github`] | [`RunnerApi`]: the GitHub calls the service makes, as a trait |
//! | [`lifecycle`] | provisioning and deprovisioning one runner, record and GitHub in step |
//! | [`sync`] | the reconciliation with GitHub's runner lists: every state transition |
//! | [`error`] | [`StoreError`] |

#![warn(missing_docs)]

pub mod audit;
pub mod error;
pub mod github;
pub mod lifecycle;
mod schema;
pub mod store;
pub mod sync;

pub use audit::{Actor, AuditEntry, Verification};
pub use error::StoreError;
pub use github::{
    ApiFailure, GitHubRunner, JitConfig, JitRequest, RegistrationToken, RunnerApi, Target,
};
pub use lifecycle::{Credential, Provisioned, RunnerError};
pub use store::{NewRunner, Observed, Store};
pub use sync::{Limits, reconcile};

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::VERSION;
