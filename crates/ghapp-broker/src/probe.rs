//! One App checked the daemon's way, for `ghapp doctor`: the key or signer built by
//! [`signers_for`] (same sources, same file-mode rule, same 10 s `private_key_command` limit,
//! the same `sign_command` or PKCS#11 token), the App JWT signed by the daemon's JWT signer
//! (same claims: `iss` a number for an App id, a string for a client id), and
//! `GET /app` then `GET /app/installations` sent through the daemon's transport
//! ([`ReqwestTransport`]: same timeouts, proxies and `ca_file`) with the daemon's headers.
//!
//! Doctor has no key loading, JWT or HTTP code of its own, so it cannot drift from what the
//! daemon sends. A JWT GitHub refuses for its times is re-signed on GitHub's clock (from the
//! `Date` header) and sent once more, as the daemon does; the probe says it did, so doctor can
//! report a bad clock and a bad key separately. Likewise a client id GitHub refuses as the
//! JWT's issuer (GHES before 3.14) is replaced by the App id and sent once more, as the daemon
//! does; the probe says which issuer GitHub accepted. A rotation's next key (`next_*`) is asked
//! about too, so doctor can say which of the App's keys GitHub accepts.
//!
//! Every outcome is data ([`AppProbe`]): doctor decides what is OK, WARN or FAIL.

use crate::config::{AppConfig, DaemonConfig};
use crate::error::BrokerError;
use crate::jwt::{JwtSigner, is_clock_skew_message, is_issuer_message};
use crate::signer::{Signer, signers_for};
use crate::transport::{
    HttpRequest, HttpResponse, HttpTransport, Method, ReqwestTransport, TransportError,
};
use ghapp_protocol::secret::Token;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The REST API version the daemon's GitHub client speaks (its `x-github-api-version`).
const API_VERSION: &str = "2022-11-28";

/// What checking one App found.
#[derive(Debug)]
pub struct AppProbe {
    /// The key, as the daemon would load it.
    pub key: Result<KeyLoaded, KeyProblem>,
    /// What GitHub said; `None` when there was no usable key to sign with.
    pub github: Option<Result<GithubAnswer, GithubUnreachable>>,
    /// The rotation's next key (`next_*`), if the App has one, and what GitHub said to it.
    pub next_keys: Vec<NextKeyProbe>,
}

/// A rotation's next key and GitHub's answer to a JWT it signed.
#[derive(Debug)]
pub struct NextKeyProbe {
    /// Where it is (`file /etc/ghapp/acme.next.pem`, `PKCS#11 token "ghapp" key "next"`).
    pub source: String,
    /// `sha256:…` of its public half, when known.
    pub fingerprint: String,
    /// GitHub's answer to `GET /app` (its status says whether GitHub accepts the key), or why
    /// there was none (the key could not sign, GitHub unreachable).
    pub answer: Result<GithubAnswer, String>,
}

/// A key the daemon would accept, named without revealing it.
#[derive(Debug, Clone)]
pub struct KeyLoaded {
    /// `sha256:…` of the public half, as `ghapp status` shows the daemon's key.
    pub fingerprint: String,
    /// Where it came from (`file /etc/ghapp/acme.pem`).
    pub source: String,
}

