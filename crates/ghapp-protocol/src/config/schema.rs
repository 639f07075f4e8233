//! The config file's schema: every table and key, with its default. Validation beyond what
//! serde checks lives in `validate`; how the file is read lives in the parent module.

use crate::permissions::Permissions;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the file was read from (set by [`Config::load`]); used in messages.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The text it was parsed from, so later checks (the daemon's, on values it resolves) can
    /// name the line of a key too.
    #[serde(skip)]
    pub(super) source: SourceText,
    /// `[daemon]`.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// `[[app]]`, one per GitHub App.
    #[serde(default, rename = "app")]
    pub apps: Vec<AppConfig>,
    /// `[network]`: the TCP (+TLS) listener; absent: the Unix socket only.
    pub network: Option<NetworkConfig>,
    /// `[[oidc]]`: issuers whose ID tokens identify callers.
    #[serde(default)]
    pub oidc: Vec<OidcConfig>,
    /// `[[client]]`: callers identified by a client key.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
    /// `[[policy]]`: who may have what, for every kind of caller (docs/policy.md). The older
    /// `[[daemon.policy]]` spelling is the same model; a file uses one or the other.
    #[serde(default)]
    pub policy: Vec<PolicyConfig>,
    /// `[cache]`: a token cache shared by broker replicas (Redis); absent: the daemon's own only.
    pub cache: Option<CacheConfig>,
    /// `[upstream]`: a central ghapp broker this daemon gets its tokens from (no key here).
    pub upstream: Option<UpstreamConfig>,
    /// `[proxy]`: the caching GitHub API proxy (docs/proxy.md); absent: no proxy.
    pub proxy: Option<ProxyConfig>,
    /// `[runners]`: the self-hosted runner service (docs/runners.md); absent: not served.
    pub runners: Option<RunnersConfig>,
}

/// `[upstream]`: the daemon holds no App key for these hosts and asks a central ghapp broker's
/// `/v1/token` instead, keeping its own cache, refresh-ahead and single-flight
/// (docs/scale-out.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The broker's network API (`https://broker.internal:8443`); plain http only to loopback.
    pub url: String,
    /// Extra PEM CA certificates to trust for it (a private CA).
    pub ca_file: Option<PathBuf>,
    /// A file holding this host's ID token (a projected service-account token), sent as
    /// `Authorization: Bearer`; read again for every request, as such tokens rotate.
    pub id_token_file: Option<PathBuf>,
    /// A file holding this host's client key (`[[client]]` on the broker), sent as
    /// `Authorization: Bearer` (read again for every request).
    pub client_key_file: Option<PathBuf>,
    /// The git hosts whose tokens come from the broker.
    #[serde(default = "defaults::upstream_hosts")]
    pub hosts: Vec<String>,
}

/// `[cache]`: broker replicas share their tokens and installation look-ups through Redis,
/// encrypted (docs/scale-out.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `redis://HOST:PORT[/DB]` or `rediss://…` (TLS); a password may be given in the URL.
    pub redis_url: String,
    /// 32 random bytes (`ghapp cache-key new FILE`), the same on every replica; refused if
    /// group or others can read it.
    pub encryption_key_file: PathBuf,
    /// Extra PEM CA certificates to trust for `rediss://` (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Longest one Redis command may take before this replica counts Redis as down and serves
    /// alone (until a probe gets an answer).
    #[serde(
        default = "defaults::cache_timeout",
        with = "crate::duration::serde_human"
    )]
    pub timeout: Duration,
    /// Longest a replica waits for the replica that claimed a key to store its token before it
    /// mints the key itself.
    #[serde(
        default = "defaults::cache_peer_wait",
        with = "crate::duration::serde_human"
    )]
    pub peer_wait: Duration,
}

/// `[runners]`: the self-hosted runner service and its SQLite database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnersConfig {
    /// The SQLite database; default `runners.sqlite3` in the daemon's state directory
    /// ([`crate::paths::daemon_state_dir`]).
    pub database: Option<PathBuf>,
    /// The organization runners are provisioned for when a request names none.
    pub owner: Option<String>,
    /// Runners offline (or never online) longer than this are deleted on GitHub by the sync.
    #[serde(
        default = "defaults::runners_cleanup_after",
        with = "crate::duration::serde_human"
    )]
    pub cleanup_after: Duration,
    /// How often the background sync reconciles the records with GitHub's runner lists.
    #[serde(
        default = "defaults::runners_sync_interval",
        with = "crate::duration::serde_human"
    )]
    pub sync_interval: Duration,
}

