//! Check 4: GitHub accepts each App's key, and the clock agrees with GitHub's.
//!
//! Doctor signs an App JWT from the key it loaded and calls `GET {api}/app` itself (reqwest,
//! the App's `ca_file` trusted), independent of the daemon. The response's `Date` header gives
//! the clock skew:
//! - within 30 s: OK;
//! - 30 s to 5 min: WARN — the daemon corrects its JWTs from `Date`, but git compares
//!   `password_expiry_utc` with this clock and other GitHub software on the host will not
//!   correct;
//! - 5 min or more: FAIL — half of GitHub's 10-minute JWT window; tokens' remaining life as
//!   seen here is off by that much.
//!
//! When GitHub refuses the JWT because of the skew, the key is checked again with a JWT dated by
//! GitHub's clock, so a bad clock and a bad key are reported separately.

use super::keys::LoadedApp;
use super::report::Report;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Skew worth a warning.
const SKEW_WARN: Duration = Duration::from_secs(30);
/// Skew that fails the check.
const SKEW_FAIL: Duration = Duration::from_secs(5 * 60);
/// One call to GitHub.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one `GET /app` said.
struct Probe {
    status: u16,
    /// GitHub's `message`, or the App's slug/name on success.
    detail: String,
    /// GitHub's clock minus ours, in seconds, from `Date`.
    skew_secs: Option<i64>,
}

/// Checks each App whose key loaded.
pub fn check(apps: &[LoadedApp], report: &mut Report) {
    let mut skew_reported = false;
    for loaded in apps {
        let Some(key) = &loaded.key else { continue };
        let app = &loaded.app;
        let who = format!("App {}", app.describe());
        let api = app.api_base();
        let Some(issuer) = app.issuer() else { continue };
        let client = match http_client(app) {
            Ok(client) => client,
            Err(reason) => {
                report.fail(
                    format!("{who}: cannot build an HTTP client for {api}: {reason}"),
                    "check ca_file in the config",
                );
                continue;
            }
        };
        let mut probe = match get_app(&client, &api, key, &issuer, 0) {
            Ok(probe) => probe,
            Err(reason) => {
                report.fail(
                    format!("{who}: GitHub API {api} is unreachable: {reason}"),
                    "check the network, https_proxy, api_url and (for a private CA) ca_file",
                );
                continue;
            }
        };
        if !skew_reported && let Some(skew) = probe.skew_secs {
            skew_reported = true;
            report_skew(skew, &api, report);
        }
        // A JWT refused for its times: check the key again on GitHub's clock.
        if probe.status == 401
            && let Some(skew) = probe.skew_secs
            && skew.unsigned_abs() >= SKEW_WARN.as_secs()
            && let Ok(retry) = get_app(&client, &api, key, &issuer, skew)
        {
            probe = retry;
        }
        if probe.status == 200 {
            report.ok(format!(
                "{who}: GitHub accepted the key (GET {api}/app: {})",
                probe.detail
            ));
        } else {
            report.fail(
                format!("{who}: GitHub refused the App JWT (GET {api}/app answered {}: {})", probe.status, probe.detail),
                "check app_id / client_id and that the key belongs to this App (App settings → Private keys); \
                 a deleted key must be replaced by a new one",
            );
        }
    }
}

fn report_skew(skew: i64, api: &str, report: &mut Report) {
    let magnitude = Duration::from_secs(skew.unsigned_abs());
    let direction = if skew > 0 { "behind" } else { "ahead of" };
    let what = format!(
        "clock is {}s {direction} GitHub's ({api} Date header)",
        skew.unsigned_abs()
    );
    let fix = "synchronise the clock (timedatectl set-ntp true, or chronyc makestep)";
    if magnitude >= SKEW_FAIL {
        report.fail(what, fix);
    } else if magnitude > SKEW_WARN {
        report.warn(what, fix);
    } else {
        report.ok(format!(
            "clock is within {}s of GitHub's ({api})",
            SKEW_WARN.as_secs()
        ));
    }
}

fn http_client(app: &ghapp_broker::AppConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(format!("ghapp/{} (doctor)", ghapp_protocol::VERSION))
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT);
    if let Some(ca_file) = &app.ca_file {
        let pem =
            std::fs::read(ca_file).map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
        builder = builder.tls_certs_merge(certificates);
    }
    builder.build().map_err(|e| e.to_string())
}

/// `GET /app` with a JWT dated `offset_secs` from our clock.
fn get_app(
    client: &reqwest::Client,
    api: &str,
    key: &EncodingKey,
    issuer: &str,
    offset_secs: i64,
) -> Result<Probe, String> {
    let now = unix_now() + offset_secs;
    let claims = serde_json::json!({ "iat": now - 60, "exp": now + 540, "iss": issuer });
    let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
        .map_err(|e| e.to_string())?;
    ghapp_client::block_on(async {
        let response = client
            .get(format!("{api}/app"))
            .bearer_auth(jwt)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| describe_reqwest(&e))?;
        let received = unix_now();
        let status = response.status().as_u16();
        let skew_secs = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64 - received);
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        let detail = if status == 200 {
            let slug = body.get("slug").and_then(|v| v.as_str());
            let name = body.get("name").and_then(|v| v.as_str());
            match (slug, name) {
                (Some(slug), _) => format!("slug {slug}"),
                (None, Some(name)) => format!("name {name}"),
                _ => "ok".to_string(),
            }
        } else {
            body.get("message")
                .and_then(|v| v.as_str())
                .unwrap_or("no message")
                .to_string()
        };
        Ok(Probe {
            status,
            detail,
            skew_secs,
        })
    })
}

fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
