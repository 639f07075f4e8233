//! Where GitHub is strict the emulator is too (issue 13, items 8 and 9): User-Agent required,
//! JWTs only as Bearer (tests/jwt.rs), GHES before 3.14 refusing client-id issuers,
//! per-installation primary and secondary rate limits, minimal answers, Enterprise
//! installations, renamed repositories (301), repository runner tokens, `GET /repos/{o}/{r}` with
//! every required field, and 401 for a bad token on any route.

mod common;

use common::*;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture, request};
use github_emulator::schema::Schema;
use serde_json::{Value, json};

fn missing_fields(schema: Schema, value: &Value) -> Vec<&'static str> {
    schema
        .required_fields()
        .into_iter()
        .filter(|f| value.get(f).is_none())
        .collect()
}

#[test]
fn requests_without_a_user_agent_get_githubs_403() {
    let emu = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    // The testkit's client sends one unless told otherwise; an empty one is GitHub's own example.
    let response = request(
        &emu.urls.api_url,
        None,
        "GET",
        "/",
        &[("User-Agent", "")],
        None,
    )
    .expect("request");
    assert_eq!(response.status, 403);
    assert_eq!(response.header("content-type"), Some("text/html"));
    let body = String::from_utf8_lossy(&response.body);
    assert!(
        body.starts_with("Request forbidden by administrative rules. Please make sure your request has a User-Agent header"),
        "{body}"
    );
    // Before authentication and routing: even a good JWT on a real route.
    let jwt = good_jwt(&emu);
    let auth = format!("Bearer {jwt}");
    let response = request(
        &emu.urls.api_url,
        None,
        "GET",
        "/app",
        &[("User-Agent", " "), ("Authorization", &auth)],
        None,
    )
    .expect("request");
    assert_eq!(response.status, 403);
    // reqwest sends no User-Agent by default.
    let plain = reqwest::blocking::get(format!("{}/rate_limit", emu.urls.api_url)).expect("get");
    assert_eq!(plain.status().as_u16(), 403);
    // With one, the same request works.
    assert_eq!(api(&emu, "GET", "/app", Some(&jwt), None).status, 200);
}

#[test]
fn ghes_before_3_14_refuses_client_id_issuers() {
    for (version, client_id_ok) in [("3.13", false), ("3.14", true)] {
        let fixture = format!("ghes_version = \"{version}\"\n{}", basic_fixture(3600));
        let emu = EmulatorProcess::start(&fixture).expect("start");
        let n = now();
        let by_client_id = jwt_with(
            &emu,
            "app1.pem",
            json!({"iat": n - 60, "exp": n + 540, "iss": "Iv1.0123456789abcdef"}),
        );
        let response = api(&emu, "GET", "/api/v3/app", Some(&by_client_id), None);
        if client_id_ok {
            assert_eq!(response.status, 200, "GHES {version}");
        } else {
            assert_error(&response, 401, "'Issuer' claim ('iss') must be an Integer");
        }
        let by_app_id = good_jwt(&emu);
        assert_eq!(
            api(&emu, "GET", "/api/v3/app", Some(&by_app_id), None).status,
            200,
            "GHES {version}: the App id always works"
        );
    }
    assert!(
        EmulatorProcess::start(&format!("ghes_version = \"three\"\n{}", basic_fixture(60)))
            .is_err(),
        "a malformed version is a fixture error"
    );
}

