//! Why a GitHub call failed, as the engine saw it: before the broker adds which App,
//! installation and target it was for (see `failure.rs`, the one place that does).

use crate::clock::format_rfc3339;
use crate::error::BrokerError;
use std::time::SystemTime;

/// Why a GitHub call failed, before the caller adds its context.
#[derive(Debug, Clone)]
pub(crate) enum ApiError {
    /// GitHub answered an error status that retrying will not fix.
    Status {
        status: u16,
        message: String,
        route: String,
    },
    /// GitHub rejected the App JWT (after any clock correction).
    JwtRejected {
        status: u16,
        message: String,
        route: String,
    },
    /// Rate limited beyond what the budget allows waiting for.
    RateLimited { until: SystemTime, route: String },
    /// No usable answer after the retries: transport failures or 5xx.
    Unreachable { detail: String },
    /// An answer that is not what GitHub documents.
    Protocol { detail: String },
}

impl ApiError {
    /// True for failures of GitHub rather than of the request: worth serving from cache.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. } | ApiError::Unreachable { .. }
        )
    }

    /// What happened, for messages ("HTTP 503 from POST /app/…: Service Unavailable").
    pub(crate) fn detail(&self) -> String {
        match self {
            ApiError::Status {
                status,
                message,
                route,
            }
            | ApiError::JwtRejected {
                status,
                message,
                route,
            } => {
                format!("HTTP {status} from {route}: {message}")
            }
            ApiError::RateLimited { until, route } => {
                format!(
                    "rate limited by GitHub until {} ({route})",
                    format_rfc3339(*until)
                )
            }
            ApiError::Unreachable { detail } | ApiError::Protocol { detail } => detail.clone(),
        }
    }

    /// This failure repeated to an operation that was not sent because of it, with `note`.
    pub(super) fn held(&self, note: &str) -> ApiError {
        match self.clone() {
            ApiError::Unreachable { detail } => ApiError::Unreachable {
                detail: format!("{detail}; {note}"),
            },
            ApiError::JwtRejected {
                status,
                message,
                route,
            } => ApiError::JwtRejected {
                status,
                message: format!("{message}; {note}"),
                route,
            },
            other => other,
        }
    }

    /// The generic mapping, for callers with nothing more specific to say. `app` describes
    /// the App (`acme-bot (id 12345)`).
    pub(crate) fn into_broker_error(self, app: &str) -> BrokerError {
        match &self {
            ApiError::RateLimited { .. } | ApiError::Unreachable { .. } => {
                BrokerError::unavailable(format!("GitHub unreachable ({})", self.detail()))
            }
            ApiError::JwtRejected { .. } => jwt_rejected_error(app, &self.detail()),
            ApiError::Status { status: 403, .. } => {
                BrokerError::forbidden(format!("GitHub App {app}: {}", self.detail()))
            }
            ApiError::Status { status: 404, .. } => {
                BrokerError::not_found(format!("GitHub App {app}: {}", self.detail()))
            }
            ApiError::Status { status: 422, .. } => {
                BrokerError::unprocessable(format!("GitHub App {app}: {}", self.detail()))
            }
            ApiError::Status { .. } | ApiError::Protocol { .. } => {
                BrokerError::internal(format!("GitHub App {app}: {}", self.detail()))
            }
        }
    }
}

/// The "bad key" error: GitHub does not accept this App's JWT.
pub(crate) fn jwt_rejected_error(app: &str, detail: &str) -> BrokerError {
    BrokerError::internal(format!(
        "GitHub rejected the JWT of App {app} ({detail}): check app_id/client_id and that the private key is the App's current key"
    ))
}
