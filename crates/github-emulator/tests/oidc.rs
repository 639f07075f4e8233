//! The emulator as an OIDC issuer: discovery → JWKS → minted tokens verify with jsonwebtoken
//! against the served keys (RS256 and ES256, the algorithm taken from the JWK); each hostile
//! variant has exactly the property it claims; rotation changes the signing `kid`; the fetch
//! counters count.

use aws_lc_rs::encoding::AsDer as _;
use base64::Engine as _;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture, request};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Value, json};

fn start() -> EmulatorProcess {
    EmulatorProcess::start(&basic_fixture(3600)).expect("emulator")
}

/// GET on the API port (where the issuer's public documents are), without a User-Agent: an
/// issuer is not GitHub's API and must not demand one.
fn get(emulator: &EmulatorProcess, path: &str) -> (u16, Value) {
    let response = request(
        &emulator.urls.api_url,
        None,
        "GET",
        path,
        &[("User-Agent", "")],
        None,
    )
    .expect("request");
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

fn jwks(emulator: &EmulatorProcess, issuer_path: &str) -> JwkSet {
    let (status, body) = get(emulator, &format!("{issuer_path}/.well-known/jwks"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("a JWKS")
}

/// Verifies like a careful verifier: the key found by `kid`, the algorithm taken from the JWK.
fn verify(
    token: &str,
    set: &JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.unwrap_or_default();
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    let alg = algorithm_of(jwk);
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)
        .map(|data| data.claims)
}

fn algorithm_of(jwk: &Jwk) -> Algorithm {
    let alg = jwk.common.key_algorithm.expect("every JWK names its alg");
    Algorithm::try_from(alg).expect("a signing algorithm")
}

fn b64_json(part: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn actions_request(hostile: Option<&str>) -> Value {
    let mut request = json!({
        "preset": {"kind": "github_actions", "repository": "acme/widgets", "ref": "refs/heads/main"},
        "aud": "ghapp",
    });
    if let Some(hostile) = hostile {
        request["hostile"] = json!(hostile);
    }
    request
}

#[test]
fn discovery_jwks_and_minted_tokens_verify_with_rs256_and_es256() {
    let emulator = start();
    let issuer = emulator.oidc_issuer();
    assert_eq!(issuer, emulator.urls.api_url);

    let (status, discovery) = get(&emulator, "/.well-known/openid-configuration");
    assert_eq!(status, 200, "{discovery}");
    assert_eq!(discovery["issuer"], issuer.as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
    assert_eq!(jwks_uri, format!("{issuer}/.well-known/jwks"));
    let set = jwks(&emulator, "");
    assert_eq!(set.keys.len(), 2, "one RS256 and one ES256 key");
    let mut algs: Vec<String> = set
        .keys
        .iter()
        .map(|k| {
            let kid = k.common.key_id.clone().expect("kid");
            assert!(!kid.is_empty());
            assert_eq!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Signature)
            );
            algorithm_of(k);
            format!("{:?}", k.common.key_algorithm.expect("alg"))
        })
        .collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "RS256"]);

    // GitHub Actions shape, RS256.
    let token = emulator
        .github_actions_id_token("acme/widgets", "refs/heads/main", "ghapp")
        .expect("mint");
    let claims = verify(&token, &set, &issuer, "ghapp").expect("verifies");
    assert_eq!(claims["sub"], "repo:acme/widgets:ref:refs/heads/main");
    assert_eq!(claims["repository"], "acme/widgets");
    assert_eq!(claims["repository_owner"], "acme");
    assert_eq!(claims["ref"], "refs/heads/main");
    assert_eq!(
        claims["job_workflow_ref"],
        "acme/widgets/.github/workflows/ci.yml@refs/heads/main"
    );
    for name in ["sha", "workflow", "actor", "run_id", "repository_id", "jti"] {
        assert!(claims[name].is_string(), "{name} missing: {claims}");
    }
    assert_eq!(
        jsonwebtoken::decode_header(&token).expect("header").alg,
        Algorithm::RS256
    );
    // GitHub's default audience when none is asked for.
    let default_aud = emulator
        .mint_id_token_answer(
            json!({"preset": {"kind": "github_actions", "repository": "acme/widgets"}}),
        )
        .expect("mint");
    assert_eq!(default_aud["claims"]["aud"], "https://github.com/acme");

    // Kubernetes shape, ES256, extra claims and a lifetime.
    let answer = emulator
        .mint_id_token_answer(json!({
            "preset": {"kind": "kubernetes", "namespace": "ci", "service_account": "builder", "pod": "builder-7"},
            "aud": ["ghapp"],
            "alg": "ES256",
            "lifetime_secs": 600,
            "claims": {"extra": "yes"},
        }))
        .expect("mint");
    let token = answer["token"].as_str().expect("token");
    assert_eq!(
        jsonwebtoken::decode_header(token).expect("header").alg,
        Algorithm::ES256
    );
    let claims = verify(token, &set, &issuer, "ghapp").expect("ES256 verifies");
    assert_eq!(claims["sub"], "system:serviceaccount:ci:builder");
    assert_eq!(claims["kubernetes.io"]["namespace"], "ci");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "builder-7");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "builder");
    assert!(claims["kubernetes.io"]["serviceaccount"]["uid"].is_string());
    assert!(claims["kubernetes.io"]["node"]["name"].is_string());
    assert_eq!(claims["aud"], json!(["ghapp"]));
    assert_eq!(claims["extra"], "yes");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        600
    );

    // Without a preset, sub and aud are required; unknown fields are refused.
    assert!(emulator.mint_id_token(json!({"sub": "x"})).is_err());
    assert!(
        emulator
            .mint_id_token(json!({"sub": "x", "aud": "a", "bogus": 1}))
            .is_err()
    );
    assert!(
        emulator
            .mint_id_token(json!({"sub": "x", "aud": "a"}))
            .is_ok()
    );
}

