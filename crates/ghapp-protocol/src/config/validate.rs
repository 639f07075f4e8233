//! Checks a parsed config for values serde cannot judge alone — one key source per App, an
//! issuer, plausible durations, plain http only on loopback, the daemon's own keys, the
//! `[[client]]` and `[[oidc]]` identities and every `[[policy]]` entry — and normalises hosts to lower case. Each problem carries the key
//! path so the caller can name its line. Nothing here does I/O: what needs the system (a group
//! name's gid, a key file) is resolved by the binary that uses it, which names the key through
//! [`Config::error_at`](super::Config::error_at).

use super::locate::Seg;
use super::schema::{
    AppConfig, CacheConfig, Config, DaemonConfig, NetworkConfig, PolicyConfig, ProxyConfig,
    RunnersConfig, SignerKind, UpstreamConfig,
};
use crate::api::{check_host, check_name};
use crate::duration::format_duration;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The most connections `max_connections` may allow: each holds a task and a small buffer.
pub const MAX_CONNECTIONS_LIMIT: usize = 65_536;

/// GitHub installation tokens live one hour; a token must be refreshed while it still has more
/// than `min_ttl` left, with room for retries, so `min_ttl + refresh_ahead` must stay under this.
pub(crate) const MAX_MIN_TTL_PLUS_REFRESH_AHEAD: Duration = Duration::from_secs(55 * 60);

/// One thing wrong with the config.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// Where it is (for the line number).
    pub path: Vec<Seg>,
    /// What it is about, as people read it: `daemon.min_ttl`, `app[0] (acme-bot)`.
    pub subject: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn key(name: &str) -> Seg {
    Seg::Key(name.to_string())
}

impl Config {
    /// The policy entries in force and how the file spells their table: `[[policy]]`, or the
    /// older `[[daemon.policy]]` (the same model; validation refuses a file with both).
    pub fn policies(&self) -> (&'static str, &[PolicyConfig]) {
        if self.policy.is_empty() && !self.daemon.policy.is_empty() {
            ("[[daemon.policy]]", &self.daemon.policy)
        } else {
            ("[[policy]]", &self.policy)
        }
    }
}

/// Every problem in `config`; hosts are lower-cased in place.
pub(crate) fn validate(config: &mut Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    validate_daemon(&config.daemon, &mut problems);
    if let Some(cache) = &config.cache {
        validate_cache(cache, &mut problems);
    }
    if let Some(upstream) = &mut config.upstream {
        let app_hosts: Vec<String> = config
            .apps
            .iter()
            .map(|a| a.host.to_ascii_lowercase())
            .collect();
        validate_upstream(upstream, &app_hosts, &mut problems);
    }
    if let Some(network) = &config.network {
        validate_network(network, &mut problems);
    }
    let app_hosts: Vec<String> = config
        .apps
        .iter()
        .filter_map(|app| check_host(&app.host).ok())
        .collect();
    validate_identities(config, &mut problems);
    let clients: Vec<String> = config.clients.iter().map(|c| c.name.clone()).collect();
    let issuers: Vec<String> = config.oidc.iter().map(|o| o.issuer.clone()).collect();
    let known = Known {
        app_hosts: &app_hosts,
        clients: &clients,
        issuers: &issuers,
    };
    if !config.policy.is_empty() && !config.daemon.policy.is_empty() {
        problems.push(Problem {
            path: vec![key("daemon"), key("policy"), Seg::Index(0)],
            subject: "daemon.policy".to_string(),
            message: "the file has both [[policy]] and [[daemon.policy]] entries: they are one list, and its order decides which entry applies, so write every entry as [[policy]]".into(),
        });
    }
    for (table, entries) in [
        (vec!["daemon", "policy"], &mut config.daemon.policy),
        (vec!["policy"], &mut config.policy),
    ] {
        let spelled = table.join(".");
        for (index, entry) in entries.iter_mut().enumerate() {
            let subject = format!("{spelled}[{index}]");
            let mut report = |field: &str, message: String| {
                let mut path: Vec<Seg> = table.iter().map(|k| key(k)).collect();
                path.push(Seg::Index(index));
                let mut subject = subject.clone();
                if !field.is_empty() {
                    path.push(key(field));
                    subject = format!("{subject}.{field}");
                }
                problems.push(Problem {
                    path,
                    subject,
                    message,
                });
            };
            validate_policy(entry, &known, &mut report);
        }
    }
    if let Some(runners) = &config.runners {
        validate_runners(runners, &mut problems);
    }
    let mut names = HashSet::new();
    for (index, app) in config.apps.iter_mut().enumerate() {
        let subject = if app.name.is_empty() {
            format!("app[{index}]")
        } else {
            format!("app[{index}] ({})", app.name)
        };
        let mut report = |field: Option<&str>, message: String| {
            let mut path = vec![key("app"), Seg::Index(index)];
            if let Some(field) = field {
                path.push(key(field));
            }
            problems.push(Problem {
                path,
                subject: subject.clone(),
                message,
            });
        };
        validate_app(app, &mut report);
        if !app.name.is_empty() && !names.insert(app.name.clone()) {
            report(
                Some("name"),
                format!(
                    "name {:?} is used by an earlier [[app]]: names must be unique",
                    app.name
                ),
            );
        }
    }
    if let Some(proxy) = &config.proxy {
        validate_proxy(proxy, &app_hosts, &mut problems);
    }
    problems
}

fn validate_daemon(daemon: &DaemonConfig, problems: &mut Vec<Problem>) {
    let mut report = table_reporter("daemon", problems);
    let human = |d: Duration| format_duration(d);
    if daemon.min_ttl.is_zero() {
        report(
            "min_ttl",
            "must be more than 0s (the default is 30m)".into(),
        );
    }
    let sum = daemon.min_ttl.saturating_add(daemon.refresh_ahead);
    if sum >= MAX_MIN_TTL_PLUS_REFRESH_AHEAD {
        report(
            "min_ttl",
            format!(
                "min_ttl ({}) + refresh_ahead ({}) must stay under {}: installation tokens live one hour and are refreshed when they have less than min_ttl + refresh_ahead left",
                human(daemon.min_ttl),
                human(daemon.refresh_ahead),
                human(MAX_MIN_TTL_PLUS_REFRESH_AHEAD)
            ),
        );
    }
    if daemon.degraded_min_ttl.is_zero() {
        report(
            "degraded_min_ttl",
            "must be more than 0s: an expired token is never served".into(),
        );
    }
    if daemon.degraded_min_ttl > daemon.min_ttl {
        report(
            "degraded_min_ttl",
            format!(
                "degraded_min_ttl ({}) must not exceed min_ttl ({}): it is the smaller margin accepted while GitHub is failing",
                human(daemon.degraded_min_ttl),
                human(daemon.min_ttl)
            ),
        );
    }
    for (field, value) in [
        ("request_timeout", daemon.request_timeout),
        ("connect_timeout", daemon.connect_timeout),
        ("retry_budget", daemon.retry_budget),
        ("client_timeout", daemon.client_timeout),
    ] {
        if value.is_zero() {
            report(field, "must be more than 0s".into());
        }
    }
    if daemon.max_connections == 0 || daemon.max_connections > MAX_CONNECTIONS_LIMIT {
        report(
            "max_connections",
            format!(
                "must be between 1 and {MAX_CONNECTIONS_LIMIT} (got {})",
                daemon.max_connections
            ),
        );
    }
    if let Some(owner) = &daemon.default_owner
        && let Err(e) = check_name("owner", owner)
    {
        report("default_owner", e.to_string());
    }
    if let Some(group) = &daemon.socket_group
        && (group.is_empty()
            || group.len() > 64
            || group
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control()))
    {
        report(
            "socket_group",
            format!("socket_group {group:?} is not a group name or gid"),
        );
    }
}

/// Reports a problem with `field` of the top-level table `table` (`[daemon]`, `[cache]`…).
fn table_reporter<'a>(
    table: &'static str,
    problems: &'a mut Vec<Problem>,
) -> impl FnMut(&str, String) + 'a {
    move |field, message| {
        problems.push(Problem {
            path: vec![key(table), key(field)],
            subject: format!("{table}.{field}"),
            message,
        })
    }
}

