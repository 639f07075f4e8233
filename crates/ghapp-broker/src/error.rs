//! The broker's error: a kind the daemon maps to an HTTP status, a message a person can act on,
//! and the same facts as data — the App, the installation, the target and what GitHub answered
//! (status, route, message), modelled on ghinstallation's `HTTPError` — so the daemon's audit
//! line and metrics can record them on failures as they do on grants. Messages and fields never
//! contain a token or key byte (tokens appear only as fingerprints).

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
/// Besides the message it carries what it is about as data, each `None` when not known or not
/// involved: [`app`](Self::app), [`installation_id`](Self::installation_id),
/// [`target`](Self::target), and GitHub's answer ([`github_status`](Self::github_status),
/// [`github_route`](Self::github_route), [`github_message`](Self::github_message)).
///
/// `Clone` because one failed mint is reported to every caller that waited on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BrokerError {
    /// The kind, for status mapping and tests.
    pub kind: ErrorKind,
    /// The actionable message.
    pub message: String,
    context: Box<ErrorContext>,
}

/// What a [`BrokerError`] is about (boxed: errors travel by value through every layer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ErrorContext {
    app: Option<String>,
    installation_id: Option<u64>,
    target: Option<String>,
    github: Option<GitHubAnswer>,
}

/// What GitHub answered to the call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GitHubAnswer {
    /// HTTP status, when GitHub answered at all.
    status: Option<u16>,
    /// `POST /app/installations/{id}/access_tokens`.
    route: Option<String>,
    /// GitHub's `message` (or what went wrong on the way).
    message: String,
}

impl BrokerError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BrokerError {
            kind,
            message: message.into(),
            context: Box::default(),
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

    /// The same error saying `message` instead (its kind and data kept).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Names the App (its configured name) the error is about.
    pub fn with_app(mut self, app: impl Into<String>) -> Self {
        self.context.app = Some(app.into());
        self
    }

    /// Names the installation the error is about.
    pub fn with_installation(mut self, installation_id: u64) -> Self {
        self.context.installation_id = Some(installation_id);
        self
    }

    /// Names what was asked for (`acme/widgets`, `account acme`), unless already named.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.context.target.get_or_insert_with(|| target.into());
        self
    }

    /// Records GitHub's answer: its status (when it answered), the route and its message.
    pub fn with_github(
        mut self,
        status: Option<u16>,
        route: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        self.context.github = Some(GitHubAnswer {
            status,
            route,
            message: message.into(),
        });
        self
    }

    /// The App's configured name, when one App was involved.
    pub fn app(&self) -> Option<&str> {
        self.context.app.as_deref()
    }

    /// The installation, when one was involved.
    pub fn installation_id(&self) -> Option<u64> {
        self.context.installation_id
    }

    /// What was asked for: `acme/widgets`, `account acme` or `host github.com`.
    pub fn target(&self) -> Option<&str> {
        self.context.target.as_deref()
    }

    /// GitHub's HTTP status, when the failure is GitHub's answer.
    pub fn github_status(&self) -> Option<u16> {
        self.context.github.as_ref().and_then(|g| g.status)
    }

    /// The GitHub route that failed (`POST /app/installations/{id}/access_tokens`).
    pub fn github_route(&self) -> Option<&str> {
        self.context
            .github
            .as_ref()
            .and_then(|g| g.route.as_deref())
    }

    /// GitHub's `message`, or what went wrong on the way to GitHub.
    pub fn github_message(&self) -> Option<&str> {
        self.context.github.as_ref().map(|g| g.message.as_str())
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

    #[test]
    fn context_is_data_and_survives_a_new_message() {
        let e = BrokerError::forbidden("refused")
            .with_app("acme-bot")
            .with_installation(100)
            .with_target("acme/widgets")
            .with_target("ignored: already named")
            .with_github(
                Some(403),
                Some("POST /app/installations/100/access_tokens".into()),
                "Resource not accessible by integration",
            )
            .with_message("refused, with more to say");
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert_eq!(e.to_string(), "refused, with more to say");
        assert_eq!(e.app(), Some("acme-bot"));
        assert_eq!(e.installation_id(), Some(100));
        assert_eq!(e.target(), Some("acme/widgets"));
        assert_eq!(e.github_status(), Some(403));
        assert_eq!(
            e.github_route(),
            Some("POST /app/installations/100/access_tokens")
        );
        assert_eq!(
            e.github_message(),
            Some("Resource not accessible by integration")
        );
        let plain = BrokerError::bad_request("bad");
        assert_eq!((plain.app(), plain.github_status()), (None, None));
    }
}
