//! The broker's error: a kind the daemon maps to an HTTP status, and a message a person can act
//! on. Messages name the App, the installation and the repository involved and quote what GitHub
//! said; they never contain a token or key byte (tokens appear only as fingerprints).

/// What kind of failure a [`BrokerError`] is; the daemon maps each to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is malformed (400).
    BadRequest,
    /// No App serves this host, or the App is not installed on the owner/repo (404).
    NotFound,
    /// More than one installation could serve an owner-less request (409).
    Ambiguous,
    /// A permission beyond the ceiling, or GitHub refused the narrowing (422).
    Unprocessable,
    /// Suspended installation, owner outside the App's `owners`, GitHub said forbidden (403).
    Forbidden,
    /// GitHub unreachable / failing and nothing cached with enough life (503).
    Unavailable,
    /// The App's key or JWT was rejected, or another internal failure (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status the daemon answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Ambiguous => 409,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// A typed, actionable broker error. Its `Display` is the message callers see, e.g.
/// "GitHub App acme-bot (id 12345) is not installed on acme/widgets". Never holds a secret.
///
/// `Clone` because one failed mint is reported to every caller that waited on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BrokerError {
    /// The kind, for status mapping and tests.
    pub kind: ErrorKind,
    /// The actionable message.
    pub message: String,
}

impl BrokerError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BrokerError {
            kind,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// 404: nothing serves this host, owner or repository.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// 409: an owner-less request matches several installations.
    pub fn ambiguous(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Ambiguous, message)
    }

    /// 422: beyond a ceiling, or refused by GitHub as asked.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, message)
    }

    /// 403: refused (suspended, outside `owners`, GitHub said forbidden).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// 503: GitHub is failing or unreachable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// 500: a rejected App key, or a failure of ghapp itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_socket_contract() {
        assert_eq!(ErrorKind::BadRequest.http_status(), 400);
        assert_eq!(ErrorKind::Forbidden.http_status(), 403);
        assert_eq!(ErrorKind::NotFound.http_status(), 404);
        assert_eq!(ErrorKind::Ambiguous.http_status(), 409);
        assert_eq!(ErrorKind::Unprocessable.http_status(), 422);
        assert_eq!(ErrorKind::Internal.http_status(), 500);
        assert_eq!(ErrorKind::Unavailable.http_status(), 503);
    }

    #[test]
    fn display_is_the_message() {
        let e =
            BrokerError::not_found("GitHub App acme-bot (id 1) is not installed on acme/widgets");
        assert_eq!(
            e.to_string(),
            "GitHub App acme-bot (id 1) is not installed on acme/widgets"
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
    }
}
