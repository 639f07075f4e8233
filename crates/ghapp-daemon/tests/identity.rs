//! The credential check (`Authorization: Bearer`) against a real JWKS server started here:
//! valid RS256 and ES256 ID tokens and client keys are accepted; every hostile credential of
//! issue 14 (alg none, HS256 signed with the issuer's public key, an unknown kid, expired, wrong
//! aud, wrong iss, a 100 KB token, one issuer's kid on another's token, nbf/iat in the future)
//! is refused without a panic, without a JWKS fetch storm, and without the token in the reason.
//! Keys rotate without a restart; a verified token is cached.

mod oidc_issuer;

use ghapp_daemon::identity::{Authenticator, Credential};
use ghapp_protocol::config::Config;
use hyper::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oidc_issuer::{Issuers, SigningKey, claims, now};
use std::sync::Arc;
use std::time::Duration;

fn bearer(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(hyper::header::AUTHORIZATION, value.parse().unwrap());
    headers
}

const CLIENT_KEY: &str = "ghk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

fn authenticator(issuers: &Issuers) -> Authenticator {
    let text = format!(
        "[[oidc]]\nissuer = \"{a}\"\naudience = \"ghapp\"\n\n[[oidc]]\nissuer = \"{b}\"\naudience = \"ghapp-b\"\njwks_url = \"{b}/jwks\"\n\n[[client]]\nname = \"ci-bot\"\nkey_sha256 = \"{digest}\"\n",
        a = issuers.issuer("a"),
        b = issuers.issuer("b"),
        digest = ghapp_protocol::client_key::digest_hex(CLIENT_KEY),
    );
    let config = Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
    Authenticator::from_config(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_and_keys_are_accepted_and_cached() {
    let issuers = Issuers::start().await;
    let (a1, b1) = (
        SigningKey::new("a1", Algorithm::RS256),
        SigningKey::new("b1", Algorithm::ES256),
    );
    issuers.publish("a", &[&a1]);
    issuers.publish("b", &[&b1]);
    let auth = authenticator(&issuers);

    assert_eq!(auth.authenticate(&HeaderMap::new()).await, Ok(None));
    for header in [
        format!("Bearer {CLIENT_KEY}"),
        format!("token {CLIENT_KEY}"),
    ] {
        match auth.authenticate(&bearer(&header)).await {
            Ok(Some(Credential::Client(name))) => assert_eq!(&*name, "ci-bot"),
            other => panic!("client key: {other:?}"),
        }
    }

    let token = a1.sign(&claims(
        &issuers.issuer("a"),
        "ghapp",
        "repo:acme/widgets:ref:refs/heads/main",
    ));
    let Ok(Some(Credential::IdToken(verified))) =
        auth.authenticate(&bearer(&format!("Bearer {token}"))).await
    else {
        panic!("RS256 token refused");
    };
    assert_eq!(&*verified.issuer, issuers.issuer("a").as_str());
    assert_eq!(verified.subject, "repo:acme/widgets:ref:refs/heads/main");
    assert_eq!(verified.claims["repository_owner"], "acme");
    assert!(
        !format!("{verified:?}").contains(&token),
        "Debug holds claims, never the token"
    );
    let fetched = issuers.hits();
    assert_eq!(fetched, 2, "discovery, then the JWKS");

    let es = b1.sign(&claims(
        &issuers.issuer("b"),
        "ghapp-b",
        "system:serviceaccount:ci:builder",
    ));
    let Ok(Some(Credential::IdToken(verified))) =
        auth.authenticate(&bearer(&format!("bearer {es}"))).await
    else {
        panic!("ES256 token refused");
    };
    assert_eq!(verified.subject, "system:serviceaccount:ci:builder");
    assert_eq!(
        issuers.hits(),
        fetched + 1,
        "issuer b's jwks_url, no discovery"
    );

    // A repeated token is answered from the cache: no fetch, and quickly.
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        auth.authenticate(&bearer(&format!("Bearer {token}")))
            .await
            .unwrap()
            .unwrap();
    }
    let per_call = started.elapsed() / 1000;
    eprintln!("a cached ID token costs {per_call:?} per call");
    assert_eq!(issuers.hits(), fetched + 1);
    assert_eq!(auth.oidc().cached_tokens(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_credentials_are_refused_without_a_fetch_storm() {
    let issuers = Issuers::start().await;
    let (a1, b1) = (
        SigningKey::new("a1", Algorithm::RS256),
        SigningKey::new("b1", Algorithm::ES256),
    );
    issuers.publish("a", &[&a1]);
    issuers.publish("b", &[&b1]);
    let auth = authenticator(&issuers);
    let (iss_a, iss_b) = (issuers.issuer("a"), issuers.issuer("b"));
    let good = claims(&iss_a, "ghapp", "repo:acme/widgets:ref:refs/heads/main");
    // Warm the key set: from here on, only refreshes count.
    auth.authenticate(&bearer(&format!("Bearer {}", a1.sign(&good))))
        .await
        .unwrap()
        .unwrap();
    let warm = issuers.hits();

    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "kid": "a1", "typ": "JWT"})),
        b64(&good)
    );
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a1".into());
        jsonwebtoken::encode(
            &header,
            &good,
            &EncodingKey::from_secret(a1.public_pem.as_bytes()),
        )
        .unwrap()
    };
    let with = |key: &SigningKey, change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good.clone();
        change(&mut c);
        key.sign(&c)
    };
    let mut unknown_kid = SigningKey::new("a-unknown", Algorithm::RS256);
    unknown_kid.kid = "a-unknown".into();
    let huge = format!("eyJ{}", "A".repeat(100 * 1024));
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", alg_none, "header"),
        (
            "HS256 signed with the public key",
            hs256_with_public_key,
            "alg is not RS256",
        ),
        (
            "unknown kid",
            unknown_kid.sign(&good),
            "\"a-unknown\" is not among",
        ),
        (
            "expired",
            with(&a1, &|c| {
                c["exp"] = (now() - 3600).into();
                c["iat"] = (now() - 7200).into();
                c["nbf"] = (now() - 7200).into();
            }),
            "expired",
        ),
        (
            "wrong aud",
            with(&a1, &|c| c["aud"] = "someone-else".into()),
            "not for audience ghapp",
        ),
        (
            "wrong iss",
            with(&a1, &|c| c["iss"] = "https://evil.example".into()),
            "\"https://evil.example\" are not accepted",
        ),
        (
            "a kid of issuer a on issuer b's token",
            with(&a1, &|c| {
                c["iss"] = iss_b.clone().into();
                c["aud"] = "ghapp-b".into();
            }),
            "\"a1\" is not among",
        ),
        (
            "issuer b's key, issuer a's iss",
            with(&b1, &|c| {
                let _ = c;
            }),
            "\"b1\" is not among",
        ),
        (
            "nbf in the future",
            with(&a1, &|c| c["nbf"] = (now() + 3600).into()),
            "not valid yet",
        ),
        (
            "iat in the future",
            with(&a1, &|c| c["iat"] = (now() + 3600).into()),
            "issued in the future",
        ),
        (
            "no sub",
            with(&a1, &|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "no sub claim",
        ),
        ("100 KB", huge, "at most 16384"),
        (
            "a client key nobody has",
            "ghk_nope".into(),
            "neither a configured client key",
        ),
    ];
    for (name, token, expected) in &cases {
        let refused = auth
            .authenticate(&bearer(&format!("Bearer {token}")))
            .await
            .expect_err(name);
        assert!(
            refused.reason.contains(expected),
            "{name}: {}",
            refused.reason
        );
        assert!(
            !refused.reason.contains(token.as_str()),
            "{name}: the reason holds the token"
        );
    }
    let after_cases = issuers.hits();
    assert!(
        after_cases <= warm + 2,
        "one refresh per issuer at most: {warm} → {after_cases}"
    );

    // A storm of unknown kids, concurrently: no more fetches (the refresh is rate-bounded).
    let auth = Arc::new(auth);
    let mut storm = Vec::new();
    for i in 0..200 {
        let (auth, key) = (
            auth.clone(),
            SigningKey::new(&format!("storm-{}", i % 3), Algorithm::ES256),
        );
        let token = key.sign(&good);
        storm.push(tokio::spawn(async move {
            auth.authenticate(&bearer(&format!("Bearer {token}"))).await
        }));
    }
    for task in storm {
        assert!(task.await.unwrap().is_err());
    }
    assert_eq!(issuers.hits(), after_cases, "no fetch storm");

    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Negotiate x"] {
        assert!(
            auth.authenticate(&bearer(header)).await.is_err(),
            "{header}"
        );
    }
    let mut twice = bearer(&format!("Bearer {CLIENT_KEY}"));
    twice.append(
        hyper::header::AUTHORIZATION,
        format!("Bearer {CLIENT_KEY}").parse().unwrap(),
    );
    assert!(
        auth.authenticate(&twice)
            .await
            .unwrap_err()
            .reason
            .contains("more than one")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_a_restart_and_refreshes_are_single_flight() {
    let issuers = Issuers::start().await;
    let (a1, a2) = (
        SigningKey::new("a1", Algorithm::RS256),
        SigningKey::new("a2", Algorithm::ES256),
    );
    issuers.publish("a", &[&a1]);
    issuers.publish("b", &[]);
    let mut auth = authenticator(&issuers);
    auth.oidc_mut()
        .set_min_refresh_interval(Duration::from_millis(300));
    let good = claims(
        &issuers.issuer("a"),
        "ghapp",
        "system:serviceaccount:ci:builder",
    );
    auth.authenticate(&bearer(&format!("Bearer {}", a1.sign(&good))))
        .await
        .unwrap()
        .unwrap();
    let before = issuers.hits();

    // The issuer rotates to a2; tokens signed with it are accepted once the keys are refetched.
    issuers.publish("a", &[&a2]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let auth = Arc::new(auth);
    let rotated = a2.sign(&good);
    let mut at_once = Vec::new();
    for _ in 0..50 {
        let (auth, token) = (auth.clone(), rotated.clone());
        at_once.push(tokio::spawn(async move {
            auth.authenticate(&bearer(&format!("Bearer {token}"))).await
        }));
    }
    for task in at_once {
        assert!(matches!(
            task.await.unwrap(),
            Ok(Some(Credential::IdToken(_)))
        ));
    }
    assert_eq!(
        issuers.hits(),
        before + 1,
        "50 callers, one fetch (the discovery document is remembered)"
    );
    // A cached verification of a1's token still holds until it expires; a new a1 token is
    // refused now that the issuer no longer publishes a1.
    let mut fresh = good.clone();
    fresh["jti"] = "another".into();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        auth.authenticate(&bearer(&format!("Bearer {}", a1.sign(&fresh))))
            .await
            .is_err()
    );
}