/// `[network]`: serve the API on TCP, with TLS unless the address is loopback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// `ADDR:PORT` to listen on (`0.0.0.0:8443`, `[::1]:8080`, `127.0.0.1:0` for any free port).
    pub listen: Vec<String>,
    /// PEM certificate chain; with `tls_key_file`, TLS on every address (reloaded on SIGHUP).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (refused if group/others can read it).
    pub tls_key_file: Option<PathBuf>,
    /// The ES256 key that signs `Accept: application/jwt` answers; generated (0600) when absent.
    /// Default: `answer-key.pem` in the daemon's state directory.
    pub answer_key_file: Option<PathBuf>,
    /// Mints a single identity may cause per minute (a token bucket; 429 beyond it). The
    /// default is far above what any normal caller does: it stops one caller from spending the
    /// App's GitHub rate limit, not ordinary use.
    #[serde(default = "defaults::mint_rate")]
    pub mint_rate: u32,
    /// How many mints an identity may cause at once before `mint_rate` applies.
    #[serde(default = "defaults::mint_burst")]
    pub mint_burst: u32,
    /// The most network connections (served and waiting) one source address may hold; absent:
    /// half of `max_connections`, so one host can never take every slot. `0` turns the limit
    /// off — behind a load balancer every connection comes from the balancer's address.
    pub max_connections_per_address: Option<usize>,
}

/// `[[oidc]]`: an OpenID Connect issuer whose ID tokens identify callers (GitHub Actions,
/// Kubernetes service accounts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` claim, exactly (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// The `aud` a token must carry (`ghapp`).
    pub audience: String,
    /// Where the issuer's keys are; default: `jwks_uri` of `ISSUER/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Extra PEM CA certificates to trust for the discovery document and the JWKS.
    pub ca_file: Option<PathBuf>,
}

/// `[[client]]`: a caller that presents a client key (`Authorization: Bearer KEY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The name policies select it by and logs show.
    pub name: String,
    /// Hex SHA-256 of the key (`ghapp client-key new NAME` prints both); never the key itself.
    pub key_sha256: String,
}

