//! Hostile ID tokens minted by the emulator's OIDC issuer (docs/emulator.md), sent to a real
//! daemon on its network listener, many at once: every one is refused 401 with an audit line
//! that does not hold it (a 100 KB token is refused 431 by the 16 KiB head cap before it is
//! read), and the daemon's
//! fetches of the issuer's keys — counted where a real issuer would see them, at the emulator —
//! stay bounded (no JWKS fetch storm). The daemon's own count of those fetches
//! (`ghapp_oidc_jwks_fetches_total` on `/metrics`) agrees with the issuer's, and the page holds
//! no token.
//!
//! Needs the binaries built: `cargo build -p ghapp -p github-emulator`.

use ghapp_testkit::daemon::{DaemonProcess, config_for, parse_prometheus};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use std::net::SocketAddr;
use std::time::Duration;

/// Hostile tokens sent in the storm.
const HOSTILE_TOKENS: usize = 200;
/// Concurrent callers sending them.
const CALLERS: usize = 20;

fn get(at: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut request = client.get(format!("http://{at}{path}"));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge, response.text().unwrap())
}

/// The daemon's `ghapp_oidc_jwks_fetches_total` samples for `issuer`, by outcome.
fn daemon_fetches(
    at: SocketAddr,
    issuer: &str,
) -> (std::collections::BTreeMap<String, f64>, String) {
    let (status, _, page) = get(at, "/metrics", None);
    assert_eq!(status, 200, "loopback may read /metrics: {page}");
    let samples = parse_prometheus(&page).expect("a well-formed metrics page");
    let by_outcome = samples
        .iter()
        .filter(|s| s.name == "ghapp_oidc_jwks_fetches_total")
        .filter(|s| s.labels.get("issuer").map(String::as_str) == Some(issuer))
        .map(|s| (s.labels["outcome"].clone(), s.value))
        .collect();
    (by_outcome, page)
}

/// True when `text` holds `token` or its claims or signature (a JWT's second and third parts).
fn holds_token(text: &str, token: &str) -> bool {
    text.contains(token)
        || token
            .split('.')
            .skip(1)
            .any(|part| part.len() >= 16 && text.contains(part))
}