#[test]
fn each_hostile_variant_has_the_property_it_claims() {
    let emulator = start();
    let issuer = emulator.oidc_issuer();
    let mint = |hostile: &str| {
        emulator
            .mint_id_token(actions_request(Some(hostile)))
            .unwrap_or_else(|e| panic!("{hostile}: {e:#}"))
    };
    let set = jwks(&emulator, "");
    let kind = |token: &str| {
        verify(token, &set, &issuer, "ghapp")
            .expect_err("must not verify")
            .into_kind()
    };

    assert!(
        verify(
            &emulator.mint_id_token(actions_request(None)).expect("mint"),
            &set,
            &issuer,
            "ghapp"
        )
        .is_ok()
    );
    assert_eq!(kind(&mint("expired")), ErrorKind::ExpiredSignature);
    assert_eq!(kind(&mint("not_yet_valid")), ErrorKind::ImmatureSignature);
    assert_eq!(kind(&mint("wrong_audience")), ErrorKind::InvalidAudience);
    assert_eq!(kind(&mint("wrong_issuer")), ErrorKind::InvalidIssuer);

    // Wrong key: the kid is the real signing key's, the signature is not.
    let wrong_key = mint("wrong_key");
    let header = jsonwebtoken::decode_header(&wrong_key).expect("header");
    assert!(set.find(header.kid.as_deref().expect("kid")).is_some());
    assert_eq!(kind(&wrong_key), ErrorKind::InvalidSignature);

    // Unknown kid: no JWKS key has it, yet the real key made the signature.
    let unknown = mint("unknown_kid");
    let header = jsonwebtoken::decode_header(&unknown).expect("header");
    assert!(set.find(header.kid.as_deref().expect("kid")).is_none());
    let rs256 = set
        .keys
        .iter()
        .find(|k| algorithm_of(k) == Algorithm::RS256)
        .expect("RS256 key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["ghapp"]);
    jsonwebtoken::decode::<Value>(
        &unknown,
        &DecodingKey::from_jwk(rs256).expect("key"),
        &validation,
    )
    .expect("signed by the real key");

    // alg none: three parts, the last empty, header alg "none"; jsonwebtoken refuses it.
    let none = mint("alg_none");
    let parts: Vec<&str> = none.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2], "");
    assert_eq!(b64_json(parts[0])["alg"], "none");
    assert_eq!(
        b64_json(parts[1])["sub"],
        "repo:acme/widgets:ref:refs/heads/main"
    );
    assert!(
        jsonwebtoken::decode_header(&none).is_err()
            || verify(&none, &set, &issuer, "ghapp").is_err()
    );

    // HS256 keyed with the public key: it verifies only as HMAC over the public key's bytes.
    let AlgorithmParameters::RSA(rsa) = &rs256.algorithm else {
        panic!("RS256 JWK without RSA parameters");
    };
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let components = aws_lc_rs::rsa::PublicKeyComponents {
        n: url.decode(&rsa.n).expect("n"),
        e: url.decode(&rsa.e).expect("e"),
    };
    let spki_der = components.as_der().expect("SPKI").as_ref().to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&spki_der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("ascii"));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    let mut hmac = Validation::new(Algorithm::HS256);
    hmac.set_audience(&["ghapp"]);
    for (variant, secret) in [
        ("hs256_public_key_pem", pem.as_bytes().to_vec()),
        ("hs256_public_key_der", spki_der.clone()),
    ] {
        let token = mint(variant);
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, Algorithm::HS256, "{variant}");
        assert_eq!(
            header.kid.as_deref(),
            rs256.common.key_id.as_deref(),
            "{variant}"
        );
        // The confused verifier (public key bytes as the HMAC secret) accepts it …
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(&secret), &hmac)
            .unwrap_or_else(|e| panic!("{variant} should verify as HMAC over the key: {e}"));
        // … a careful one (algorithm from the JWK) does not.
        assert!(verify(&token, &set, &issuer, "ghapp").is_err(), "{variant}");
    }

    // Oversized: over 100 KB, and otherwise valid.
    let big = mint("oversized");
    assert!(big.len() > 100_000, "{}", big.len());
    let claims =
        verify(&big, &set, &issuer, "ghapp").expect("an oversized token is validly signed");
    assert_eq!(claims["padding"].as_str().map(str::len), Some(100_000));

    // A kid of one issuer on another's token: signed by issuer "other", naming the default one.
    let other = emulator.oidc_issuer_info("other").expect("second issuer");
    assert_eq!(other["issuer"], format!("{issuer}/oidc/other"));
    let foreign = emulator
        .mint_id_token(json!({"sub": "s", "aud": "ghapp", "signing_issuer": "other"}))
        .expect("mint");
    let header = jsonwebtoken::decode_header(&foreign).expect("header");
    assert_eq!(header.kid.as_deref(), other["rs256_kid"].as_str());
    assert!(set.find(header.kid.as_deref().expect("kid")).is_none());
    let other_set = jwks(&emulator, "/oidc/other");
    let claims = verify(&foreign, &other_set, &issuer, "ghapp")
        .expect("verifies with the other issuer's key");
    assert_eq!(claims["iss"], issuer.as_str());
    let (status, discovery) = get(&emulator, "/oidc/other/.well-known/openid-configuration");
    assert_eq!(status, 200);
    assert_eq!(discovery["issuer"], format!("{issuer}/oidc/other"));
    assert_eq!(get(&emulator, "/oidc/never-made/.well-known/jwks").0, 404);
}