/// Why the key did not load. The variants doctor reports differently; everything else the
/// daemon would refuse is [`KeyProblem::Refused`] with the daemon's own message.
#[derive(Debug)]
pub enum KeyProblem {
    /// No `private_key_file`, `private_key_env` or `private_key_command`.
    NoSource {
        /// The daemon's message.
        error: BrokerError,
    },
    /// `private_key_file` names no file.
    FileMissing {
        /// The configured path.
        path: PathBuf,
    },
    /// Group or others may read or write the key file: the daemon refuses it.
    FileTooOpen {
        /// The configured path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// This user may not read the key (a system daemon's key is often root's): it may still be
    /// fine for the daemon.
    NotReadableHere {
        /// The configured path.
        path: PathBuf,
        /// The daemon's message.
        error: BrokerError,
    },
    /// `private_key_env` is not set in this process; the daemon reads its own environment.
    EnvNotSetHere {
        /// The variable's name.
        variable: String,
    },
    /// The key loaded but the App JWT cannot be signed with it.
    CannotSign {
        /// The signer's message.
        error: BrokerError,
    },
    /// Anything else the daemon refuses: not an RSA key, a failing or slow command, ….
    Refused {
        /// The daemon's message.
        error: BrokerError,
    },
}

/// GitHub's answers to the App JWT.
#[derive(Debug, Clone)]
pub struct GithubAnswer {
    /// The API base the requests went to.
    pub api_base: String,
    /// The status of the last `GET /app` (after a clock-corrected retry, when there was one).
    pub status: u16,
    /// On 200, the App's slug; otherwise GitHub's `message`.
    pub detail: String,
    /// GitHub's clock minus ours in seconds, from the first answer's `Date` header.
    pub clock_offset_secs: Option<i64>,
    /// GitHub refused the first JWT for its times and the probe re-signed it on GitHub's clock.
    pub adopted_github_clock: bool,
    /// The JWT issuer of the last `GET /app`: `client id` or `App id`.
    pub issuer: &'static str,
    /// GitHub refused the client id as the issuer and the probe signed with the App id instead
    /// (what the daemon does too).
    pub client_id_refused: bool,
    /// On 200: the App's installations (first page), or why they could not be listed.
    pub installations: Option<Result<Installations, String>>,
}

/// The first page of `GET /app/installations`.
#[derive(Debug, Clone, Default)]
pub struct Installations {
    /// The accounts the App is installed on (logins), `(suspended)` marked.
    pub accounts: Vec<String>,
    /// GitHub has more pages.
    pub more: bool,
}

/// No HTTP answer from GitHub (or no client to ask with).
#[derive(Debug, Clone)]
pub struct GithubUnreachable {
    /// The API base.
    pub api_base: String,
    /// What went wrong.
    pub reason: String,
}

/// Checks `app` exactly as the daemon would use it: loads its key, signs the App JWT, asks
/// GitHub for the App and its installations. Loading may block for the
/// `private_key_command` limit.
pub async fn check_app(app: &AppConfig, daemon: &DaemonConfig) -> AppProbe {
    let mut signers = match signers_for(app) {
        Ok(signers) => signers.into_iter(),
        Err(error) => {
            return AppProbe {
                key: Err(classify(app, error)),
                github: None,
                next_keys: Vec::new(),
            };
        }
    };
    let Some(first) = signers.next() else {
        return AppProbe {
            key: Err(KeyProblem::NoSource {
                error: BrokerError::internal("no signer"),
            }),
            github: None,
            next_keys: Vec::new(),
        };
    };
    let signer = match sign_once(app, first.clone()).await {
        Ok(signer) => signer,
        Err(error) => {
            return AppProbe {
                key: Err(KeyProblem::CannotSign { error }),
                github: None,
                next_keys: Vec::new(),
            };
        }
    };
    let loaded = KeyLoaded {
        fingerprint: first.fingerprint(),
        source: first.describe().to_string(),
    };
    let github = Some(ask_github(app, daemon, &signer).await);
    let mut next_keys = Vec::new();
    for next in signers {
        let answer = match sign_once(app, next.clone()).await {
            Ok(signer) => ask_github(app, daemon, &signer).await.map_err(|e| e.reason),
            Err(error) => Err(error.message),
        };
        next_keys.push(NextKeyProbe {
            source: next.describe().to_string(),
            fingerprint: next.fingerprint(),
            answer,
        });
    }
    AppProbe {
        key: Ok(loaded),
        github,
        next_keys,
    }
}

/// A JWT signer for `app` with `signer` alone, once it has signed (so a failing signer shows
/// here, named, rather than as an unreachable GitHub).
async fn sign_once(app: &AppConfig, signer: Arc<dyn Signer>) -> Result<JwtSigner, BrokerError> {
    let jwt = JwtSigner::new(signer, app.app_id, app.client_id.as_deref())?;
    jwt.jwt()
        .await
        .map_err(|e| BrokerError::internal(format!("GitHub App {}: {e}", app.name)))?;
    Ok(jwt)
}

/// Names why [`crate::key::AppKey::load`] (or another signer) failed, from what is on disk and in the environment.
fn classify(app: &AppConfig, error: BrokerError) -> KeyProblem {
    if let Some(path) = &app.private_key_file {
        return match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                KeyProblem::FileMissing { path: path.clone() }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                KeyProblem::NotReadableHere {
                    path: path.clone(),
                    error,
                }
            }
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => KeyProblem::FileTooOpen {
                path: path.clone(),
                mode: meta.permissions().mode() & 0o7777,
            },
            Ok(_) if std::fs::File::open(path).is_err() => KeyProblem::NotReadableHere {
                path: path.clone(),
                error,
            },
            _ => KeyProblem::Refused { error },
        };
    }
    if let Some(variable) = &app.private_key_env {
        let unset = std::env::var_os(variable)
            .is_none_or(|v| v.as_encoded_bytes().iter().all(u8::is_ascii_whitespace));
        if unset {
            return KeyProblem::EnvNotSetHere {
                variable: variable.clone(),
            };
        }
        return KeyProblem::Refused { error };
    }
    if app.private_key_command.is_some() {
        return KeyProblem::Refused { error };
    }
    KeyProblem::NoSource { error }
}