/// `[cache]`: a Redis URL the client understands, TLS extras only with TLS.
fn validate_cache(cache: &CacheConfig, problems: &mut Vec<Problem>) {
    let mut report = table_reporter("cache", problems);
    let tls = cache.redis_url.starts_with("rediss://");
    if !tls && !cache.redis_url.starts_with("redis://") {
        // The URL may carry a password: only its scheme is repeated.
        let scheme = cache.redis_url.split("://").next().unwrap_or_default();
        report(
            "redis_url",
            format!("must start with redis:// or rediss:// (TLS), not {scheme:?}"),
        );
    } else if cache.redis_url.len() <= "rediss://".len() - usize::from(!tls) {
        report("redis_url", "names no host (redis://HOST:PORT)".into());
    }
    if cache.timeout.is_zero() || cache.timeout > Duration::from_secs(5) {
        report(
            "timeout",
            format!(
                "must be more than 0s and at most 5s (got {}): every request that misses waits up to this for Redis",
                format_duration(cache.timeout)
            ),
        );
    }
    if cache.peer_wait.is_zero() || cache.peer_wait > Duration::from_secs(10) {
        report(
            "peer_wait",
            format!(
                "must be more than 0s and at most 10s, a claim's life (got {})",
                format_duration(cache.peer_wait)
            ),
        );
    }
    if cache.ca_file.is_some() && !tls {
        report(
            "ca_file",
            "is for rediss:// (TLS) only; this redis_url is plain redis://".into(),
        );
    }
}

/// `[upstream]`: where, with which identity, for which hosts (lower-cased in place; none also
/// served by an `[[app]]`).
fn validate_upstream(
    upstream: &mut UpstreamConfig,
    app_hosts: &[String],
    problems: &mut Vec<Problem>,
) {
    let mut report = table_reporter("upstream", problems);
    let url = upstream.url.trim_end_matches('/');
    let authority = |rest: &str| rest.split('/').next().unwrap_or_default().to_string();
    if let Some(rest) = url.strip_prefix("http://") {
        if !is_loopback(&authority(rest)) {
            report(
                "url",
                format!(
                    "{url} is plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost): this host's identity and its tokens would cross the network in clear text; use https"
                ),
            );
        }
    } else if let Some(rest) = url.strip_prefix("https://") {
        if authority(rest).is_empty() || url.contains(['?', '#', ' ', '@']) {
            report(
                "url",
                format!("{url:?} is not a base URL like https://broker.internal:8443"),
            );
        }
    } else {
        report(
            "url",
            format!("{url:?} must start with https:// (like https://broker.internal:8443)"),
        );
    }
    match (&upstream.id_token_file, &upstream.client_key_file) {
        (Some(_), None) | (None, Some(_)) => {}
        (None, None) => report(
            "id_token_file",
            "the broker must know who asks: set id_token_file (a projected service-account token) or client_key_file".into(),
        ),
        (Some(_), Some(_)) => report(
            "client_key_file",
            "set id_token_file or client_key_file, not both".into(),
        ),
    }
    if upstream.hosts.is_empty() {
        report("hosts", "names no host (default: [\"github.com\"])".into());
    }
    for host in &mut upstream.hosts {
        match check_host(host) {
            Ok(lower) => {
                if app_hosts.contains(&lower) {
                    report(
                        "hosts",
                        format!(
                            "{lower} is also served by an [[app]]: a host's tokens come from one place"
                        ),
                    );
                }
                *host = lower;
            }
            Err(e) => report("hosts", e.to_string()),
        }
    }
}

/// `[network]`: every `listen` entry an `ADDR:PORT` (IP literals only: no name is resolved),
/// none twice, TLS files in pairs, and plain HTTP only on loopback addresses — a token never
/// crosses a network in clear text, so a daemon told otherwise refuses to start. (The key file's
/// mode is checked where it is read, as an App key's is.)
fn validate_network(network: &NetworkConfig, problems: &mut Vec<Problem>) {
    let mut report = |field: &str, index: Option<usize>, message: String| {
        let mut path = vec![key("network"), key(field)];
        let mut subject = format!("network.{field}");
        if let Some(index) = index {
            path.push(Seg::Index(index));
            subject = format!("{subject}[{index}]");
        }
        problems.push(Problem {
            path,
            subject,
            message,
        });
    };
    let tls = match (&network.tls_cert_file, &network.tls_key_file) {
        (Some(_), Some(_)) => true,
        (None, None) => false,
        (Some(_), None) => {
            report(
                "tls_cert_file",
                None,
                "tls_cert_file needs tls_key_file, the certificate's private key".into(),
            );
            true
        }
        (None, Some(_)) => {
            report(
                "tls_key_file",
                None,
                "tls_key_file needs tls_cert_file, the certificate chain of the key".into(),
            );
            true
        }
    };
    if network.listen.is_empty() {
        report(
            "listen",
            None,
            "names no address: add listen = [\"127.0.0.1:8080\"] (or remove [network])".into(),
        );
    }
    let mut seen = HashSet::new();
    for (index, text) in network.listen.iter().enumerate() {
        let Ok(address) = text.parse::<SocketAddr>() else {
            report(
                "listen",
                Some(index),
                format!(
                    "{text:?} is not ADDR:PORT: an IP address and a port, such as 0.0.0.0:8443, [::]:8443 or 127.0.0.1:8080 (host names are not resolved)"
                ),
            );
            continue;
        };
        if !seen.insert(address) {
            report("listen", Some(index), format!("{address} is listed twice"));
        }
        if !tls && !address.ip().is_loopback() {
            report(
                "listen",
                Some(index),
                format!(
                    "{address} is not a loopback address, and plain HTTP is served only on loopback (127.0.0.0/8, ::1): set tls_cert_file and tls_key_file to serve it with TLS (docs/network.md), or listen on 127.0.0.1"
                ),
            );
        }
    }
}

#[cfg(test)]
mod network_tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/ghapp/config.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn plain_http_is_refused_off_loopback_with_the_line() {
        let err =
            parse("[network]\nlisten = [\"127.0.0.1:8080\", \"0.0.0.0:8443\"]\n").unwrap_err();
        assert!(
            err.contains("line 2: network.listen[1]: 0.0.0.0:8443 is not a loopback address, and plain HTTP is served only on loopback"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        parse("[network]\nlisten = [\"127.0.0.1:0\", \"[::1]:8080\"]\n").unwrap();
        parse("[network]\nlisten = [\"0.0.0.0:8443\", \"[::]:8443\"]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n").unwrap();
    }

    #[test]
    fn addresses_tls_pairs_and_duplicates_are_checked() {
        let err = parse("[network]\nlisten = [\"localhost:80\", \"127.0.0.1:1\", \"127.0.0.1:1\"]\ntls_cert_file = \"c.pem\"\n").unwrap_err();
        assert!(
            err.contains("network.tls_cert_file: tls_cert_file needs tls_key_file"),
            "{err}"
        );
        assert!(
            err.contains("network.listen[0]: \"localhost:80\" is not ADDR:PORT"),
            "{err}"
        );
        assert!(
            err.contains("network.listen[2]: 127.0.0.1:1 is listed twice"),
            "{err}"
        );
        let err = parse("[network]\nlisten = []\n").unwrap_err();
        assert!(err.contains("network.listen: names no address"), "{err}");
    }
}

/// What policy entries may name: the `[[app]]` hosts, `[[client]]` names, `[[oidc]]` issuers.
struct Known<'a> {
    app_hosts: &'a [String],
    clients: &'a [String],
    issuers: &'a [String],
}