#[test]
fn rotation_changes_the_signing_kid_and_keep_old_decides_what_stays() {
    let emulator = start();
    let issuer = emulator.oidc_issuer();
    let before = emulator.mint_id_token(actions_request(None)).expect("mint");
    let old_kid = jsonwebtoken::decode_header(&before)
        .expect("h")
        .kid
        .expect("kid");

    let rotated = emulator.rotate_oidc_keys(true).expect("rotate");
    assert_eq!(rotated["previous_kid"], old_kid.as_str());
    let new_kid = rotated["kid"].as_str().expect("kid").to_string();
    assert_ne!(new_kid, old_kid);
    let set = jwks(&emulator, "");
    assert!(set.find(&old_kid).is_some() && set.find(&new_kid).is_some());
    let after = emulator.mint_id_token(actions_request(None)).expect("mint");
    assert_eq!(
        jsonwebtoken::decode_header(&after)
            .expect("h")
            .kid
            .as_deref(),
        Some(new_kid.as_str())
    );
    verify(&before, &set, &issuer, "ghapp").expect("the kept old key still verifies");
    verify(&after, &set, &issuer, "ghapp").expect("the new key verifies");

    let dropped = emulator.rotate_oidc_keys(false).expect("rotate");
    assert_eq!(dropped["previous_kid"], new_kid.as_str());
    let set = jwks(&emulator, "");
    assert!(set.find(&new_kid).is_none(), "dropped");
    assert!(set.find(&old_kid).is_some(), "kept by the first rotation");
    assert!(set.find(dropped["kid"].as_str().expect("kid")).is_some());
    // ES256 keeps its key through RS256 rotations.
    assert_eq!(set.keys.len(), 3);
}