/// `GET /app` (once more on GitHub's clock if it refused the JWT's times), then, when GitHub
/// accepted the App, the first page of `GET /app/installations`.
async fn ask_github(
    app: &AppConfig,
    daemon: &DaemonConfig,
    signer: &JwtSigner,
) -> Result<GithubAnswer, GithubUnreachable> {
    let api_base = app.api_base();
    let unreachable = |reason: String| GithubUnreachable {
        api_base: api_base.clone(),
        reason,
    };
    let transport = ReqwestTransport::new(daemon, app).map_err(|e| unreachable(e.message))?;
    let get = |path: &str| {
        let transport = &transport;
        let url = format!("{api_base}{path}");
        async move {
            let jwt = signer.jwt().await.map_err(|e| e.to_string())?;
            transport
                .send(app_request(url, &jwt, daemon))
                .await
                .map_err(|e: TransportError| e.message)
        }
    };
    let mut response = get("/app").await.map_err(unreachable)?;
    let clock_offset_secs = response.header("date").and_then(offset_from_date);
    let mut adopted_github_clock = false;
    if response.status == 401
        && is_clock_skew_message(&message_of(&response))
        && let Some(offset) = clock_offset_secs
    {
        signer.set_clock_offset(offset);
        adopted_github_clock = true;
        response = get("/app").await.map_err(unreachable)?;
    }
    let mut client_id_refused = false;
    if response.status == 401
        && is_issuer_message(&message_of(&response))
        && signer.use_app_id_issuer()
    {
        client_id_refused = true;
        response = get("/app").await.map_err(unreachable)?;
    }
    let status = response.status;
    let issuer = signer.issuer_kind();
    if status != 200 {
        return Ok(GithubAnswer {
            api_base,
            status,
            detail: message_of(&response),
            clock_offset_secs,
            adopted_github_clock,
            issuer,
            client_id_refused,
            installations: None,
        });
    }
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    let detail = ["slug", "name"]
        .iter()
        .find_map(|field| body.get(*field).and_then(|v| v.as_str()))
        .unwrap_or("ok")
        .to_string();
    let installations = match get("/app/installations?per_page=100").await {
        Ok(listed) => Some(installations_of(&listed)),
        Err(reason) => Some(Err(reason)),
    };
    Ok(GithubAnswer {
        api_base,
        status,
        detail,
        clock_offset_secs,
        adopted_github_clock,
        issuer,
        client_id_refused,
        installations,
    })
}

/// A GET of `url` authenticated with the App JWT `jwt`, with the daemon's headers.
fn app_request(url: String, jwt: &Token, daemon: &DaemonConfig) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url,
        headers: vec![
            (
                "user-agent".into(),
                format!("ghapp/{}", ghapp_protocol::VERSION),
            ),
            ("accept".into(), "application/vnd.github+json".into()),
            ("x-github-api-version".into(), API_VERSION.into()),
            ("authorization".into(), format!("Bearer {}", jwt.expose())),
        ],
        body: None,
        timeout: daemon.request_timeout,
    }
}

/// GitHub's `message`, or the status when it gave none.
fn message_of(response: &HttpResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|body| body.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {} without a message", response.status))
}

/// GitHub's clock minus ours, in seconds.
fn offset_from_date(date: &str) -> Option<i64> {
    let github = httpdate::parse_http_date(date.trim()).ok()?;
    Some(unix_secs(github) - unix_secs(SystemTime::now()))
}

fn unix_secs(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn installations_of(response: &HttpResponse) -> Result<Installations, String> {
    if response.status != 200 {
        return Err(format!(
            "GET /app/installations answered {}: {}",
            response.status,
            message_of(response)
        ));
    }
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&response.body)
        .map_err(|e| format!("GET /app/installations: not a JSON list: {e}"))?;
    let accounts = listed
        .iter()
        .map(|installation| {
            let login = installation
                .pointer("/account/login")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            let suspended = installation
                .get("suspended_at")
                .is_some_and(|v| !v.is_null());
            if suspended {
                format!("{login} (suspended)")
            } else {
                login.to_string()
            }
        })
        .collect();
    let more = response
        .header("link")
        .is_some_and(|link| link.contains("rel=\"next\""));
    Ok(Installations { accounts, more })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn app(extra: &str) -> AppConfig {
        Config::parse(
            &format!("[[app]]\nname = \"a\"\napp_id = 1\n{extra}\n"),
            Path::new("t.toml"),
        )
        .unwrap()
        .apps
        .remove(0)
    }

    #[test]
    fn key_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let config = app(&format!(
            "private_key_file = {:?}",
            path.display().to_string()
        ));
        let daemon = DaemonConfig::default();
        let probe = |config: &AppConfig| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(check_app(config, &daemon))
        };
        assert!(matches!(
            probe(&config).key,
            Err(KeyProblem::FileMissing { .. })
        ));
        std::fs::write(&path, crate::key::tests::TEST_KEY_PEM).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            probe(&config).key,
            Err(KeyProblem::FileTooOpen { mode: 0o640, .. })
        ));
        std::fs::write(
            &path,
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let Err(KeyProblem::Refused { error }) = probe(&config).key else {
            panic!("garbage must be refused");
        };
        assert!(error.message.contains("not an RSA private key"), "{error}");
        let unset = app("private_key_env = \"GHAPP_PROBE_TEST_UNSET\"");
        assert!(matches!(
            probe(&unset).key,
            Err(KeyProblem::EnvNotSetHere { variable }) if variable == "GHAPP_PROBE_TEST_UNSET"
        ));
    }

    #[test]
    fn date_offsets() {
        let ahead =
            httpdate::fmt_http_date(SystemTime::now() + std::time::Duration::from_secs(120));
        let offset = offset_from_date(&ahead).unwrap();
        assert!((119..=121).contains(&offset), "{offset}");
        assert_eq!(offset_from_date("yesterday"), None);
    }
}