/// `[daemon]`: how the daemon serves and how long tokens must live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Socket path (see `crate::paths` for the full resolution order).
    pub socket: Option<PathBuf>,
    /// Group that may connect (socket mode becomes 0660 and the group is allowed).
    pub socket_group: Option<String>,
    /// Uids allowed to connect; default: the daemon's own uid and root.
    #[serde(default)]
    pub allow_uids: Vec<u32>,
    /// Gids allowed to connect.
    #[serde(default)]
    pub allow_gids: Vec<u32>,
    /// Uids besides the client's own and root that clients trust to answer on the socket (the
    /// uid a system daemon runs as). Read by clients only, through
    /// [`client_settings`](super::client_settings).
    #[serde(default)]
    pub trusted_uids: Vec<u32>,
    /// Never hand out a token with less life left than this.
    #[serde(default = "defaults::min_ttl", with = "crate::duration::serde_human")]
    pub min_ttl: Duration,
    /// How long "not installed" is remembered.
    #[serde(
        default = "defaults::negative_cache_ttl",
        with = "crate::duration::serde_human"
    )]
    pub negative_cache_ttl: Duration,
    /// How long an owner/repo → installation mapping is trusted before it is looked up again.
    #[serde(
        default = "defaults::installation_cache_ttl",
        with = "crate::duration::serde_human"
    )]
    pub installation_cache_ttl: Duration,
    /// Total timeout of one call to GitHub.
    #[serde(
        default = "defaults::request_timeout",
        with = "crate::duration::serde_human"
    )]
    pub request_timeout: Duration,
    /// Connect timeout to GitHub.
    #[serde(
        default = "defaults::connect_timeout",
        with = "crate::duration::serde_human"
    )]
    pub connect_timeout: Duration,
    /// Most time one GitHub operation (one mint, one look-up) may take across its retries and
    /// rate-limit waits; past it the operation fails and cached tokens keep serving.
    #[serde(
        default = "defaults::retry_budget",
        with = "crate::duration::serde_human"
    )]
    pub retry_budget: Duration,
    /// Background refresh starts when a token has less than `min_ttl + refresh_ahead` left, so
    /// a failing GitHub is retried for this long before any caller has to wait.
    #[serde(
        default = "defaults::refresh_ahead",
        with = "crate::duration::serde_human"
    )]
    pub refresh_ahead: Duration,
    /// A cached token is refreshed in the background only if it was served within this window
    /// ("recently used"); idle ones are left to expire and are then evicted.
    #[serde(
        default = "defaults::refresh_window",
        with = "crate::duration::serde_human"
    )]
    pub refresh_window: Duration,
    /// While GitHub is failing, cached tokens are still served down to this much life left
    /// (instead of `min_ttl`); below it the request fails with 503. Never an expired token.
    #[serde(
        default = "defaults::degraded_min_ttl",
        with = "crate::duration::serde_human"
    )]
    pub degraded_min_ttl: Duration,
    /// JSON-lines audit log (`-` for stderr); none when absent.
    pub audit_log: Option<PathBuf>,
    /// Per-uid/gid policy.
    #[serde(default)]
    pub policy: Vec<PolicyConfig>,
    /// The account the seed-compatible `GET /admin/github-installation-token` serves (with the
    /// first `[[app]]`'s host); absent: that host's only installation.
    pub default_owner: Option<String>,
    /// How long a client may take to send a request's head and body; an idle keep-alive
    /// connection is closed after it too.
    #[serde(
        default = "defaults::client_timeout",
        with = "crate::duration::serde_human"
    )]
    pub client_timeout: Duration,
    /// Connections served at once; more are answered 503 straight away.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: None,
            socket_group: None,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            trusted_uids: Vec::new(),
            min_ttl: defaults::min_ttl(),
            negative_cache_ttl: defaults::negative_cache_ttl(),
            installation_cache_ttl: defaults::installation_cache_ttl(),
            request_timeout: defaults::request_timeout(),
            connect_timeout: defaults::connect_timeout(),
            retry_budget: defaults::retry_budget(),
            refresh_ahead: defaults::refresh_ahead(),
            refresh_window: defaults::refresh_window(),
            degraded_min_ttl: defaults::degraded_min_ttl(),
            audit_log: None,
            policy: Vec::new(),
            default_owner: None,
            client_timeout: defaults::client_timeout(),
            max_connections: defaults::max_connections(),
        }
    }
}

/// `[[policy]]` (or the older `[[daemon.policy]]`): which callers an entry selects — by exactly
/// one of `uid` (optionally narrowed by `gid`), `gid`, `client`, `address` or `issuer` — and
/// what it grants them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Local callers on the Unix socket with this uid.
    pub uid: Option<u32>,
    /// Local callers with this (primary) gid; with `uid`, narrows that uid's entry to it.
    pub gid: Option<u32>,
    /// Callers presenting the key of this `[[client]]`.
    pub client: Option<String>,
    /// Network callers from this address range (`10.0.0.0/8`, `::1/128`); the weakest selector.
    pub address: Option<String>,
    /// Callers presenting an ID token of this `[[oidc]]` issuer.
    pub issuer: Option<String>,
    /// With `issuer`: a glob (`*` any run of characters) the token's `sub` must match.
    pub subject: Option<String>,
    /// With `issuer`: globs on string claims; a dotted name reaches a nested claim
    /// (`"kubernetes.io.namespace" = "ci-*"`). Every one must match.
    pub claims: Option<std::collections::BTreeMap<String, String>>,
    /// May read `/metrics` over the network.
    #[serde(default)]
    pub metrics: bool,
    /// Accounts it may ask for (`*` or absent: any).
    pub owners: Option<Vec<String>>,
    /// Repositories (`owner/repo`) it may ask for (absent: any within `owners`).
    pub repos: Option<Vec<String>>,
    /// Permission ceiling for this peer (never empty: that would read as "no limit").
    pub permissions: Option<Permissions>,
    /// Git hosts it may ask for, lower-cased (absent: every host an `[[app]]` serves).
    pub hosts: Option<Vec<String>>,
    /// Runner groups (ids) it may provision runners into (absent: any).
    pub runner_groups: Option<Vec<u64>>,
    /// Labels (exact, or globs with `*`) its runners may carry (absent: any).
    pub runner_labels: Option<Vec<String>>,
    /// What a `client` or `issuer` entry's callers may ask of the API proxy (`[proxy]`,
    /// docs/proxy.md), as `[[proxy.client]] scopes`; absent: the entry grants no proxy use.
    /// `owners`, `repos` and `hosts` narrow it further.
    pub proxy_scopes: Option<Vec<ProxyScopeConfig>>,
}

