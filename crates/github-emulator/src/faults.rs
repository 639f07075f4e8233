//! Active route faults (status, latency, drop) and how a request is matched against them.

use crate::admin::FaultServer;
use http::StatusCode;

/// What a route fault does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this status.
    Status {
        /// The status.
        status: StatusCode,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
        /// Message override.
        message: Option<String>,
    },
    /// Add latency.
    Latency(std::time::Duration),
    /// Close the connection.
    Drop,
}

/// One active route fault.
#[derive(Debug, Clone)]
pub struct RouteFault {
    /// Route glob (`None` = every request).
    pub route: Option<String>,
    /// Which server.
    pub server: FaultServer,
    /// Remaining uses (`None` = unlimited).
    pub remaining: Option<u64>,
    /// What it does.
    pub action: Action,
}

/// What the matching faults decided for one request.
#[derive(Debug, Default)]
pub struct Decision {
    /// Total added latency.
    pub latency: std::time::Duration,
    /// Close without answering.
    pub drop: bool,
    /// Answer with a fixed status.
    pub status: Option<(StatusCode, Option<u64>, Option<String>)>,
}

/// The active route faults, in the order they were added.
#[derive(Debug, Default)]
pub struct RouteFaults {
    faults: Vec<RouteFault>,
}

impl RouteFaults {
    /// Adds a fault.
    pub fn add(&mut self, fault: RouteFault) {
        self.faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// Number of active faults.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// Whether there are none (the common fast path).
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Matches a request (`"METHOD /path"` and `"METHOD pattern"`), consuming one use of each
    /// fault that fires. Every matching latency fault adds up; the first matching drop or status
    /// fault fires (drop wins over status).
    pub fn decide(
        &mut self,
        server: FaultServer,
        request: &str,
        pattern: Option<&str>,
    ) -> Decision {
        let mut decision = Decision::default();
        for fault in &mut self.faults {
            if fault.server != server || fault.remaining == Some(0) {
                continue;
            }
            let matches = match &fault.route {
                None => true,
                Some(glob) => {
                    glob_match(glob, request) || pattern.is_some_and(|p| glob_match(glob, p))
                }
            };
            if !matches {
                continue;
            }
            let fires = match &fault.action {
                Action::Latency(d) => {
                    decision.latency += *d;
                    true
                }
                Action::Drop if !decision.drop && decision.status.is_none() => {
                    decision.drop = true;
                    true
                }
                Action::Status {
                    status,
                    retry_after,
                    message,
                } if !decision.drop && decision.status.is_none() => {
                    decision.status = Some((*status, *retry_after, message.clone()));
                    true
                }
                _ => false,
            };
            if fires && let Some(n) = fault.remaining.as_mut() {
                *n -= 1;
            }
        }
        self.faults.retain(|f| f.remaining != Some(0));
        decision
    }
}

/// Glob match where `*` matches any run of characters (including `/`); everything else is
/// literal.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    while gi < g.len() && g[gi] == b'*' {
        gi += 1;
    }
    gi == g.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "POST /app/installations/*/access_tokens",
            "POST /app/installations/100/access_tokens"
        ));
        assert!(glob_match("*", "GET /"));
        assert!(glob_match("GET *", "GET /app/installations/1"));
        assert!(!glob_match("GET /app", "GET /app/installations"));
        assert!(glob_match(
            "*access_tokens",
            "POST /app/installations/1/access_tokens"
        ));
        assert!(!glob_match("POST *", "GET /app"));
    }

    #[test]
    fn times_are_consumed_and_drop_beats_status() {
        let mut faults = RouteFaults::default();
        faults.add(RouteFault {
            route: Some("GET /app".into()),
            server: FaultServer::Api,
            remaining: Some(1),
            action: Action::Drop,
        });
        faults.add(RouteFault {
            route: None,
            server: FaultServer::Api,
            remaining: Some(2),
            action: Action::Status {
                status: StatusCode::BAD_GATEWAY,
                retry_after: None,
                message: None,
            },
        });
        let first = faults.decide(FaultServer::Api, "GET /app", Some("GET /app"));
        assert!(first.drop && first.status.is_none());
        let second = faults.decide(FaultServer::Api, "GET /app", Some("GET /app"));
        assert!(!second.drop && second.status.is_some());
        assert!(
            faults
                .decide(FaultServer::Git, "GET /x", None)
                .status
                .is_none()
        );
        assert!(
            faults
                .decide(FaultServer::Api, "GET /", None)
                .status
                .is_some()
        );
        assert!(faults.is_empty());
    }
}