#[test]
fn hostile_tokens_are_refused_without_a_jwks_fetch_storm() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("emulator");
    let issuer = emulator.oidc_issuer();
    // A second issuer, whose kid on the first one's token must not be trusted either.
    emulator.oidc_issuer_info("other").expect("second issuer");
    let config = format!(
        "{}\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\n\n[[oidc]]\nissuer = \"{issuer}\"\naudience = \"ghapp\"\n\n[[policy]]\nissuer = \"{issuer}\"\nsubject = \"repo:acme/widgets:*\"\nrepos = [\"acme/widgets\"]\n",
        config_for(&emulator, "audit_log = \"audit.jsonl\"")
    );
    let daemon = DaemonProcess::start(&config).expect("daemon");
    let at = daemon.network_address();
    let widgets = "/v1/token?owner=acme&repo=widgets";
    emulator.reset_oidc_stats().unwrap();

    // A valid token: discovery once, the JWKS once.
    let valid = emulator
        .github_actions_id_token("acme/widgets", "refs/heads/main", "ghapp")
        .unwrap();
    let (status, _, body) = get(at, widgets, Some(&valid));
    assert_eq!(status, 200, "a valid ID token: {body}");
    assert_eq!(emulator.discovery_fetches().unwrap(), 1);
    assert_eq!(emulator.jwks_fetches().unwrap(), 1, "the keys, once");

    let request = serde_json::json!({
        "preset": { "kind": "github_actions", "repository": "acme/widgets", "ref": "refs/heads/main" },
        "aud": "ghapp",
    });
    // Each an emulator `hostile` variant, plus a token signed with the other issuer's key.
    const OTHER_ISSUERS_KID: &str = "other issuer's kid";
    let kinds = [
        "unknown_kid",
        "wrong_key",
        "alg_none",
        "hs256_public_key_pem",
        "hs256_public_key_der",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        OTHER_ISSUERS_KID,
    ];
    let mut hostile: Vec<(String, String)> = (0..HOSTILE_TOKENS)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            let token = if kind == OTHER_ISSUERS_KID {
                let mut other = request.clone();
                other["signing_issuer"] = "other".into();
                emulator.mint_id_token(other).unwrap()
            } else {
                emulator.hostile_id_token(request.clone(), kind).unwrap()
            };
            (kind.to_string(), token)
        })
        .collect();
    let unknown_kids = hostile
        .iter()
        .filter(|(kind, _)| kind == "unknown_kid" || kind == OTHER_ISSUERS_KID)
        .count();
    assert!(
        unknown_kids >= 40,
        "the storm is mostly keys the daemon does not know"
    );

    // All at once, from CALLERS threads.
    let per_caller = hostile.len().div_ceil(CALLERS);
    let mut callers = Vec::new();
    while !hostile.is_empty() {
        let batch: Vec<(String, String)> = hostile.drain(..per_caller.min(hostile.len())).collect();
        callers.push(std::thread::spawn(move || {
            batch
                .into_iter()
                .map(|(kind, token)| {
                    let (status, challenge, body) = get(at, widgets, Some(&token));
                    (kind, token, status, challenge, body)
                })
                .collect::<Vec<_>>()
        }));
    }
    let answers: Vec<_> = callers
        .into_iter()
        .flat_map(|caller| caller.join().unwrap())
        .collect();
    assert_eq!(answers.len(), HOSTILE_TOKENS);
    for (kind, token, status, challenge, body) in &answers {
        assert_eq!(*status, 401, "{kind}: {body}");
        assert!(challenge.starts_with("Bearer"), "{kind}: {challenge:?}");
        assert!(
            !body.contains(token.as_str()),
            "{kind}: the answer holds the token"
        );
    }

    // Counted at the issuer: the unknown kids may cause one refresh (rate-bounded to one per
    // issuer per 10 s; a slow machine may straddle two such windows), never one per token.
    let jwks = emulator.jwks_fetches().unwrap();
    assert!(
        jwks <= 3,
        "{HOSTILE_TOKENS} hostile tokens ({unknown_kids} with unknown kids) made {jwks} JWKS fetches"
    );
    assert_eq!(
        emulator.discovery_fetches().unwrap(),
        1,
        "the discovery document is remembered"
    );

    // The daemon counts the same fetches, by outcome, and its page holds no token.
    let (by_outcome, page) = daemon_fetches(at, &issuer);
    assert_eq!(
        by_outcome.get("ok").copied(),
        Some(jwks as f64),
        "the daemon's fetch count agrees with the issuer's: {by_outcome:?}"
    );
    for (kind, token, ..) in &answers {
        assert!(
            !holds_token(&page, token),
            "{kind}: the metrics page holds an ID token"
        );
    }

    // One audit line per refusal, naming the route and 401, never the token.
    let audit = std::fs::read_to_string(daemon.dir().join("audit.jsonl")).expect("audit log");
    let refusals = audit
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON audit line"))
        .filter(|line| line["status"] == 401 && line["route"] == "/v1/token")
        .count();
    assert_eq!(refusals, HOSTILE_TOKENS, "one audit line per hostile token");
    for (kind, token, ..) in &answers {
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            !audit.contains(token.as_str()) && (signature.len() < 16 || !audit.contains(signature)),
            "{kind}: the audit log holds the token"
        );
    }

    // A 100 KB token (validly signed) does not fit the 16 KiB request head: 431, unread.
    let mut oversized = request.clone();
    oversized["hostile"] = "oversized".into();
    let oversized = emulator.mint_id_token(oversized).unwrap();
    assert!(oversized.len() > 100_000);
    let client = reqwest::blocking::Client::new();
    match client
        .get(format!("http://{at}{widgets}"))
        .bearer_auth(&oversized)
        .send()
    {
        Ok(response) => assert_eq!(response.status().as_u16(), 431),
        // The daemon may close while the client is still writing what it will never read.
        Err(e) => eprintln!(
            "NOT CHECKED: the 431 answer to the 100 KB token (cut off while being sent: {e}); \
             its audit line and count are still required below"
        ),
    }
    // The refusal is audited and counted all the same (hyper answers 431 before any route
    // runs), and neither the audit line nor the page holds any of the token.
    // The line is written when the daemon closes the connection, just after the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (audit, too_large) = loop {
        let audit = std::fs::read_to_string(daemon.dir().join("audit.jsonl")).expect("audit log");
        let too_large: Vec<serde_json::Value> = audit
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON audit line"))
            .filter(|line| line["status"] == 431)
            .collect();
        if !too_large.is_empty() || std::time::Instant::now() > deadline {
            break (audit, too_large);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        too_large.len(),
        1,
        "one audit line for the 100 KB token: {too_large:?}"
    );
    assert_eq!(too_large[0]["outcome"], "failed", "{:?}", too_large[0]);
    assert!(
        too_large[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("request head too large")),
        "{:?}",
        too_large[0]
    );
    assert!(too_large[0]["address"].is_string(), "{:?}", too_large[0]);
    assert!(
        !holds_token(&audit, &oversized),
        "the audit log holds the 100 KB token"
    );

    // The valid token still works (from the verified-token cache: no fetch).
    assert_eq!(get(at, widgets, Some(&valid)).0, 200);
    assert_eq!(emulator.jwks_fetches().unwrap(), jwks);

    // The page read after every token was used: the 431 counted, no token on it.
    let (_, page) = daemon_fetches(at, &issuer);
    let samples = parse_prometheus(&page).expect("a well-formed metrics page");
    let counted_431: f64 = samples
        .iter()
        .filter(|s| s.name == "ghapp_requests_total")
        .filter(|s| s.labels.get("status").map(String::as_str) == Some("431"))
        .map(|s| s.value)
        .sum();
    assert_eq!(counted_431, 1.0, "the 431 is counted on /metrics");
    assert!(
        !holds_token(&page, &valid),
        "the metrics page holds the valid ID token"
    );
    assert!(
        !holds_token(&page, &oversized),
        "the metrics page holds the 100 KB token"
    );
}