#[test]
fn a_rate_limited_installation_does_not_hold_another() {
    let fixture = format!(
        "{}\n[rate_limit]\nenforce = true\n",
        basic_fixture(3600).replace("id = 100\napp = 1\n", "id = 100\napp = 1\nrate_limit = 2\n")
    );
    let emu = EmulatorProcess::start(&fixture).expect("start");
    let limited = mint(&emu, 100, json!({}));
    let other = mint(&emu, 200, json!({}));

    for expected_remaining in [1, 0] {
        let response = api(
            &emu,
            "GET",
            "/installation/repositories",
            Some(&limited),
            None,
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-ratelimit-limit"), Some("2"));
        assert_eq!(
            response.header("x-ratelimit-remaining"),
            Some(expected_remaining.to_string().as_str())
        );
        assert_eq!(response.header("x-ratelimit-resource"), Some("core"));
        assert!(response.header("x-ratelimit-used").is_some());
    }
    let refused = api(
        &emu,
        "GET",
        "/installation/repositories",
        Some(&limited),
        None,
    );
    assert_error(
        &refused,
        403,
        "API rate limit exceeded for installation ID 100. If you reach out to GitHub Support for help, please include the request ID.",
    );
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    let reset: i64 = refused
        .header("x-ratelimit-reset")
        .expect("reset")
        .parse()
        .expect("number");
    assert!(reset > now(), "the reset is in the future");
    assert!(
        refused.header("retry-after").is_none(),
        "primary: no retry-after"
    );

    // The other installation, and the App's JWT bucket, are served at once.
    let served = api(
        &emu,
        "GET",
        "/installation/repositories",
        Some(&other),
        None,
    );
    assert_eq!(served.status, 200);
    assert_eq!(served.header("x-ratelimit-limit"), Some("5000"));
    mint(&emu, 100, json!({}));
    // GraphQL is its own resource name on the same installation bucket.
    let graphql = api(
        &emu,
        "POST",
        "/graphql",
        Some(&other),
        Some(r#"{"query":"query{viewer{login}}"}"#),
    );
    assert_eq!(graphql.header("x-ratelimit-resource"), Some("graphql"));
}

#[test]
fn secondary_rate_limits_answer_with_retry_after() {
    let fixture = format!(
        "{}\n[rate_limit]\nsecondary_per_minute = 2\n",
        basic_fixture(3600)
    );
    let emu = EmulatorProcess::start(&fixture).expect("start");
    let token = mint(&emu, 100, json!({}));
    // At most one minute boundary falls inside these requests, so one window sees three.
    let refused = (0..6)
        .map(|_| {
            api(
                &emu,
                "GET",
                "/installation/repositories",
                Some(&token),
                None,
            )
        })
        .find(|r| r.status != 200)
        .expect("the secondary limit answered");
    assert_error(
        &refused,
        403,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
    );
    let retry: u64 = refused
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // Another installation has its own window.
    let other = mint(&emu, 200, json!({}));
    assert_eq!(
        api(
            &emu,
            "GET",
            "/installation/repositories",
            Some(&other),
            None
        )
        .status,
        200
    );
}

#[test]
fn minimal_mode_sends_only_required_fields() {
    let fixture = format!("minimal = true\n{}", basic_fixture(3600));
    let emu = EmulatorProcess::start(&fixture).expect("start");
    for body in [json!({}), json!({"repositories": ["widgets"]})] {
        let token = emu.mint_token(100, body.clone()).expect("mint");
        let keys: Vec<&String> = token.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["expires_at", "token"], "request {body}: {token}");
    }
    let jwt = good_jwt(&emu);
    let app = api(&emu, "GET", "/app", Some(&jwt), None)
        .json()
        .expect("json");
    assert!(app.get("slug").is_none() && app.get("installations_count").is_none());
    assert!(missing_fields(Schema::Integration, &app).is_empty());
    let inst = api(&emu, "GET", "/app/installations/100", Some(&jwt), None)
        .json()
        .expect("json");
    assert!(inst.get("client_id").is_none() && inst.get("single_file_paths").is_none());
    assert!(
        missing_fields(Schema::Installation, &inst).is_empty(),
        "{inst}"
    );
    assert!(inst["account"].get("user_view_type").is_none());
    // The minimal token still works.
    let token = mint(&emu, 100, json!({}));
    let repo = api(&emu, "GET", "/repos/acme/widgets", Some(&token), None)
        .json()
        .expect("json");
    assert!(repo.get("permissions").is_none() && repo.get("visibility").is_none());
    assert!(missing_fields(Schema::FullRepository, &repo).is_empty());
}

#[test]
fn enterprise_installations_are_listed_but_own_no_repositories() {
    let fixture = format!(
        "{}\n[[installations]]\nid = 900\napp = 1\naccount = \"acme-ent\"\naccount_type = \"Enterprise\"\npermissions = {{ enterprise_custom_properties_for_organizations = \"read\" }}\n",
        basic_fixture(3600)
    );
    let emu = EmulatorProcess::start(&fixture).expect("start");
    let jwt = good_jwt(&emu);
    let list = api(&emu, "GET", "/app/installations", Some(&jwt), None)
        .json()
        .expect("json");
    let ent = list
        .as_array()
        .expect("array")
        .iter()
        .find(|i| i["id"] == 900)
        .expect("listed")
        .clone();
    assert_eq!(ent["target_type"], "Enterprise");
    assert_eq!(ent["account"]["slug"], "acme-ent");
    assert!(missing_fields(Schema::Enterprise, &ent["account"]).is_empty());
    assert!(
        ent["account"].get("login").is_none(),
        "an enterprise, not a user"
    );
    for path in [
        "/orgs/acme-ent/installation",
        "/users/acme-ent/installation",
    ] {
        assert_eq!(
            api(&emu, "GET", path, Some(&jwt), None).status,
            404,
            "{path}"
        );
    }
    let token = mint(&emu, 900, json!({}));
    let repos = api(
        &emu,
        "GET",
        "/installation/repositories",
        Some(&token),
        None,
    )
    .json()
    .expect("json");
    assert_eq!(repos["total_count"], 0);
    assert!(
        EmulatorProcess::start(&fixture.replace(
            "account_type = \"Enterprise\"\n",
            "account_type = \"Enterprise\"\nrepositories = [\"x\"]\n"
        ))
        .is_err(),
        "an Enterprise installation with repositories is a fixture error"
    );
}

#[test]
fn renamed_repositories_answer_301_to_their_id() {
    let fixture = basic_fixture(3600).replace(
        "full_name = \"acme/widgets\"\n",
        "full_name = \"acme/widgets\"\nid = 4242\nprevious_names = [\"acme/old-widgets\", \"olduser/widgets\"]\n",
    );
    let emu = EmulatorProcess::start(&fixture).expect("start");
    let jwt = good_jwt(&emu);
    for (old, prefix) in [("acme/old-widgets", ""), ("olduser/widgets", "/api/v3")] {
        let moved = api(
            &emu,
            "GET",
            &format!("{prefix}/repos/{old}/installation"),
            Some(&jwt),
            None,
        );
        assert_eq!(moved.status, 301);
        let expected = format!(
            "{}{prefix}/repositories/4242/installation",
            emu.urls.api_url
        );
        assert_eq!(moved.header("location"), Some(expected.as_str()));
        assert_eq!(
            moved.json().expect("json"),
            json!({"message": "Moved Permanently", "url": expected,
                   "documentation_url": "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects"})
        );
        // Following it (with the same JWT) finds the installation.
        let path = expected.strip_prefix(&emu.urls.api_url).expect("same host");
        let followed = api(&emu, "GET", path, Some(&jwt), None);
        assert_eq!(followed.status, 200);
        assert_eq!(followed.json().expect("json")["id"], 100);
    }
    // Repository routes too, and the current name is served directly.
    let token = mint(&emu, 100, json!({}));
    let moved = api(&emu, "GET", "/repos/acme/old-widgets", Some(&token), None);
    assert_eq!(moved.status, 301);
    let by_id = api(&emu, "GET", "/repositories/4242", Some(&token), None);
    assert_eq!(by_id.json().expect("json")["full_name"], "acme/widgets");
    assert_eq!(
        api(
            &emu,
            "GET",
            "/repos/acme/widgets/installation",
            Some(&jwt),
            None
        )
        .status,
        200
    );
    // Authentication still comes first.
    assert_error(
        &api(
            &emu,
            "GET",
            "/repos/acme/old-widgets",
            Some("ghs_nope"),
            None,
        ),
        401,
        "Bad credentials",
    );
}

#[test]
fn repository_runner_tokens_need_administration_write() {
    let fixture = format!(
        "{}\n[[installations]]\nid = 500\napp = 1\naccount = \"solo\"\naccount_type = \"User\"\nrepositories = [\"runner-repo\"]\npermissions = {{ administration = \"write\", metadata = \"read\" }}\n",
        basic_fixture(3600)
    );
    let emu = EmulatorProcess::start(&fixture).expect("start");
    let token = mint(&emu, 500, json!({}));
    for kind in ["registration-token", "remove-token"] {
        let path = format!("/repos/solo/runner-repo/actions/runners/{kind}");
        let response = api(&emu, "POST", &path, Some(&token), None);
        assert_eq!(response.status, 201, "{kind}");
        let body = response.json().expect("json");
        assert_eq!(body["token"].as_str().expect("token").len(), 29);
        assert!(
            body["expires_at"]
                .as_str()
                .expect("at")
                .ends_with(".000+00:00")
        );
    }
    // A token without administration: 403; a repository the token does not reach: 404.
    let contents_only = mint(&emu, 100, json!({}));
    assert_error(
        &api(
            &emu,
            "POST",
            "/repos/acme/widgets/actions/runners/registration-token",
            Some(&contents_only),
            None,
        ),
        403,
        "Resource not accessible by integration",
    );
    assert_error(
        &api(
            &emu,
            "POST",
            "/repos/acme/widgets/actions/runners/registration-token",
            Some(&token),
            None,
        ),
        404,
        "Not Found",
    );
}

#[test]
fn get_repository_carries_every_required_field() {
    let fixture = basic_fixture(3600).replace(
        "full_name = \"octo/tools\"\n",
        "full_name = \"octo/tools\"\nprivate = false\n",
    );
    let emu = EmulatorProcess::start(&fixture).expect("start");
    let token = mint(&emu, 100, json!({}));
    for prefix in ["", "/api/v3"] {
        let response = api(
            &emu,
            "GET",
            &format!("{prefix}/repos/ACME/widgets"),
            Some(&token),
            None,
        );
        assert_eq!(response.status, 200);
        let repo = response.json().expect("json");
        assert_eq!(repo["full_name"], "acme/widgets");
        assert_eq!(repo["permissions"]["push"], true);
        assert_eq!(
            repo["url"],
            format!("{}{prefix}/repos/acme/widgets", emu.urls.api_url)
        );
        assert!(
            missing_fields(Schema::FullRepository, &repo).is_empty(),
            "{:?}",
            missing_fields(Schema::FullRepository, &repo)
        );
        assert!(missing_fields(Schema::SimpleUser, &repo["owner"]).is_empty());
    }
    let listed = api(
        &emu,
        "GET",
        "/installation/repositories",
        Some(&token),
        None,
    )
    .json()
    .expect("json");
    for repo in listed["repositories"].as_array().expect("array") {
        assert!(
            missing_fields(Schema::Repository, repo).is_empty(),
            "{repo}"
        );
    }
    // Not reachable by the token (private, or another account's): 404 like GitHub.
    assert_error(
        &api(&emu, "GET", "/repos/acme/private", Some(&token), None),
        404,
        "Not Found",
    );
    // Anonymous: public repositories only.
    assert_eq!(
        api(&emu, "GET", "/repos/octo/tools", None, None).status,
        200
    );
    assert_eq!(
        api(&emu, "GET", "/repos/acme/widgets", None, None).status,
        404
    );
}

#[test]
fn a_bad_token_gets_401_on_any_route_first() {
    let emu = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    for path in ["/repos/acme/widgets/issues", "/user", "/nothing/here"] {
        assert_error(
            &api(
                &emu,
                "GET",
                path,
                Some("ghs_notARealToken0000000000000000000000"),
                None,
            ),
            401,
            "Bad credentials",
        );
        assert_error(&api(&emu, "GET", path, None, None), 404, "Not Found");
    }
    assert_error(
        &api_with_auth(&emu, "GET", "/nothing", Some("Garbage"), None),
        401,
        "Bad credentials",
    );
    // Expired: 401 on an unknown route too; a valid one there gets 404.
    let token = mint(&emu, 100, json!({}));
    assert_error(
        &api(&emu, "GET", "/nothing", Some(&token), None),
        404,
        "Not Found",
    );
    emu.fault(json!({"kind": "clock_offset", "secs": 7200}))
        .expect("fault");
    assert_error(
        &api(&emu, "GET", "/nothing", Some(&token), None),
        401,
        "Bad credentials",
    );
}