#[test]
fn fetch_counters_count_discovery_and_jwks() {
    let emulator = start();
    emulator.mint_id_token(actions_request(None)).expect("mint");
    assert_eq!(
        emulator.jwks_fetches().expect("stats"),
        0,
        "minting fetches nothing"
    );
    for _ in 0..3 {
        jwks(&emulator, "");
    }
    get(&emulator, "/.well-known/openid-configuration");
    assert_eq!(emulator.jwks_fetches().expect("stats"), 3);
    assert_eq!(emulator.discovery_fetches().expect("stats"), 1);
    // Unknown documents and issuers are not counted; the GitHub API counters are untouched.
    assert_eq!(get(&emulator, "/.well-known/nothing").0, 404);
    assert_eq!(get(&emulator, "/oidc/nobody/.well-known/jwks").0, 404);
    assert_eq!(emulator.jwks_fetches().expect("stats"), 3);
    let stats = emulator.stats().expect("api stats");
    assert!(
        !stats["requests"].to_string().contains("well-known"),
        "{stats}"
    );
    emulator.reset_oidc_stats().expect("reset");
    assert_eq!(emulator.jwks_fetches().expect("stats"), 0);
    let response = request(
        &emulator.urls.api_url,
        None,
        "POST",
        "/.well-known/jwks",
        &[],
        None,
    )
    .expect("request");
    assert_eq!(response.status, 405);
}

#[test]
fn over_tls_the_issuer_is_the_https_api_url() {
    let emulator =
        EmulatorProcess::start_with_args(&basic_fixture(3600), &["--tls"]).expect("emulator");
    let issuer = emulator.oidc_issuer();
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    let ca = emulator.urls.ca_file.clone().expect("ca_file");
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca).expect("ca")).expect("pem"),
        )
        .build()
        .expect("client");
    let discovery: Value = client
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .expect("discovery")
        .json()
        .expect("json");
    assert_eq!(discovery["issuer"], issuer.as_str());
    let set: JwkSet = client
        .get(discovery["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .expect("jwks")
        .json()
        .expect("json");
    let token = emulator
        .kubernetes_id_token("default", "ghapp-client", "ghapp")
        .expect("mint over the plain admin port");
    let claims = verify(&token, &set, &issuer, "ghapp").expect("verifies");
    assert_eq!(claims["iss"], issuer.as_str());
}