/// The config text and where it came from; `Debug` shows only the origin.
#[derive(Clone, Default)]
pub(super) struct SourceText {
    /// The file (or label) the text came from.
    pub(super) origin: PathBuf,
    /// The whole text.
    pub(super) text: std::sync::Arc<str>,
}

impl std::fmt::Debug for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceText({})", self.origin.display())
    }
}

/// `[[app]]`: one GitHub App.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Label in logs, status and errors.
    pub name: String,
    /// The git host it serves, as git sends it (`host[:port]`).
    #[serde(default = "defaults::host")]
    pub host: String,
    /// REST API base URL; derived from `host` when absent.
    pub api_url: Option<String>,
    /// Numeric App id.
    pub app_id: Option<u64>,
    /// Client id (`Iv23…`); used as the JWT `iss` when given.
    pub client_id: Option<String>,
    /// PEM private key file (refused if group/world-readable).
    pub private_key_file: Option<PathBuf>,
    /// Environment variable holding the PEM.
    pub private_key_env: Option<String>,
    /// Command whose stdout is the PEM (e.g. a secrets manager CLI).
    pub private_key_command: Option<Vec<String>>,
    /// Who signs the App JWT when ghapp must not hold the key: `pkcs11`, `aws_kms` or
    /// `command`; absent: the PEM key from `private_key_file`/`_env`/`_command` (docs/keys.md).
    pub signer: Option<SignerKind>,
    /// `signer = "pkcs11"`: the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub pkcs11_module: Option<PathBuf>,
    /// `signer = "pkcs11"`: the label of the token holding the key.
    pub pkcs11_token_label: Option<String>,
    /// `signer = "pkcs11"`: the label (`CKA_LABEL`) of the App's private key on the token.
    pub pkcs11_key_label: Option<String>,
    /// `signer = "pkcs11"`: environment variable holding the user PIN.
    pub pkcs11_pin_env: Option<String>,
    /// `signer = "pkcs11"`: file holding the user PIN (refused if group/others can read it).
    pub pkcs11_pin_file: Option<PathBuf>,
    /// `signer = "aws_kms"`: the KMS key id or ARN (an RSA_2048+ SIGN_VERIFY key).
    pub kms_key_id: Option<String>,
    /// `signer = "aws_kms"`: KMS endpoint URL instead of the region's (a VPC endpoint, tests).
    pub kms_endpoint_url: Option<String>,
    /// `signer = "command"`: program and arguments (no shell); the JWT's signing input on
    /// stdin, the raw RS256 signature on stdout.
    pub sign_command: Option<Vec<String>>,
    /// How long one signature may take (`sign_command`, PKCS#11, KMS) before it fails.
    #[serde(
        default = "defaults::sign_timeout",
        with = "crate::duration::serde_human"
    )]
    pub sign_timeout: Duration,
    /// Rotation: a second key (PEM file) GitHub may accept, used when it rejects the first.
    pub next_private_key_file: Option<PathBuf>,
    /// Rotation: a second signing command, used when GitHub rejects the first key.
    pub next_sign_command: Option<Vec<String>>,
    /// Rotation: a second key on the same PKCS#11 token, used when GitHub rejects the first.
    pub next_pkcs11_key_label: Option<String>,
    /// Rotation: a second KMS key, used when GitHub rejects the first.
    pub next_kms_key_id: Option<String>,
    /// Only these accounts.
    pub owners: Option<Vec<String>>,
    /// Permission ceiling for every token.
    pub permissions: Option<Permissions>,
    /// Serve git's `protocol=http` for this host (and derive an `http://` API URL from it);
    /// only for loopback hosts (emulators and tests), so a token never crosses a network in
    /// clear text.
    #[serde(default)]
    pub insecure_http: bool,
    /// Mint installation-wide tokens instead of narrowing to the repo asked for.
    #[serde(default)]
    pub installation_wide: bool,
    /// Extra PEM CA certificates to trust for this App's API (GHES with a private CA, tests).
    pub ca_file: Option<PathBuf>,
    /// Force GitHub's installation-token format (`X-GitHub-Stateless-S2S-Token`): `stateless`
    /// (`ghs_<APPID>_<JWT>`, ~520 characters) or `classic` (40 characters); absent: GitHub's
    /// rollout default. ghapp treats tokens as opaque either way.
    pub token_format: Option<TokenFormat>,
}

