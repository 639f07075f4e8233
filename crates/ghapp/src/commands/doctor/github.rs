//! Check 4: GitHub accepts each App's key (and says which of a rotation's keys it accepts), the
//! App is installed somewhere, and the clock agrees with GitHub's.
//!
//! This module only reports; the requests were made by [`ghapp_broker::probe::check_app`] (see
//! [`super::keys`]): the App JWT the daemon would send, through the daemon's own transport
//! (its timeouts, proxies and `ca_file`), independent of the running daemon — so it also works
//! when the daemon is down. The `Date` header of GitHub's answer gives the clock skew:
//! - within 30 s: OK;
//! - 30 s to 5 min: WARN — the daemon corrects its JWTs from `Date`, but git compares
//!   `password_expiry_utc` with this clock and other GitHub software on the host will not
//!   correct;
//! - 5 min or more: FAIL — half of GitHub's 10-minute JWT window; tokens' remaining life as
//!   seen here is off by that much.
//!
//! When GitHub refuses the JWT for its times, the probe re-signs it on GitHub's clock as the
//! daemon does, so a bad clock and a bad key are reported separately. The report names the JWT
//! issuer GitHub accepted (client id or App id); when it refused the client id (GHES before
//! 3.14) and took the App id, that is said too — the daemon falls back the same way.

use super::keys::ProbedApp;
use super::report::Report;
use ghapp_broker::probe::{GithubAnswer, Installations, NextKeyProbe};
use std::time::Duration;

/// Skew worth a warning.
const SKEW_WARN: Duration = Duration::from_secs(30);
/// Skew that fails the check.
const SKEW_FAIL: Duration = Duration::from_secs(5 * 60);

/// Reports what GitHub said to each App whose key loaded.
pub fn check(apps: &[ProbedApp], report: &mut Report) {
    let mut skew_reported = false;
    for probed in apps {
        let Some(github) = &probed.probe.github else {
            continue;
        };
        let who = format!("App {}", probed.app.describe());
        let answer = match github {
            Ok(answer) => answer,
            Err(unreachable) => {
                report.fail(
                    format!(
                        "{who}: GitHub API {} is unreachable: {}",
                        unreachable.api_base, unreachable.reason
                    ),
                    "check the network, https_proxy, api_url and (for a private CA) ca_file",
                );
                continue;
            }
        };
        if !skew_reported && let Some(skew) = answer.clock_offset_secs {
            skew_reported = true;
            report_skew(skew, &answer.api_base, report);
        }
        let next_accepted = probed
            .probe
            .next_keys
            .iter()
            .any(|next| next.answer.as_ref().is_ok_and(|a| a.status == 200));
        report_answer(&who, answer, next_accepted, report);
        report_next_keys(&who, &probed.probe.next_keys, report);
    }
}

/// Which of a rotation's next keys GitHub accepts: the daemon switches to the next key when
/// GitHub rejects the first, so a next key GitHub does not know yet is worth a warning.
fn report_next_keys(who: &str, next_keys: &[NextKeyProbe], report: &mut Report) {
    for next in next_keys {
        let key = format!("{who}: next key {} ({})", next.fingerprint, next.source);
        match &next.answer {
            Ok(answer) if answer.status == 200 => {
                report.ok(format!("{key}: GitHub accepts it too"))
            }
            Ok(answer) => report.warn(
                format!(
                    "{key}: GitHub does not accept it (GET {}/app answered {}: {})",
                    answer.api_base, answer.status, answer.detail
                ),
                "register it on GitHub (App settings → Private keys) before deleting the first key",
            ),
            Err(reason) => report.warn(
                format!("{key}: cannot be checked: {reason}"),
                "the daemon switches to it only when GitHub rejects the first key: make it sign before then",
            ),
        }
    }
}

fn report_answer(who: &str, answer: &GithubAnswer, next_accepted: bool, report: &mut Report) {
    let api = &answer.api_base;
    let on_its_clock = if answer.adopted_github_clock {
        " after re-signing the JWT on GitHub's clock, as the daemon does"
    } else {
        ""
    };
    if answer.status != 200 && next_accepted {
        report.warn(
            format!(
                "{who}: GitHub refused the first key (GET {api}/app answered {}{on_its_clock}: {}); the daemon signs with the next key, which GitHub accepts",
                answer.status, answer.detail
            ),
            "finish the rotation: make the next key the App's private key and reload",
        );
        return;
    }
    if answer.status != 200 {
        report.fail(
            format!(
                "{who}: GitHub refused the App JWT (GET {api}/app answered {}{on_its_clock}: {})",
                answer.status, answer.detail
            ),
            "check app_id / client_id and that the key belongs to this App (App settings → Private keys); \
             a deleted key must be replaced by a new one",
        );
        return;
    }
    let issuer = if answer.client_id_refused {
        format!(
            "JWT issuer: {}; GitHub refused the client id, as GHES before 3.14 does, and the daemon falls back to the App id the same way",
            answer.issuer
        )
    } else {
        format!("JWT issuer: {}", answer.issuer)
    };
    report.ok(format!(
        "{who}: GitHub accepted the key (GET {api}/app: slug {}{on_its_clock}; {issuer})",
        answer.detail
    ));
    match &answer.installations {
        Some(Ok(Installations { accounts, .. })) if accounts.is_empty() => report.warn(
            format!("{who}: the App is not installed on any account (GET {api}/app/installations)"),
            "install the App on the accounts whose repositories it should serve \
             (App settings → Install App)",
        ),
        Some(Ok(Installations { accounts, more })) => report.ok(format!(
            "{who}: installed on {}{}",
            accounts.join(", "),
            if *more { " and more" } else { "" }
        )),
        Some(Err(reason)) => report.warn(
            format!("{who}: cannot list the App's installations: {reason}"),
            "check that GitHub (or the GHES instance) serves GET /app/installations to this App",
        ),
        None => {}
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
