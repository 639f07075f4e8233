//! App JWT rules: GitHub's check order, exact messages and statuses, and the rejection counters.

mod common;

use common::*;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use serde_json::json;

const UNDECODABLE: &str = "A JSON web token could not be decoded";
const BAD_ISS: &str = "'Issuer' claim ('iss') must be an Integer";
const EXPIRED: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
const IAT: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

fn fixture() -> String {
    // A second App whose key signs JWTs that claim to be App 1: the "wrong key" case.
    format!(
        "{}\n[[apps]]\nid = 2\nclient_id = \"Iv1.second\"\nslug = \"second\"\nprivate_key_out = \"app2.pem\"\n",
        basic_fixture(3600)
    )
}

#[test]
fn jwt_rules_follow_github() {
    let emu = EmulatorProcess::start(&fixture()).expect("start");
    let n = now();

    // Good JWTs: numeric iss, numeric-string iss, client id; Bearer and bearer schemes.
    for iss in [json!(1), json!("1"), json!("Iv1.0123456789abcdef")] {
        let jwt = jwt_with(
            &emu,
            "app1.pem",
            json!({"iat": n - 60, "exp": n + 540, "iss": iss}),
        );
        let response = api(&emu, "GET", "/app", Some(&jwt), None);
        assert_eq!(
            response.status,
            200,
            "iss {iss}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.json().expect("json")["slug"], "ghapp-test");
    }
    let jwt = good_jwt(&emu);
    let response = api_with_auth(&emu, "GET", "/app", Some(&format!("bearer {jwt}")), None);
    assert_eq!(response.status, 200, "scheme bearer");
    // GitHub takes JWTs only as Bearer: `token <JWT>` is read as an OAuth token that does not
    // exist.
    for scheme in ["token", "Token"] {
        let response = api_with_auth(&emu, "GET", "/app", Some(&format!("{scheme} {jwt}")), None);
        assert_error(&response, 401, "Bad credentials");
    }
    assert_eq!(
        emu.stats().expect("stats")["jwt_rejections"]["not_bearer"],
        2
    );
    // exp exactly 600 s ahead is allowed; iat = now is allowed.
    let edge = jwt_with(
        &emu,
        "app1.pem",
        json!({"iat": now(), "exp": now() + 600, "iss": 1}),
    );
    assert_eq!(api(&emu, "GET", "/app", Some(&edge), None).status, 200);

    // The wrong key: App 2's key claiming App 1.
    let wrong = jwt_with(
        &emu,
        "app2.pem",
        json!({"iat": n - 60, "exp": n + 540, "iss": 1}),
    );
    assert_error(
        &api(&emu, "GET", "/app", Some(&wrong), None),
        401,
        UNDECODABLE,
    );
    // Garbage, an installation token, and another algorithm.
    assert_error(
        &api(&emu, "GET", "/app", Some("not-a-jwt"), None),
        401,
        UNDECODABLE,
    );
    let token = mint(&emu, 100, json!({}));
    assert_error(
        &api(&emu, "GET", "/app", Some(&token), None),
        401,
        UNDECODABLE,
    );
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iat": n - 60, "exp": n + 540, "iss": 1}),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .expect("hs256");
    assert_error(
        &api(&emu, "GET", "/app", Some(&hs256), None),
        401,
        UNDECODABLE,
    );
    // No credentials at all.
    assert_error(&api(&emu, "GET", "/app", None, None), 401, UNDECODABLE);

    // iss: not an integer / unknown client id; unknown App.
    for iss in [json!("1x"), json!("Iv1.unknown"), json!(1.5), json!(-1)] {
        let jwt = jwt_with(
            &emu,
            "app1.pem",
            json!({"iat": n - 60, "exp": n + 540, "iss": iss}),
        );
        assert_error(&api(&emu, "GET", "/app", Some(&jwt), None), 401, BAD_ISS);
    }
    let missing_iss = jwt_with(&emu, "app1.pem", json!({"iat": n - 60, "exp": n + 540}));
    assert_error(
        &api(&emu, "GET", "/app", Some(&missing_iss), None),
        401,
        BAD_ISS,
    );
    let unknown = jwt_with(
        &emu,
        "app1.pem",
        json!({"iat": n - 60, "exp": n + 540, "iss": 99}),
    );
    assert_error(
        &api(&emu, "GET", "/app", Some(&unknown), None),
        404,
        "Integration not found",
    );

    // Time claims.
    let expired = jwt_with(
        &emu,
        "app1.pem",
        json!({"iat": n - 700, "exp": n - 100, "iss": 1}),
    );
    assert_error(
        &api(&emu, "GET", "/app", Some(&expired), None),
        401,
        EXPIRED,
    );
    let no_exp = jwt_with(&emu, "app1.pem", json!({"iat": n - 60, "iss": 1}));
    assert_error(&api(&emu, "GET", "/app", Some(&no_exp), None), 401, EXPIRED);
    let too_far = jwt_with(
        &emu,
        "app1.pem",
        json!({"iat": n - 60, "exp": n + 700, "iss": 1}),
    );
    assert_error(
        &api(&emu, "GET", "/app", Some(&too_far), None),
        401,
        TOO_FAR,
    );
    let future_iat = jwt_with(
        &emu,
        "app1.pem",
        json!({"iat": n + 30, "exp": n + 540, "iss": 1}),
    );
    assert_error(&api(&emu, "GET", "/app", Some(&future_iat), None), 401, IAT);
    // Order: a bad iss is reported before a bad signature or bad times.
    let bad_everything = jwt_with(
        &emu,
        "app2.pem",
        json!({"iat": n + 30, "exp": n - 5, "iss": "x"}),
    );
    assert_error(
        &api(&emu, "GET", "/app", Some(&bad_everything), None),
        401,
        BAD_ISS,
    );
    // ... and a bad signature before bad times.
    let wrong_and_expired = jwt_with(
        &emu,
        "app2.pem",
        json!({"iat": n - 700, "exp": n - 100, "iss": 1}),
    );
    assert_error(
        &api(&emu, "GET", "/app", Some(&wrong_and_expired), None),
        401,
        UNDECODABLE,
    );

    let stats = emu.stats().expect("stats");
    let reasons = &stats["jwt_rejections"];
    assert_eq!(reasons["undecodable"], 5, "{stats}");
    assert_eq!(reasons["missing"], 1, "{stats}");
    assert_eq!(reasons["bad_iss"], 6, "{stats}");
    assert_eq!(reasons["unknown_app"], 1, "{stats}");
    assert_eq!(reasons["expired"], 2, "{stats}");
    assert_eq!(reasons["exp_too_far"], 1, "{stats}");
    assert_eq!(reasons["iat_future"], 1, "{stats}");
}

#[test]
fn clock_offset_shifts_date_and_jwt_checks() {
    let emu = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    let jwt = good_jwt(&emu); // iat = now - 60, exp = now + 540

    // GitHub's clock 700 s ahead: our exp is already in its past.
    emu.fault(json!({"kind": "clock_offset", "secs": 700}))
        .expect("fault");
    let response = api(&emu, "GET", "/app", Some(&jwt), None);
    assert_error(&response, 401, EXPIRED);
    let date =
        httpdate::parse_http_date(response.header("date").expect("date")).expect("http date");
    let ahead = date
        .duration_since(std::time::SystemTime::now())
        .expect("Date is ahead")
        .as_secs();
    assert!((690..=710).contains(&ahead), "Date is {ahead} s ahead");

    // GitHub's clock 300 s behind: exp is more than 600 s ahead of it.
    emu.fault(json!({"kind": "clock_offset", "secs": -300}))
        .expect("fault");
    assert_error(&api(&emu, "GET", "/app", Some(&jwt), None), 401, TOO_FAR);
    // 100 s behind: a JWT with iat = now - 10 and exp = now + 300 has its iat in GitHub's future.
    emu.fault(json!({"kind": "clock_offset", "secs": -100}))
        .expect("fault");
    let n = now();
    let short = jwt_with(
        &emu,
        "app1.pem",
        json!({"iat": n - 10, "exp": n + 300, "iss": 1}),
    );
    assert_error(&api(&emu, "GET", "/app", Some(&short), None), 401, IAT);

    emu.clear_faults().expect("clear");
    assert_eq!(api(&emu, "GET", "/app", Some(&jwt), None).status, 200);
}