/// `signer`: who signs an App's JWTs instead of a PEM key in ghapp's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerKind {
    /// A key on a PKCS#11 token (an HSM, SoftHSM, a smart card).
    Pkcs11,
    /// A key in AWS KMS (the `Sign` API, RSASSA_PKCS1_V1_5_SHA_256).
    AwsKms,
    /// A command that signs its stdin.
    Command,
}

impl SignerKind {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SignerKind::Pkcs11 => "pkcs11",
            SignerKind::AwsKms => "aws_kms",
            SignerKind::Command => "command",
        }
    }
}

/// The installation-token format asked of GitHub (`token_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// `X-GitHub-Stateless-S2S-Token: enabled`: `ghs_<APPID>_<JWT>`, about 520 characters.
    Stateless,
    /// `X-GitHub-Stateless-S2S-Token: disabled`: the classic 40-character `ghs_` token.
    Classic,
}

/// `[proxy]`: a caching forward proxy to the GitHub API of one `[[app]]` host, serving
/// GitHub's Enterprise layout (`/api/v3/…`, `/api/graphql`) to registered clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `ADDR:PORT` to listen on (`127.0.0.1:8081`, `0.0.0.0:8443`; port 0 picks a free one).
    /// Without `tls_cert_file`/`tls_key_file`, plain HTTP: loopback only.
    pub listen: String,
    /// PEM certificate chain; with `tls_key_file`, the proxy speaks TLS (as `[network]` does).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (refused if group/others can read it).
    pub tls_key_file: Option<PathBuf>,
    /// The `[[app]]` host whose API is proxied; default: the first `[[app]]`'s host.
    pub upstream_host: Option<String>,
    /// The account whose installation serves `/graphql` and paths that name no owner
    /// (`/rate_limit`, `/search/…`); absent: only personal tokens serve them.
    pub default_installation: Option<String>,
    /// How long a cached answer is kept (and revalidated with GitHub) before it is dropped.
    #[serde(
        default = "proxy_defaults::cache_ttl",
        with = "crate::duration::serde_human"
    )]
    pub cache_ttl: Duration,
    /// How long a cached answer is served without asking GitHub at all; past it, every use
    /// revalidates (a 304 costs no rate limit). Default 0s: always revalidate.
    #[serde(
        default = "proxy_defaults::cache_fresh_for",
        with = "crate::duration::serde_human"
    )]
    pub cache_fresh_for: Duration,
    /// The cache's memory budget in bytes (bodies and headers); least recently used answers
    /// are dropped beyond it.
    #[serde(default = "proxy_defaults::cache_bytes")]
    pub cache_bytes: u64,
    /// `[[proxy.client]]`: who may use the proxy.
    #[serde(default, rename = "client")]
    pub clients: Vec<ProxyClientConfig>,
    /// `[[proxy.credential]]`: personal tokens added to the pool beside the installations'.
    #[serde(default, rename = "credential")]
    pub credentials: Vec<ProxyCredentialConfig>,
}

/// `[[proxy.client]]`: a caller that sends `Authorization: token KEY` (or `Bearer KEY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyClientConfig {
    /// The name metrics and logs show.
    pub name: String,
    /// Hex SHA-256 of the key; never the key itself.
    pub key_sha256: String,
    /// What it may ask for; none: everything.
    #[serde(default)]
    pub scopes: Vec<ProxyScopeConfig>,
}

/// One scope of a `[[proxy.client]]`: a method and a regular expression over the REST path
/// (`/repos/acme/widgets/pulls`, without `/api/v3` or the query; GraphQL is `/graphql`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyScopeConfig {
    /// `GET`, `POST`, … or `*`.
    pub method: String,
    /// A regular expression, searched in the path (anchor it with `^…$`).
    pub path: String,
}