/// The `[[client]]` and `[[oidc]]` tables: unique names and issuers, well-formed digests and
/// URLs (https, or http to a loopback address only).
fn validate_identities(config: &Config, problems: &mut Vec<Problem>) {
    let mut report = |table: &str, index: usize, field: &str, message: String| {
        problems.push(Problem {
            path: vec![key(table), Seg::Index(index), key(field)],
            subject: format!("{table}[{index}].{field}"),
            message,
        });
    };
    let mut names = HashSet::new();
    for (index, client) in config.clients.iter().enumerate() {
        if client.name.is_empty()
            || client.name.len() > 64
            || client
                .name
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            report(
                "client",
                index,
                "name",
                "name must be 1 to 64 printable characters without spaces".into(),
            );
        } else if !names.insert(client.name.as_str()) {
            report(
                "client",
                index,
                "name",
                format!(
                    "name {:?} is used by an earlier [[client]]: names must be unique",
                    client.name
                ),
            );
        }
        let digest = &client.key_sha256;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Never echo the value: a key pasted here by mistake must not reach a log.
            report(
                "client",
                index,
                "key_sha256",
                format!(
                    "key_sha256 must be 64 hex characters (the SHA-256 of the key, as `ghapp client-key new {}` prints it), not the key itself ({} characters given)",
                    if client.name.is_empty() {
                        "NAME"
                    } else {
                        &client.name
                    },
                    digest.len()
                ),
            );
        }
    }
    let mut issuers = HashSet::new();
    for (index, oidc) in config.oidc.iter().enumerate() {
        if let Err(message) = check_https_url("issuer", &oidc.issuer) {
            report("oidc", index, "issuer", message);
        } else if !issuers.insert(oidc.issuer.as_str()) {
            report(
                "oidc",
                index,
                "issuer",
                format!(
                    "issuer {} is configured by an earlier [[oidc]]: one entry per issuer",
                    oidc.issuer
                ),
            );
        }
        if oidc.audience.trim().is_empty() {
            report(
                "oidc",
                index,
                "audience",
                "audience is empty: name the `aud` the tokens are minted for (like \"ghapp\")"
                    .into(),
            );
        }
        if let Some(url) = &oidc.jwks_url
            && let Err(message) = check_https_url("jwks_url", url)
        {
            report("oidc", index, "jwks_url", message);
        }
    }
}

/// An `https://` URL, or `http://` to a loopback address (a test issuer on this machine).
fn check_https_url(field: &str, url: &str) -> Result<(), String> {
    let rest = match url.split_once("://") {
        Some(("https", rest)) => rest,
        Some(("http", rest)) => {
            let authority = rest.split('/').next().unwrap_or_default();
            if !is_loopback(authority) {
                return Err(format!(
                    "{field} {url} is plain http to a host that is not loopback: keys fetched in clear text could be replaced on the way; use https"
                ));
            }
            rest
        }
        _ => {
            return Err(format!(
                "{field} {url:?} must be an https:// URL (like https://token.actions.githubusercontent.com)"
            ));
        }
    };
    if rest.split('/').next().unwrap_or_default().is_empty() || url.contains(['?', '#', ' ']) {
        return Err(format!(
            "{field} {url:?} is not a URL like https://host/path"
        ));
    }
    Ok(())
}

