//! A small router: route patterns are `"METHOD /path/{param}"` strings, which are also the keys of
//! the admin stats, so what is counted is exactly what is routed.

/// A route that matched, with its captured parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The pattern, e.g. `"GET /app/installations/{installation_id}"`.
    pub pattern: &'static str,
    /// Captured `{name}` segments in order.
    pub params: Vec<(&'static str, String)>,
}

impl Matched {
    /// A captured parameter.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// Matches `method` and `path` against `patterns`, first match wins.
pub fn route(patterns: &[&'static str], method: &str, path: &str) -> Option<Matched> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let request: Vec<&str> = path.split('/').collect();
    'next: for &pattern in patterns {
        let Some((pattern_method, pattern_path)) = pattern.split_once(' ') else {
            continue;
        };
        if pattern_method != method {
            continue;
        }
        let segments: Vec<&str> = pattern_path.split('/').collect();
        if segments.len() != request.len() {
            continue;
        }
        let mut params = Vec::new();
        for (segment, actual) in segments.iter().zip(&request) {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if actual.is_empty() {
                    continue 'next;
                }
                let decoded = percent_encoding::percent_decode_str(actual).decode_utf8_lossy();
                params.push((name, decoded.into_owned()));
            } else if segment != actual {
                continue 'next;
            }
        }
        return Some(Matched { pattern, params });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[&str] = &[
        "GET /",
        "GET /app",
        "GET /app/installations/{installation_id}",
        "POST /orgs/{org}/x",
    ];

    #[test]
    fn matches_literals_and_params() {
        assert_eq!(route(ROUTES, "GET", "/").map(|m| m.pattern), Some("GET /"));
        assert_eq!(
            route(ROUTES, "GET", "/app/").map(|m| m.pattern),
            Some("GET /app")
        );
        let m = route(ROUTES, "GET", "/app/installations/100").expect("match");
        assert_eq!(m.param("installation_id"), "100");
        assert!(route(ROUTES, "POST", "/app").is_none());
        assert!(route(ROUTES, "GET", "/app/installations/").is_none());
        assert_eq!(
            route(ROUTES, "POST", "/orgs/a%20b/x")
                .expect("m")
                .param("org"),
            "a b"
        );
    }
}