/// `[[proxy.credential]]`: a personal token the pool may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyCredentialConfig {
    /// The name metrics and logs show; default: the variable's name.
    pub name: Option<String>,
    /// The environment variable holding the token (read when the daemon starts).
    pub token_env: String,
}

mod proxy_defaults {
    use std::time::Duration;
    pub fn cache_ttl() -> Duration {
        Duration::from_secs(60 * 60)
    }
    pub fn cache_fresh_for() -> Duration {
        Duration::ZERO
    }
    pub fn cache_bytes() -> u64 {
        64 * 1024 * 1024
    }
}

mod defaults {
    use std::time::Duration;
    pub fn cache_timeout() -> Duration {
        Duration::from_millis(250)
    }
    pub fn cache_peer_wait() -> Duration {
        Duration::from_secs(2)
    }
    pub fn upstream_hosts() -> Vec<String> {
        vec!["github.com".to_string()]
    }
    pub fn runners_cleanup_after() -> Duration {
        Duration::from_secs(24 * 60 * 60)
    }
    pub fn runners_sync_interval() -> Duration {
        Duration::from_secs(60)
    }
    pub fn min_ttl() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn negative_cache_ttl() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn installation_cache_ttl() -> Duration {
        Duration::from_secs(60 * 60)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn retry_budget() -> Duration {
        Duration::from_secs(30)
    }
    pub fn refresh_ahead() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn refresh_window() -> Duration {
        Duration::from_secs(60 * 60)
    }
    pub fn degraded_min_ttl() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn client_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_connections() -> usize {
        4096
    }
    pub fn mint_rate() -> u32 {
        120
    }
    pub fn mint_burst() -> u32 {
        240
    }
    pub fn sign_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn host() -> String {
        crate::api::DEFAULT_HOST.to_string()
    }
}

impl Config {
    /// The `[[app]]` entries serving `host` (compared case-insensitively), in file order.
    pub fn apps_for_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a AppConfig> + 'a {
        self.apps
            .iter()
            .filter(move |app| app.host.eq_ignore_ascii_case(host))
    }
}

impl AppConfig {
    /// The REST API base URL without a trailing slash: `api_url` when set, else derived from
    /// `host` (see [`api_url_for_host`]).
    pub fn api_base(&self) -> String {
        match &self.api_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => api_url_for_host(&self.host, self.insecure_http),
        }
    }

    /// The JWT `iss`: the client id when configured (GitHub's recommendation), else the App id.
    pub fn issuer(&self) -> Option<String> {
        self.client_id
            .clone()
            .or_else(|| self.app_id.map(|id| id.to_string()))
    }

    /// `acme-bot (id 12345)`, or `acme-bot (client id Iv23…)`: how errors name the App.
    pub fn describe(&self) -> String {
        match (&self.app_id, &self.client_id) {
            (Some(id), _) => format!("{} (id {id})", self.name),
            (None, Some(client_id)) => format!("{} (client id {client_id})", self.name),
            (None, None) => self.name.clone(),
        }
    }

    /// True when `owner` may be served: no `owners` list, or `owner` is in it (GitHub logins
    /// are case-insensitive).
    pub fn allows_owner(&self, owner: &str) -> bool {
        match &self.owners {
            None => true,
            Some(owners) => owners
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(owner)),
        }
    }
}

/// The REST API base URL GitHub uses for a git host:
/// - `github.com` → `https://api.github.com`;
/// - `SUB.ghe.com` (GitHub Enterprise Cloud with data residency) → `https://api.SUB.ghe.com`;
/// - any other host (GitHub Enterprise Server) → `https://HOST/api/v3` (`http://` when the App
///   is `insecure_http`, for emulators).
pub fn api_url_for_host(host: &str, insecure_http: bool) -> String {
    let host = host.to_ascii_lowercase();
    if host == "github.com" {
        return "https://api.github.com".to_string();
    }
    if let Some(sub) = host.strip_suffix(".ghe.com")
        && !sub.is_empty()
        && !sub.contains(['.', ':'])
    {
        return format!("https://api.{sub}.ghe.com");
    }
    let scheme = if insecure_http { "http" } else { "https" };
    format!("{scheme}://{host}/api/v3")
}