/// One `[[policy]]` (or `[[daemon.policy]]`) entry: exactly one selector, `subject`/`claims`
/// only with `issuer`, names that exist, a parseable address range, then its grants.
fn validate_policy(entry: &mut PolicyConfig, known: &Known, report: &mut impl FnMut(&str, String)) {
    let app_hosts = known.app_hosts;
    validate_runner_policy(entry, report);
    let local = entry.uid.is_some() || entry.gid.is_some();
    let selectors = [
        local,
        entry.client.is_some(),
        entry.address.is_some(),
        entry.issuer.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if selectors == 0 {
        report(
            "",
            "the entry names neither uid nor gid, client, address or issuer: set exactly one of them (uid may be narrowed by gid)".into(),
        );
    } else if selectors > 1 {
        report(
            "",
            "the entry sets more than one of uid/gid, client, address and issuer: an entry selects callers by exactly one (write one entry per kind of caller)".into(),
        );
    }
    if entry.issuer.is_none() {
        for (field, set) in [
            ("subject", entry.subject.is_some()),
            ("claims", entry.claims.is_some()),
        ] {
            if set {
                report(
                    field,
                    format!("{field} applies to ID tokens only: add issuer = \"…\" or remove it"),
                );
            }
        }
    }
    if let Some(scopes) = &entry.proxy_scopes {
        if entry.client.is_none() && entry.issuer.is_none() {
            report(
                "proxy_scopes",
                "proxy_scopes applies to client and issuer entries: the API proxy admits callers by their credential only".into(),
            );
        } else if scopes.is_empty() {
            report(
                "proxy_scopes",
                "proxy_scopes is empty: name what the entry may ask of the proxy ({ method = \"*\", path = \"^/\" } for everything), or remove it".into(),
            );
        }
        if let Some(scope) = scopes.iter().find(|scope| !is_scope_method(&scope.method)) {
            report(
                "proxy_scopes",
                format!(
                    "method {:?} is not an HTTP method (GET, POST, …) or *",
                    scope.method
                ),
            );
        }
    }
    if let Some(client) = &entry.client
        && !known.clients.contains(client)
    {
        report(
            "client",
            format!("client {client:?} is not the name of any [[client]]"),
        );
    }
    if let Some(issuer) = &entry.issuer
        && !known.issuers.contains(issuer)
    {
        report(
            "issuer",
            format!(
                "issuer {issuer} is not configured by any [[oidc]] (their issuers: {})",
                known.issuers.join(", ")
            ),
        );
    }
    if let Some(address) = &entry.address
        && let Err(message) = parse_address_range(address)
    {
        report("address", message);
    }
    if let Some(claims) = &entry.claims {
        for name in claims.keys() {
            if name.is_empty() || name.split('.').any(str::is_empty) {
                report(
                    "claims",
                    format!("claim name {name:?} is not a claim or a dotted path to one"),
                );
            }
        }
    }
    for owner in entry.owners.iter().flatten() {
        if owner != "*"
            && let Err(e) = check_name("owner", owner)
        {
            report("owners", e.to_string());
        }
    }
    for item in entry.repos.iter().flatten() {
        let well_formed = item.split_once('/').is_some_and(|(owner, repo)| {
            check_name("owner", owner).is_ok() && (repo == "*" || check_name("repo", repo).is_ok())
        });
        if !well_formed {
            report(
                "repos",
                format!("repos item {item:?} is not OWNER/REPO or OWNER/*"),
            );
        }
    }
    if let Some(ceiling) = &entry.permissions
        && ceiling.is_empty()
    {
        report(
            "permissions",
            "permissions = {} would read as \"no ceiling\" and grant everything the App has: list what this peer may have, like { contents = \"read\", metadata = \"read\" }, or remove the key to leave the peer unlimited by permission".into(),
        );
    }
    if let Some(hosts) = &mut entry.hosts {
        if hosts.is_empty() {
            report(
                "hosts",
                "hosts is empty: remove it to allow every host, or list hosts like [\"github.com\"]".into(),
            );
        }
        for host in hosts.iter_mut() {
            match check_host(host) {
                Ok(lower) if app_hosts.contains(&lower) => *host = lower,
                Ok(lower) => report(
                    "hosts",
                    format!(
                        "host {lower} is not served by any [[app]] (their hosts: {})",
                        app_hosts.join(", ")
                    ),
                ),
                Err(e) => report("hosts", e.to_string()),
            }
        }
    }
}

/// A scope's method: `*`, or an HTTP method's letters.
fn is_scope_method(method: &str) -> bool {
    method == "*"
        || (!method.is_empty()
            && method.len() <= 16
            && method.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// The most bytes `[proxy] cache_bytes` may name (16 GiB): the cache lives in the daemon's memory.
const MAX_PROXY_CACHE_BYTES: u64 = 16 << 30;

/// `[proxy]`, its `[[proxy.client]]`s and `[[proxy.credential]]`s. The scope regular
/// expressions are compiled (and refused) by the proxy when the daemon starts.
fn validate_proxy(proxy: &ProxyConfig, app_hosts: &[String], problems: &mut Vec<Problem>) {
    let mut report = |path: Vec<Seg>, subject: String, message: String| {
        let mut full = vec![key("proxy")];
        full.extend(path);
        problems.push(Problem {
            path: full,
            subject,
            message,
        });
    };
    let tls = proxy.tls_cert_file.is_some() && proxy.tls_key_file.is_some();
    if proxy.tls_cert_file.is_some() != proxy.tls_key_file.is_some() {
        report(
            Vec::new(),
            "proxy".into(),
            "set both tls_cert_file and tls_key_file (TLS), or neither (plain HTTP on loopback)"
                .into(),
        );
    }
    match proxy.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if !tls && !addr.ip().is_loopback() => report(
            vec![key("listen")],
            "proxy.listen".into(),
            format!(
                "{addr} is not a loopback address: without tls_cert_file and tls_key_file the proxy serves plain HTTP, so client keys would cross the network in clear text; listen on 127.0.0.1 or [::1], or set both"
            ),
        ),
        Ok(_) => {}
        Err(_) => report(
            vec![key("listen")],
            "proxy.listen".into(),
            format!("{:?} is not ADDR:PORT (like 127.0.0.1:8081)", proxy.listen),
        ),
    }
    match &proxy.upstream_host {
        Some(host) => match check_host(host) {
            Ok(lower) if app_hosts.contains(&lower) => {}
            Ok(lower) => report(
                vec![key("upstream_host")],
                "proxy.upstream_host".into(),
                format!(
                    "{lower} is not the host of any [[app]] (their hosts: {})",
                    app_hosts.join(", ")
                ),
            ),
            Err(e) => report(
                vec![key("upstream_host")],
                "proxy.upstream_host".into(),
                e.to_string(),
            ),
        },
        None if app_hosts.is_empty() => report(
            Vec::new(),
            "proxy".into(),
            "the proxy needs an [[app]]: its host is the GitHub the proxy forwards to".into(),
        ),
        None => {}
    }
    if let Some(owner) = &proxy.default_installation
        && let Err(e) = check_name("owner", owner)
    {
        report(
            vec![key("default_installation")],
            "proxy.default_installation".into(),
            e.to_string(),
        );
    }
    if proxy.cache_ttl.is_zero() {
        report(
            vec![key("cache_ttl")],
            "proxy.cache_ttl".into(),
            "must be more than 0s (the default is 1h)".into(),
        );
    }
    if proxy.cache_fresh_for > proxy.cache_ttl {
        report(
            vec![key("cache_fresh_for")],
            "proxy.cache_fresh_for".into(),
            format!(
                "cache_fresh_for ({}) must not exceed cache_ttl ({})",
                format_duration(proxy.cache_fresh_for),
                format_duration(proxy.cache_ttl)
            ),
        );
    }
    if proxy.cache_bytes == 0 || proxy.cache_bytes > MAX_PROXY_CACHE_BYTES {
        report(
            vec![key("cache_bytes")],
            "proxy.cache_bytes".into(),
            format!(
                "must be between 1 and {MAX_PROXY_CACHE_BYTES} (got {})",
                proxy.cache_bytes
            ),
        );
    }
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (index, client) in proxy.clients.iter().enumerate() {
        let at = |field: &str| vec![key("client"), Seg::Index(index), key(field)];
        let subject = format!("proxy.client[{index}]");
        if client.name.trim().is_empty()
            || client.name.len() > 64
            || client.name.chars().any(char::is_control)
        {
            report(
                at("name"),
                subject.clone(),
                "name must be 1 to 64 printable characters".into(),
            );
        } else if !names.insert(client.name.clone()) {
            report(
                at("name"),
                subject.clone(),
                format!(
                    "name {:?} is used by an earlier [[proxy.client]]",
                    client.name
                ),
            );
        }
        let digest = &client.key_sha256;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            report(
                at("key_sha256"),
                subject.clone(),
                "key_sha256 must be 64 hex digits: the SHA-256 of the client's key (`printf %s KEY | sha256sum`), never the key".into(),
            );
        } else if !keys.insert(digest.to_ascii_lowercase()) {
            report(
                at("key_sha256"),
                subject.clone(),
                "the same key_sha256 as an earlier [[proxy.client]]: each client needs its own key"
                    .into(),
            );
        }
        for (scope_index, scope) in client.scopes.iter().enumerate() {
            if !is_scope_method(&scope.method) {
                report(
                    vec![
                        key("client"),
                        Seg::Index(index),
                        key("scopes"),
                        Seg::Index(scope_index),
                    ],
                    format!("{subject}.scopes[{scope_index}]"),
                    format!(
                        "method {:?} is not an HTTP method (GET, POST, …) or *",
                        scope.method
                    ),
                );
            }
            if scope.path.is_empty() {
                report(
                    vec![
                        key("client"),
                        Seg::Index(index),
                        key("scopes"),
                        Seg::Index(scope_index),
                    ],
                    format!("{subject}.scopes[{scope_index}]"),
                    "path is empty: give a regular expression like \"^/repos/acme/\"".into(),
                );
            }
        }
    }
    let mut credential_names = HashSet::new();
    for (index, credential) in proxy.credentials.iter().enumerate() {
        let at = |field: &str| vec![key("credential"), Seg::Index(index), key(field)];
        let subject = format!("proxy.credential[{index}]");
        let var = &credential.token_env;
        if var.is_empty() || var.contains(['=', '\0']) {
            report(
                at("token_env"),
                subject.clone(),
                format!("token_env {var:?} is not an environment variable name"),
            );
        }
        let name = credential.name.clone().unwrap_or_else(|| var.clone());
        if !credential_names.insert(name.clone()) {
            report(
                at("name"),
                subject,
                format!("credential name {name:?} is used twice: names must be unique"),
            );
        }
    }
}

/// `[runners]`.
fn validate_runners(runners: &RunnersConfig, problems: &mut Vec<Problem>) {
    let mut report = table_reporter("runners", problems);
    if let Some(owner) = &runners.owner
        && let Err(e) = check_name("owner", owner)
    {
        report("owner", e.to_string());
    }
    if let Some(database) = &runners.database
        && !database.is_absolute()
    {
        report(
            "database",
            format!(
                "database {} is relative: give an absolute path (or remove the key for runners.sqlite3 in the daemon's state directory)",
                database.display()
            ),
        );
    }
    if runners.cleanup_after.is_zero() {
        report(
            "cleanup_after",
            "cleanup_after must be more than 0s (24h is the default)".into(),
        );
    }
    if runners.sync_interval < Duration::from_millis(100) {
        report(
            "sync_interval",
            "sync_interval must be at least 100ms (60s is the default; GitHub counts every list call against the rate limit)".into(),
        );
    }
}

/// `runner_groups` and `runner_labels` of a policy entry.
fn validate_runner_policy(entry: &PolicyConfig, report: &mut impl FnMut(&str, String)) {
    if entry.runner_groups.as_ref().is_some_and(Vec::is_empty) {
        report(
            "runner_groups",
            "runner_groups is empty: remove it to allow every group, or list group ids like [1]"
                .into(),
        );
    }
    if let Some(labels) = &entry.runner_labels {
        if labels.is_empty() {
            report(
                "runner_labels",
                "runner_labels is empty: remove it to allow every label, or list labels (globs with *) like [\"linux-*\"]".into(),
            );
        }
        for label in labels {
            if label.is_empty()
                || label.len() > 100
                || !label.bytes().all(|b| b.is_ascii_graphic() && b != b',')
            {
                report(
                    "runner_labels",
                    format!(
                        "runner_labels item {label:?}: 1–100 printable characters without spaces or commas"
                    ),
                );
            }
        }
    }
}

fn validate_app(app: &mut AppConfig, report: &mut impl FnMut(Option<&str>, String)) {
    if app.name.trim().is_empty() {
        report(
            Some("name"),
            "name is empty: give each App a label for logs and errors".into(),
        );
    } else if app.name.len() > 64 || app.name.chars().any(char::is_control) {
        report(
            Some("name"),
            "name must be at most 64 printable characters".into(),
        );
    }
    match check_host(&app.host) {
        Ok(host) => app.host = host,
        Err(e) => report(Some("host"), format!("host: {e}")),
    }
    if app.app_id.is_none() && app.client_id.is_none() {
        report(
            None,
            "neither app_id nor client_id is set: copy them from the App's settings page on GitHub"
                .into(),
        );
    }
    if app.app_id == Some(0) {
        report(Some("app_id"), "app_id must be a positive number".into());
    }
    if let Some(client_id) = &app.client_id
        && (client_id.is_empty()
            || client_id.len() > 64
            || !client_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    {
        report(
            Some("client_id"),
            format!(
                "client_id {client_id:?} is not a GitHub client id (like Iv23li0123456789abcd)"
            ),
        );
    }
    validate_signing(app, report);
    if let Some(var) = &app.private_key_env
        && (var.is_empty() || var.contains(['=', '\0']))
    {
        report(
            Some("private_key_env"),
            format!("private_key_env {var:?} is not an environment variable name"),
        );
    }
    if let Some(argv) = &app.private_key_command
        && argv.first().is_none_or(|program| program.is_empty())
    {
        report(
            Some("private_key_command"),
            "private_key_command must be a non-empty list: program then arguments (run without a shell)".into(),
        );
    }
    if let Some(owners) = &app.owners {
        if owners.is_empty() {
            report(
                Some("owners"),
                "owners is empty: remove it to serve every account, or list accounts".into(),
            );
        }
        for owner in owners {
            if owner != "*"
                && let Err(e) = check_name("owner", owner)
            {
                report(Some("owners"), format!("owners: {e}"));
            }
        }
    }
    if let Some(ceiling) = &app.permissions
        && ceiling.is_empty()
    {
        report(
            Some("permissions"),
            "permissions is empty: remove it to allow what the installation grants, or list a ceiling like { contents = \"read\" }".into(),
        );
    }
    if let Some(url) = &app.api_url
        && let Err(message) = check_api_url(url)
    {
        report(Some("api_url"), message);
    }
    if app.insecure_http && !is_loopback(&app.host) {
        report(
            Some("insecure_http"),
            format!(
                "insecure_http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost), not {}: git would send tokens over the network in clear text",
                app.host
            ),
        );
    }
}

/// Parses a policy's `address`: a CIDR range (`10.0.0.0/8`, `fd00::/8`) or one address (a
/// range of one). Host bits set beyond the prefix are refused: `10.1.2.3/8` is most likely a
/// mistake for `10.1.2.3/32` or `10.0.0.0/8`.
pub fn parse_address_range(text: &str) -> Result<ipnet::IpNet, String> {
    let net = match text.parse::<ipnet::IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(addr) => ipnet::IpNet::from(addr),
            Err(_) => {
                return Err(format!(
                    "address {text:?} is not a CIDR range like 10.0.0.0/8 or fd00::/8, nor an address"
                ));
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "address {text} has bits set past its /{} prefix: write {} (the whole range) or the address alone",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(net)
}

/// True for `localhost`, an address in 127.0.0.0/8 or `::1`, with or without a port
/// (`host[:port]`, `[v6][:port]`).
fn is_loopback(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(host, _)| host)
    } else if authority.matches(':').count() > 1 {
        authority
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6 == Ipv6Addr::LOCALHOST,
        Err(_) => false,
    }
}

/// An `https://` base URL, or `http://` to a loopback address (an emulator on this machine):
/// plain http never carries the App's JWT or its tokens across a network.
fn check_api_url(url: &str) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if !is_loopback(host) {
            return Err(format!(
                "api_url {url} is plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost): the App's JWT and tokens would cross the network in clear text; use https (plain http is for an emulator on this machine only)"
            ));
        }
        rest
    } else {
        return Err(format!(
            "api_url {url:?} must start with https:// (like https://ghe.example.com/api/v3)"
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || url.contains(['?', '#', ' ']) {
        return Err(format!(
            "api_url {url:?} is not a base URL like https://ghe.example.com/api/v3"
        ));
    }
    Ok(())
}

/// Who signs the App JWT: exactly one PEM source, or a `signer` with the keys it needs and
/// no PEM source; the keys of a signer not in use are mistakes (a typo'd `signer`), as is
/// more than one `next_*` key.
fn validate_signing(app: &AppConfig, report: &mut impl FnMut(Option<&str>, String)) {
    let pem_sources = [
        app.private_key_file.is_some(),
        app.private_key_env.is_some(),
        app.private_key_command.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    match app.signer {
        None if pem_sources == 0 => report(
            None,
            "no private key: set one of private_key_file, private_key_env or private_key_command, or a signer (docs/keys.md)"
                .into(),
        ),
        None if pem_sources > 1 => report(
            None,
            "more than one private key source: set exactly one of private_key_file, private_key_env or private_key_command".into(),
        ),
        Some(kind) if pem_sources > 0 => report(
            Some("signer"),
            format!(
                "signer = \"{}\" signs without a private key in ghapp: remove private_key_file, private_key_env and private_key_command",
                kind.as_str()
            ),
        ),
        _ => {}
    }
    let uses = |kind: SignerKind| app.signer == Some(kind);
    let pkcs11 = uses(SignerKind::Pkcs11) || app.next_pkcs11_key_label.is_some();
    let kms = uses(SignerKind::AwsKms) || app.next_kms_key_id.is_some();
    let mut need = |set: bool, field: &str, why: &str| {
        if !set {
            report(None, format!("{why} needs {field}"));
        }
    };
    if uses(SignerKind::Command) {
        need(
            app.sign_command.is_some(),
            "sign_command",
            "signer = \"command\"",
        );
    }
    if pkcs11 {
        need(
            app.pkcs11_module.is_some(),
            "pkcs11_module",
            "a PKCS#11 key",
        );
        need(
            app.pkcs11_token_label.is_some(),
            "pkcs11_token_label",
            "a PKCS#11 key",
        );
    }
    if uses(SignerKind::Pkcs11) {
        need(
            app.pkcs11_key_label.is_some(),
            "pkcs11_key_label",
            "signer = \"pkcs11\"",
        );
    }
    if uses(SignerKind::AwsKms) {
        need(
            app.kms_key_id.is_some(),
            "kms_key_id",
            "signer = \"aws_kms\"",
        );
    }
    let unused: [(&str, bool, bool); 8] = [
        (
            "sign_command",
            app.sign_command.is_some(),
            uses(SignerKind::Command),
        ),
        ("pkcs11_module", app.pkcs11_module.is_some(), pkcs11),
        (
            "pkcs11_token_label",
            app.pkcs11_token_label.is_some(),
            pkcs11,
        ),
        (
            "pkcs11_key_label",
            app.pkcs11_key_label.is_some(),
            uses(SignerKind::Pkcs11),
        ),
        ("pkcs11_pin_env", app.pkcs11_pin_env.is_some(), pkcs11),
        ("pkcs11_pin_file", app.pkcs11_pin_file.is_some(), pkcs11),
        (
            "kms_key_id",
            app.kms_key_id.is_some(),
            uses(SignerKind::AwsKms),
        ),
        ("kms_endpoint_url", app.kms_endpoint_url.is_some(), kms),
    ];
    for (field, set, used) in unused {
        if set && !used {
            report(
                Some(field),
                format!(
                    "{field} is set but no key of this App uses it: check signer (docs/keys.md)"
                ),
            );
        }
    }
    if app.pkcs11_pin_env.is_some() && app.pkcs11_pin_file.is_some() {
        report(
            None,
            "set at most one of pkcs11_pin_env and pkcs11_pin_file".into(),
        );
    }
    for (field, argv) in [
        ("sign_command", &app.sign_command),
        ("next_sign_command", &app.next_sign_command),
    ] {
        if let Some(argv) = argv
            && argv.first().is_none_or(|program| program.is_empty())
        {
            report(
                Some(field),
                format!(
                    "{field} must be a non-empty list: program then arguments (run without a shell)"
                ),
            );
        }
    }
    if let Some(url) = &app.kms_endpoint_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        report(
            Some("kms_endpoint_url"),
            format!("kms_endpoint_url {url:?} must be an http(s) URL"),
        );
    }
    if app.sign_timeout.is_zero() {
        report(
            Some("sign_timeout"),
            "sign_timeout must be more than 0s".into(),
        );
    }
    let next_keys = [
        app.next_private_key_file.is_some(),
        app.next_sign_command.is_some(),
        app.next_pkcs11_key_label.is_some(),
        app.next_kms_key_id.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if next_keys > 1 {
        report(
            None,
            "more than one next key: set at most one of next_private_key_file, next_sign_command, next_pkcs11_key_label and next_kms_key_id".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/ghapp/config.toml")).map_err(|e| e.to_string())
    }

    const GOOD_APP: &str =
        "[[app]]\nname = \"acme-bot\"\napp_id = 12345\nprivate_key_file = \"/k.pem\"\n";

    #[test]
    fn a_signer_replaces_the_pem_key_and_needs_its_own_keys() {
        let base = "[[app]]\nname = \"a\"\napp_id = 1\n";
        let ok = parse(&format!(
            "{base}signer = \"command\"\nsign_command = [\"/usr/bin/sign\"]\nsign_timeout = \"2s\"\nnext_private_key_file = \"/n.pem\"\n"
        ))
        .unwrap();
        assert_eq!(ok.apps[0].signer, Some(crate::config::SignerKind::Command));
        assert_eq!(ok.apps[0].sign_timeout, Duration::from_secs(2));
        let err = parse(&format!(
            "{base}signer = \"command\"\nprivate_key_file = \"/k.pem\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains(
                "line 4: app[0] (a): signer = \"command\" signs without a private key in ghapp"
            ),
            "{err}"
        );
        assert!(
            err.contains("signer = \"command\" needs sign_command"),
            "{err}"
        );
        let err = parse(&format!(
            "{base}signer = \"pkcs11\"\npkcs11_module = \"/m.so\"\npkcs11_key_label = \"k\"\nkms_key_id = \"x\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("a PKCS#11 key needs pkcs11_token_label"),
            "{err}"
        );
        assert!(
            err.contains("kms_key_id is set but no key of this App uses it"),
            "{err}"
        );
        let err = parse(&format!("{base}signer = \"gpg\"\n")).unwrap_err();
        assert!(err.contains("signer"), "{err}");
        let err = parse(&format!(
            "{GOOD_APP}next_private_key_file = \"/n.pem\"\nnext_sign_command = [\"x\"]\n"
        ))
        .unwrap_err();
        assert!(err.contains("more than one next key"), "{err}");
    }

    #[test]
    fn minimal_app_is_valid_and_defaults_apply() {
        let config = parse(GOOD_APP).unwrap();
        assert_eq!(config.apps[0].host, "github.com");
        assert_eq!(config.apps[0].api_base(), "https://api.github.com");
        assert_eq!(config.daemon.min_ttl, Duration::from_secs(1800));
        assert_eq!(config.daemon.degraded_min_ttl, Duration::from_secs(300));
        assert_eq!(config.apps[0].issuer().as_deref(), Some("12345"));
    }

    #[test]
    fn missing_identity_names_file_line_and_app() {
        let err =
            parse("\n[[app]]\nname = \"acme-bot\"\nprivate_key_file = \"/k.pem\"\n").unwrap_err();
        assert_eq!(
            err,
            "config /etc/ghapp/config.toml line 2: app[0] (acme-bot): neither app_id nor client_id is set: copy them from the App's settings page on GitHub"
        );
    }

    #[test]
    fn unknown_key_names_line_and_path() {
        let err = parse(&format!("{GOOD_APP}colour = \"blue\"\n")).unwrap_err();
        assert!(
            err.starts_with("config /etc/ghapp/config.toml line 5: app[0]"),
            "{err}"
        );
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_value_names_its_key() {
        let err = parse("[daemon]\nmin_ttl = \"soon\"\n").unwrap_err();
        assert!(
            err.starts_with("config /etc/ghapp/config.toml line 2: daemon.min_ttl"),
            "{err}"
        );
        let err = parse(&format!(
            "{GOOD_APP}permissions = {{ contents = \"owner\" }}\n"
        ))
        .unwrap_err();
        assert!(err.contains("line 5: app[0].permissions"), "{err}");
        assert!(err.contains("owner"), "{err}");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let err = parse("[daemon]\nmin_ttl = = 3\n").unwrap_err();
        assert!(
            err.starts_with("config /etc/ghapp/config.toml line 2"),
            "{err}"
        );
    }

    #[test]
    fn exactly_one_key_source() {
        let err = parse("[[app]]\nname = \"a\"\napp_id = 1\n").unwrap_err();
        assert!(err.contains("no private key"), "{err}");
        let err = parse("[[app]]\nname = \"a\"\napp_id = 1\nprivate_key_file = \"/k\"\nprivate_key_env = \"K\"\n").unwrap_err();
        assert!(err.contains("more than one private key source"), "{err}");
        let err =
            parse("[[app]]\nname = \"a\"\napp_id = 1\nprivate_key_command = []\n").unwrap_err();
        assert!(
            err.contains("line 4: app[0] (a): private_key_command must be a non-empty list"),
            "{err}"
        );
    }

    #[test]
    fn several_problems_reported_together() {
        let err = parse("[daemon]\nmin_ttl = \"50m\"\nrefresh_ahead = \"10m\"\n[[app]]\nname = \"a\"\n[[app]]\nname = \"a\"\napp_id = 2\nprivate_key_env = \"K\"\n")
            .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 4, "{err}");
        assert!(lines[0].contains(
            "line 2: daemon.min_ttl: min_ttl (50m) + refresh_ahead (10m) must stay under 55m"
        ));
        assert!(lines[1].contains("app[0] (a): neither app_id nor client_id"));
        assert!(lines[2].contains("app[0] (a): no private key"));
        assert!(lines[3].contains("line 7: app[1] (a): name \"a\" is used by an earlier [[app]]"));
    }

    #[test]
    fn plain_http_api_only_on_loopback() {
        let app = |api: &str| {
            format!(
                "[[app]]\nname = \"e\"\nhost = \"github.com\"\napp_id = 1\nprivate_key_env = \"K\"\napi_url = \"{api}\"\n"
            )
        };
        let err = parse(&app("http://ghe.example.com/api/v3")).unwrap_err();
        assert!(
            err.contains("line 6: app[0] (e): api_url http://ghe.example.com/api/v3 is plain http to a host that is not loopback"),
            "{err}"
        );
        let ok = parse(&app("http://127.0.0.1:8/")).unwrap();
        assert_eq!(ok.apps[0].api_base(), "http://127.0.0.1:8");
        assert!(!ok.apps[0].insecure_http, "git over http stays off");
        let err = parse(
            "[[app]]\nname = \"e\"\napp_id = 1\nprivate_key_env = \"K\"\napi_url = \"ftp://x\"\n",
        )
        .unwrap_err();
        assert!(err.contains("must start with https://"), "{err}");
    }

    #[test]
    fn upstream_needs_one_identity_and_https() {
        let ok = parse("[upstream]\nurl = \"https://broker.internal:8443\"\nid_token_file = \"/var/run/secrets/tokens/ghapp\"\nhosts = [\"GitHub.com\"]\n").unwrap();
        let upstream = ok.upstream.unwrap();
        assert_eq!(upstream.hosts, ["github.com"]);
        assert!(ok.apps.is_empty(), "no [[app]]: no key on this host");
        let err = parse("[upstream]\nurl = \"http://broker.internal:8080\"\nid_token_file = \"/t\"\nclient_key_file = \"/k\"\n").unwrap_err();
        assert!(
            err.contains("upstream.url: http://broker.internal:8080 is plain http"),
            "{err}"
        );
        assert!(
            err.contains(
                "upstream.client_key_file: set id_token_file or client_key_file, not both"
            ),
            "{err}"
        );
        let err = parse("[upstream]\nurl = \"http://127.0.0.1:8080\"\n").unwrap_err();
        assert!(err.contains("the broker must know who asks"), "{err}");
        let err = parse(&format!(
            "{GOOD_APP}[upstream]\nurl = \"https://b\"\nclient_key_file = \"/k\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("github.com is also served by an [[app]]"),
            "{err}"
        );
    }

    #[test]
    fn cache_needs_a_redis_url_and_a_key_file() {
        let ok = parse(&format!(
            "{GOOD_APP}[cache]\nredis_url = \"rediss://:pw@redis.internal:6380/1\"\nencryption_key_file = \"/etc/ghapp/cache.key\"\nca_file = \"/ca.pem\"\n"
        ))
        .unwrap();
        assert_eq!(
            ok.cache.unwrap().encryption_key_file,
            PathBuf::from("/etc/ghapp/cache.key")
        );
        let err = parse("[cache]\nredis_url = \"http://:secret@r:6379\"\nencryption_key_file = \"/k\"\nca_file = \"/ca\"\n").unwrap_err();
        assert!(
            err.contains(
                "line 2: cache.redis_url: must start with redis:// or rediss:// (TLS), not \"http\""
            ),
            "{err}"
        );
        assert!(err.contains("cache.ca_file: is for rediss://"), "{err}");
        assert!(
            !err.contains("secret"),
            "the URL's password is not repeated: {err}"
        );
        let err = parse("[cache]\nredis_url = \"redis://r\"\nencryption_key_file = \"/k\"\ntimeout = \"1m\"\npeer_wait = 0\n").unwrap_err();
        assert!(
            err.contains("cache.timeout: must be more than 0s and at most 5s (got 1m)"),
            "{err}"
        );
        assert!(
            err.contains("cache.peer_wait: must be more than 0s"),
            "{err}"
        );
        let err = parse("[cache]\nredis_url = \"redis://r\"\n").unwrap_err();
        assert!(err.contains("encryption_key_file"), "{err}");
    }

    #[test]
    fn degraded_margin_and_durations() {
        let err = parse("[daemon]\nmin_ttl = \"10m\"\ndegraded_min_ttl = \"20m\"\n").unwrap_err();
        assert!(err.contains("line 3: daemon.degraded_min_ttl: degraded_min_ttl (20m) must not exceed min_ttl (10m)"), "{err}");
        let err = parse("[daemon]\nrequest_timeout = 0\n").unwrap_err();
        assert!(
            err.contains("daemon.request_timeout: must be more than 0s"),
            "{err}"
        );
        let ok =
            parse("[daemon]\nmin_ttl = \"5s\"\ndegraded_min_ttl = 2\nrefresh_ahead = \"3s\"\n")
                .unwrap();
        assert_eq!(ok.daemon.degraded_min_ttl, Duration::from_secs(2));
    }

    #[test]
    fn hosts_lowercased_and_checked() {
        let config = parse("[[app]]\nname = \"a\"\nhost = \"GHE.Example.com:8443\"\napp_id = 1\nprivate_key_env = \"K\"\n").unwrap();
        assert_eq!(config.apps[0].host, "ghe.example.com:8443");
        assert_eq!(
            config.apps[0].api_base(),
            "https://ghe.example.com:8443/api/v3"
        );
        let err = parse(
            "[[app]]\nname = \"a\"\nhost = \"https://x\"\napp_id = 1\nprivate_key_env = \"K\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("line 3: app[0] (a): host: invalid host"),
            "{err}"
        );
    }

    #[test]
    fn owners_and_ceiling_checked() {
        let err = parse(&format!("{GOOD_APP}owners = [\"acme\", \"no/pe\"]\n")).unwrap_err();
        assert!(err.contains("owners: invalid owner"), "{err}");
        let err = parse(&format!("{GOOD_APP}permissions = {{}}\n")).unwrap_err();
        assert!(err.contains("permissions is empty"), "{err}");
        let config = parse(&format!("{GOOD_APP}owners = [\"ACME\"]\n")).unwrap();
        assert!(config.apps[0].allows_owner("acme"));
        assert!(!config.apps[0].allows_owner("other"));
    }

    #[test]
    fn client_id_is_the_issuer_when_given() {
        let config = parse("[[app]]\nname = \"a\"\napp_id = 1\nclient_id = \"Iv23liABC\"\nprivate_key_env = \"K\"\n").unwrap();
        assert_eq!(config.apps[0].issuer().as_deref(), Some("Iv23liABC"));
        assert_eq!(config.apps[0].describe(), "a (id 1)");
        let err =
            parse("[[app]]\nname = \"a\"\nclient_id = \"has space\"\nprivate_key_env = \"K\"\n")
                .unwrap_err();
        assert!(err.contains("is not a GitHub client id"), "{err}");
    }

    #[test]
    fn api_urls_from_hosts() {
        use crate::config::api_url_for_host;
        assert_eq!(
            api_url_for_host("github.com", false),
            "https://api.github.com"
        );
        assert_eq!(
            api_url_for_host("GitHub.com", false),
            "https://api.github.com"
        );
        assert_eq!(
            api_url_for_host("octocorp.ghe.com", false),
            "https://api.octocorp.ghe.com"
        );
        assert_eq!(
            api_url_for_host("ghe.example.com", false),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            api_url_for_host("a.b.ghe.com", false),
            "https://a.b.ghe.com/api/v3"
        );
        assert_eq!(
            api_url_for_host("127.0.0.1:8080", true),
            "http://127.0.0.1:8080/api/v3"
        );
    }

    const POLICY_APP: &str = "[[app]]\nname = \"a\"\napp_id = 1\nprivate_key_env = \"K\"\n[[app]]\nname = \"e\"\nhost = \"ghe.example.com\"\napp_id = 2\nprivate_key_env = \"K\"\n";

    #[test]
    fn an_empty_policy_ceiling_is_refused_with_what_to_write() {
        let err = parse(&format!(
            "[[daemon.policy]]\nuid = 1001\npermissions = {{}}\n{POLICY_APP}"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("config /etc/ghapp/config.toml line 3: daemon.policy[0].permissions: permissions = {} would read as \"no ceiling\""),
            "{err}"
        );
        assert!(
            err.contains("contents = \"read\""),
            "says what to write: {err}"
        );
        parse(&format!(
            "[[daemon.policy]]\nuid = 1001\npermissions = {{ contents = \"read\" }}\n{POLICY_APP}"
        ))
        .unwrap();
    }

    #[test]
    fn policy_entries_are_validated_with_lines() {
        let err = parse(&format!(
            "[[daemon.policy]]\nowners = [\"a b\"]\nrepos = [\"nope\"]\n{POLICY_APP}"
        ))
        .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].contains("line 1: daemon.policy[0]: the entry names neither uid nor gid"),
            "{err}"
        );
        assert!(
            lines[1].contains("line 2: daemon.policy[0].owners: invalid owner"),
            "{err}"
        );
        assert!(
            lines[2]
                .contains("line 3: daemon.policy[0].repos: repos item \"nope\" is not OWNER/REPO"),
            "{err}"
        );
    }

    #[test]
    fn policy_hosts_are_checked_against_the_apps() {
        let config = parse(&format!(
            "[[daemon.policy]]\nuid = 1\nhosts = [\"GHE.example.com\"]\n{POLICY_APP}"
        ))
        .unwrap();
        assert_eq!(
            config.daemon.policy[0].hosts.as_deref(),
            Some(&["ghe.example.com".to_string()][..])
        );
        assert!(config.daemon.policy[0].hosts.is_some());
        let err = parse(&format!(
            "[[daemon.policy]]\nuid = 1\nhosts = [\"gitlab.com\"]\n{POLICY_APP}"
        ))
        .unwrap_err();
        assert!(
            err.contains("line 3: daemon.policy[0].hosts: host gitlab.com is not served by any [[app]] (their hosts: github.com, ghe.example.com)"),
            "{err}"
        );
        let err = parse(&format!(
            "[[daemon.policy]]\nuid = 1\nhosts = []\n{POLICY_APP}"
        ))
        .unwrap_err();
        assert!(err.contains("hosts is empty"), "{err}");
        let config = parse(&format!("[[daemon.policy]]\nuid = 1\n{POLICY_APP}")).unwrap();
        assert_eq!(config.daemon.policy[0].hosts, None, "default: every host");
    }

    #[test]
    fn insecure_http_only_on_loopback() {
        let app = |host: &str, api: &str| {
            format!(
                "[[app]]\nname = \"e\"\nhost = \"{host}\"\napp_id = 1\nprivate_key_env = \"K\"\napi_url = \"{api}\"\ninsecure_http = true\n"
            )
        };
        for (host, api) in [
            ("127.0.0.1:9", "http://127.0.0.1:8/"),
            ("127.1.2.3", "http://127.0.0.1:8"),
            ("localhost:9", "http://LOCALHOST:8/api/v3"),
            ("[::1]:9", "http://[::1]:8"),
            ("::1", "https://api.example.com"),
        ] {
            parse(&app(host, api)).unwrap_or_else(|e| panic!("{host} {api}: {e}"));
        }
        let err = parse(&app("ghe.example.com", "https://ghe.example.com/api/v3")).unwrap_err();
        assert!(
            err.contains("line 7: app[0] (e): insecure_http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost), not ghe.example.com"),
            "{err}"
        );
        for host in ["10.0.0.1:80", "128.0.0.1", "localhost.evil.com", "[::2]:9"] {
            assert!(
                parse(&app(host, "https://x.example"))
                    .unwrap_err()
                    .contains("insecure_http is allowed only"),
                "{host}"
            );
        }
        let err = parse(&app("127.0.0.1:9", "http://ghe.example.com/api/v3")).unwrap_err();
        assert!(
            err.contains("line 6: app[0] (e): api_url http://ghe.example.com/api/v3 is plain http to a host that is not loopback"),
            "{err}"
        );
        let err = parse(&app("127.0.0.1:9", "http://127.0.0.1@evil.example:8/")).unwrap_err();
        assert!(
            err.contains("not loopback"),
            "userinfo does not fool it: {err}"
        );
    }

    #[test]
    fn daemon_keys_are_validated_here_with_lines() {
        let err = parse("[daemon]\nclient_timeout = \"0s\"\nmax_connections = 0\ndefault_owner = \"a/b\"\nsocket_group = \"a:b\"\n")
            .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 4, "{err}");
        assert!(
            lines[0].contains("line 2: daemon.client_timeout: must be more than 0s"),
            "{err}"
        );
        assert!(
            lines[1]
                .contains("line 3: daemon.max_connections: must be between 1 and 65536 (got 0)"),
            "{err}"
        );
        assert!(
            lines[2].contains("line 4: daemon.default_owner: invalid owner"),
            "{err}"
        );
        assert!(
            lines[3].contains(
                "line 5: daemon.socket_group: socket_group \"a:b\" is not a group name or gid"
            ),
            "{err}"
        );
        let config =
            parse("[daemon]\ntrusted_uids = [991, 992]\nsocket_group = \"ghapp\"\n").unwrap();
        assert_eq!(config.daemon.trusted_uids, vec![991, 992]);
        assert_eq!(
            config
                .error_at("daemon.socket_group", "not found")
                .to_string(),
            "config /etc/ghapp/config.toml line 3: daemon.socket_group: not found"
        );
    }

    #[test]
    fn clients_read_socket_trusted_uids_and_hosts_only_from_a_trusted_file() {
        use crate::config::{ClientSettings, client_settings};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(client_settings(&path), None, "missing");
        std::fs::write(
            &path,
            format!("[daemon]\nsocket = \"/run/x.sock\"\ntrusted_uids = [991]\n{POLICY_APP}"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            client_settings(&path),
            Some(ClientSettings {
                socket: Some("/run/x.sock".into()),
                trusted_uids: vec![991],
                app_hosts: vec!["github.com".into(), "ghe.example.com".into()],
            })
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
        assert_eq!(
            client_settings(&path),
            None,
            "others may write it: never followed"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        for broken in [
            "[daemon]\nsocket = 42\n",
            "[daemon]\ntrusted_uids = [\"root\"]\n",
            "[[app]]\nname = \"a\"\nhost = \"a b\"\n",
            "[daemon\n",
        ] {
            std::fs::write(&path, broken).unwrap();
            assert_eq!(
                client_settings(&path),
                None,
                "a client key broken: falls through silently ({broken:?})"
            );
        }
        // The daemon's own keys are the daemon's (and doctor's) to refuse: a client reads its
        // three keys from a trusted file whatever else it holds.
        std::fs::write(
            &path,
            "[daemon]\nsocket = \"/run/x.sock\"\nbogus = 1\nmin_ttl = \"0s\"\n[[app]]\nname = \"a\"\nhost = \"GitHub.com\"\n",
        )
        .unwrap();
        assert!(Config::load(&path).is_err(), "the daemon refuses it");
        assert_eq!(
            client_settings(&path),
            Some(ClientSettings {
                socket: Some("/run/x.sock".into()),
                trusted_uids: vec![],
                app_hosts: vec!["github.com".into()],
            })
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert_eq!(
            client_settings(&path),
            None,
            "group may write it: never followed"
        );
    }

    const IDENTITIES: &str = "[[oidc]]\nissuer = \"https://token.actions.githubusercontent.com\"\naudience = \"ghapp\"\n[[client]]\nname = \"ci-bot\"\nkey_sha256 = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn every_selector_kind_is_accepted_once_per_entry() {
        let text = format!(
            "{IDENTITIES}[[policy]]\nclient = \"ci-bot\"\n[[policy]]\naddress = \"10.0.0.0/8\"\n[[policy]]\naddress = \"::1\"\n[[policy]]\nissuer = \"https://token.actions.githubusercontent.com\"\nsubject = \"repo:acme/*\"\nclaims = {{ repository_owner = \"acme\", \"kubernetes.io.namespace\" = \"ci-*\" }}\nmetrics = true\n[[policy]]\nuid = 1000\ngid = 100\n[[policy]]\ngid = 5\n{POLICY_APP}"
        );
        let config = parse(&text).unwrap();
        let (table, entries) = config.policies();
        assert_eq!((table, entries.len()), ("[[policy]]", 6));
        let old = parse(&format!("[[daemon.policy]]\nuid = 1\n{POLICY_APP}")).unwrap();
        assert_eq!(old.policies().0, "[[daemon.policy]]");
    }

    #[test]
    fn selectors_names_and_ranges_are_checked_with_lines() {
        let text = format!(
            "{IDENTITIES}[[policy]]\nuid = 1\nclient = \"ci-bot\"\n[[policy]]\nclient = \"nobody\"\n[[policy]]\naddress = \"10.1.2.3/8\"\n[[policy]]\naddress = \"ten\"\n[[policy]]\nissuer = \"https://other.example\"\n[[policy]]\nuid = 2\nsubject = \"x\"\n{POLICY_APP}"
        );
        let err = parse(&text).unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 6, "{err}");
        assert!(
            lines[0].contains("line 7: policy[0]: the entry sets more than one"),
            "{err}"
        );
        assert!(
            lines[1].contains(
                "line 11: policy[1].client: client \"nobody\" is not the name of any [[client]]"
            ),
            "{err}"
        );
        assert!(lines[2].contains("line 13: policy[2].address: address 10.1.2.3/8 has bits set past its /8 prefix: write 10.0.0.0/8"), "{err}");
        assert!(
            lines[3].contains("line 15: policy[3].address: address \"ten\" is not a CIDR range"),
            "{err}"
        );
        assert!(lines[4].contains("line 17: policy[4].issuer: issuer https://other.example is not configured by any [[oidc]]"), "{err}");
        assert!(
            lines[5].contains("line 20: policy[5].subject: subject applies to ID tokens only"),
            "{err}"
        );
        let none = parse(&format!("[[policy]]\nowners = [\"acme\"]\n{POLICY_APP}")).unwrap_err();
        assert!(
            none.contains(
                "line 1: policy[0]: the entry names neither uid nor gid, client, address or issuer"
            ),
            "{none}"
        );
    }

    #[test]
    fn both_policy_spellings_in_one_file_are_refused() {
        let err = parse(&format!(
            "[daemon]\n[[daemon.policy]]\nuid = 1\n[[policy]]\nuid = 2\n{POLICY_APP}"
        ))
        .unwrap_err();
        assert!(
            err.contains(
                "line 2: daemon.policy: the file has both [[policy]] and [[daemon.policy]] entries"
            ) && err.contains("write every entry as [[policy]]"),
            "{err}"
        );
    }

    #[test]
    fn clients_and_issuers_are_checked_and_keys_never_echoed() {
        let key = "ghk_this-is-a-secret-key-pasted-by-mistake";
        let text = format!(
            "[[client]]\nname = \"a\"\nkey_sha256 = \"{key}\"\n[[client]]\nname = \"a\"\nkey_sha256 = \"{}\"\n[[oidc]]\nissuer = \"http://issuer.example\"\naudience = \"\"\n[[oidc]]\nissuer = \"http://127.0.0.1:8080\"\naudience = \"ghapp\"\njwks_url = \"ftp://x\"\n{POLICY_APP}",
            "a".repeat(64)
        );
        let err = parse(&text).unwrap_err();
        assert!(!err.contains(key), "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines[0].contains("line 3: client[0].key_sha256: key_sha256 must be 64 hex characters"),
            "{err}"
        );
        assert!(
            lines[1]
                .contains("line 5: client[1].name: name \"a\" is used by an earlier [[client]]"),
            "{err}"
        );
        assert!(
            lines[2].contains("line 8: oidc[0].issuer: issuer http://issuer.example is plain http"),
            "{err}"
        );
        assert!(
            lines[3].contains("line 9: oidc[0].audience: audience is empty"),
            "{err}"
        );
        assert!(
            lines[4].contains(
                "line 13: oidc[1].jwks_url: jwks_url \"ftp://x\" must be an https:// URL"
            ),
            "{err}"
        );
        assert_eq!(lines.len(), 5, "loopback http issuer accepted: {err}");
    }
}
