//! Why a GitHub call failed, as the engine saw it: before the broker adds which App,
//! installation and target it was for (`failure.rs` is the one place that turns it into a
//! broker error).

use super::limits::Bucket;
use ghapp_protocol::time::Timestamp;
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
    /// Rate limited beyond what the budget allows waiting for, on `bucket`'s `resource`.
    RateLimited {
        until: SystemTime,
        route: String,
        bucket: Bucket,
        resource: String,
    },
    /// GitHub answered a redirect the endpoint did not follow (or that led outside the
    /// App's API).
    Redirected {
        status: u16,
        location: Option<String>,
        route: String,
    },
    /// No usable answer after the retries: transport failures or 5xx.
    Unreachable { detail: String },
    /// An answer that is not what GitHub documents.
    Protocol { detail: String },
    /// The App JWT could not be signed: nothing was sent (the signer may come back).
    Signer { signer: String, detail: String },
}

impl ApiError {
    /// True for failures of GitHub rather than of the request: worth serving from cache.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. } | ApiError::Unreachable { .. } | ApiError::Signer { .. }
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
            ApiError::RateLimited {
                until,
                route,
                bucket,
                resource,
            } => {
                format!(
                    "rate limited by GitHub until {} ({route}; {bucket}, resource {resource})",
                    Timestamp::from(*until)
                )
            }
            ApiError::Redirected {
                status,
                location,
                route,
            } => format!(
                "HTTP {status} from {route}: GitHub redirected to {}, which was not followed",
                location.as_deref().unwrap_or("(no Location)")
            ),
            ApiError::Unreachable { detail } | ApiError::Protocol { detail } => detail.clone(),
            ApiError::Signer { signer, detail } => {
                format!("cannot sign the App JWT: signer {signer}: {detail}")
            }
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

    /// GitHub's answer as data: its status (when it answered), the route, and its message (or
    /// what went wrong on the way).
    pub(crate) fn answer(&self) -> (Option<u16>, Option<String>, String) {
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
            } => (Some(*status), Some(route.clone()), message.clone()),
            ApiError::RateLimited { route, .. } => (None, Some(route.clone()), self.detail()),
            ApiError::Redirected { status, route, .. } => {
                (Some(*status), Some(route.clone()), self.detail())
            }
            ApiError::Unreachable { detail } | ApiError::Protocol { detail } => {
                (None, None, detail.clone())
            }
            ApiError::Signer { .. } => (None, None, self.detail()),
        }
    }
}
