//! GitHub's Enterprise layout as clients address the proxy — `/api/v3/…` for REST and
//! `/api/graphql` — mapped to what is forwarded, with the account a path belongs to (which
//! installation's token serves it).

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// A REST path without the `/api/v3` prefix (`/repos/acme/widgets`), no query.
    Rest(String),
    /// `/api/graphql`.
    Graphql,
}

/// Why a path is refused before anything else looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// Not under `/api/v3` or `/api/graphql`.
    NotApi,
    /// A `.`/`..` or empty segment, or an encoded `/`, `.` or `\`: what a scope saw would not
    /// be what GitHub gets once the URL is normalised.
    Ambiguous,
}

impl ApiPath {
    /// Classifies a request path (no query).
    pub fn parse(path: &str) -> Result<ApiPath, PathProblem> {
        if path == "/api/graphql" {
            return Ok(ApiPath::Graphql);
        }
        let rest = if path == "/api/v3" || path == "/api/v3/" {
            "/"
        } else {
            path.strip_prefix("/api/v3").ok_or(PathProblem::NotApi)?
        };
        if !rest.starts_with('/') {
            return Err(PathProblem::NotApi);
        }
        let trimmed = if rest.len() > 1 {
            rest.trim_end_matches('/')
        } else {
            rest
        };
        if trimmed.len() > 1 {
            for segment in trimmed[1..].split('/') {
                let lower = segment.to_ascii_lowercase();
                if segment.is_empty()
                    || segment == "."
                    || segment == ".."
                    || segment.contains('\\')
                    || lower.contains("%2f")
                    || lower.contains("%2e")
                    || lower.contains("%5c")
                {
                    return Err(PathProblem::Ambiguous);
                }
            }
        }
        Ok(ApiPath::Rest(trimmed.to_string()))
    }

    /// The path scopes are matched against: the REST path, or `/graphql`.
    pub fn scope_path(&self) -> &str {
        match self {
            ApiPath::Rest(path) => path,
            ApiPath::Graphql => "/graphql",
        }
    }

    /// The account the path names (`/repos/{owner}/…`, `/orgs/{org}…`, `/users/{user}…`),
    /// lower-cased; `None` for owner-less paths and GraphQL.
    pub fn owner(&self) -> Option<String> {
        let ApiPath::Rest(path) = self else {
            return None;
        };
        let mut segments = path.trim_start_matches('/').split('/');
        let first = segments.next()?;
        let owner = segments.next()?;
        let named = matches!(first, "repos" | "orgs" | "users");
        (named && !owner.is_empty()).then(|| owner.to_ascii_lowercase())
    }

    /// The repository `/repos/{owner}/{repo}…` names, lower-cased; `None` for other paths.
    pub fn repository(&self) -> Option<String> {
        let ApiPath::Rest(path) = self else {
            return None;
        };
        let mut segments = path.trim_start_matches('/').split('/');
        let (first, _owner, repo) = (segments.next()?, segments.next()?, segments.next()?);
        (first == "repos" && !repo.is_empty()).then(|| repo.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(
            ApiPath::parse("/api/v3/repos/Acme/widgets/"),
            Ok(ApiPath::Rest("/repos/Acme/widgets".into()))
        );
        assert_eq!(ApiPath::parse("/api/v3"), Ok(ApiPath::Rest("/".into())));
        assert_eq!(ApiPath::parse("/api/graphql"), Ok(ApiPath::Graphql));
        assert_eq!(ApiPath::parse("/repos/a/b"), Err(PathProblem::NotApi));
        assert_eq!(ApiPath::parse("/api/v3x/a"), Err(PathProblem::NotApi));
        for bad in [
            "/api/v3/repos/acme/../../orgs/x",
            "/api/v3/repos/acme/%2e%2E/x",
            "/api/v3/repos//x",
            "/api/v3/repos/acme%2Fx",
        ] {
            assert_eq!(ApiPath::parse(bad), Err(PathProblem::Ambiguous), "{bad}");
        }
        let p = ApiPath::parse("/api/v3/repos/Acme/widgets/pulls").expect("p");
        assert_eq!(p.owner().as_deref(), Some("acme"));
        assert_eq!(p.repository().as_deref(), Some("widgets"));
        assert_eq!(
            ApiPath::parse("/api/v3/orgs/acme/repos")
                .expect("p")
                .repository(),
            None
        );
        assert_eq!(
            ApiPath::parse("/api/v3/repos/acme")
                .expect("p")
                .repository(),
            None
        );
        assert_eq!(
            ApiPath::parse("/api/v3/rate_limit").expect("p").owner(),
            None
        );
        assert_eq!(ApiPath::Graphql.owner(), None);
    }
}
