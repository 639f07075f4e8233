//! REST routes, both URL layouts, pagination, minting and narrowing, token lifecycle.

mod common;

use common::*;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture, request};
use serde_json::{Value, json};

/// The basic fixture plus an installation with runner permissions and a few extra installations
/// for pagination (7 in total).
fn fixture(ttl: u64) -> String {
    let mut text = basic_fixture(ttl);
    text.push_str(
        "\n[[installations]]\nid = 300\napp = 1\naccount = \"runners-org\"\nrepositories = [\"ci\"]\npermissions = { organization_self_hosted_runners = \"write\", metadata = \"read\" }\n",
    );
    for (id, account) in [(401, "p1"), (402, "p2"), (403, "p3"), (404, "p4")] {
        text.push_str(&format!(
            "\n[[installations]]\nid = {id}\napp = 1\naccount = \"{account}\"\npermissions = {{ metadata = \"read\" }}\n"
        ));
    }
    text
}

fn links(response: &ghapp_testkit::emulator::HttpResponse) -> Vec<(String, String)> {
    response
        .header("link")
        .unwrap_or("")
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (url, rel) = part.split_once("; rel=").expect("link part");
            (
                rel.trim_matches('"').to_string(),
                url.trim_matches(|c| c == '<' || c == '>').to_string(),
            )
        })
        .collect()
}

#[test]
fn app_and_installation_lookups_in_both_layouts() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");
    let jwt = good_jwt(&emu);
    for prefix in ["", "/api/v3"] {
        let app = api(&emu, "GET", &format!("{prefix}/app"), Some(&jwt), None);
        assert_eq!(app.status, 200);
        let body = app.json().expect("json");
        assert_eq!(body["id"], 1);
        assert_eq!(body["client_id"], "Iv1.0123456789abcdef");
        assert_eq!(body["installations_count"], 7);
        assert!(app.header("x-ratelimit-remaining").is_some());

        let inst = api(
            &emu,
            "GET",
            &format!("{prefix}/app/installations/100"),
            Some(&jwt),
            None,
        )
        .json()
        .expect("json");
        assert_eq!(inst["account"]["login"], "acme");
        assert_eq!(inst["target_type"], "Organization");
        assert_eq!(inst["repository_selection"], "selected");
        assert_eq!(
            inst["permissions"],
            json!({"contents": "write", "metadata": "read"})
        );
        assert_eq!(inst["app_slug"], "ghapp-test");
        let expected_url = format!(
            "{}{prefix}/app/installations/100/access_tokens",
            emu.urls.api_url
        );
        assert_eq!(inst["access_tokens_url"], expected_url.as_str());
        assert_eq!(
            api(
                &emu,
                "GET",
                &format!("{prefix}/app/installations/401"),
                Some(&jwt),
                None
            )
            .json()
            .expect("json")["repository_selection"],
            "all"
        );
        assert_error(
            &api(
                &emu,
                "GET",
                &format!("{prefix}/app/installations/999"),
                Some(&jwt),
                None,
            ),
            404,
            "Not Found",
        );
        assert_error(
            &api(
                &emu,
                "GET",
                &format!("{prefix}/app/installations/abc"),
                Some(&jwt),
                None,
            ),
            404,
            "Not Found",
        );

        let by_repo = |owner: &str, repo: &str| {
            api(
                &emu,
                "GET",
                &format!("{prefix}/repos/{owner}/{repo}/installation"),
                Some(&jwt),
                None,
            )
        };
        assert_eq!(by_repo("acme", "widgets").json().expect("json")["id"], 100);
        assert_eq!(
            by_repo("ACME", "Widgets").json().expect("json")["id"],
            100,
            "case-insensitive"
        );
        assert_eq!(by_repo("octo", "tools").json().expect("json")["id"], 200);
        assert_error(&by_repo("acme", "private"), 404, "Not Found");
        assert_error(&by_repo("acme", "nope"), 404, "Not Found");

        let org = api(
            &emu,
            "GET",
            &format!("{prefix}/orgs/acme/installation"),
            Some(&jwt),
            None,
        );
        assert_eq!(org.json().expect("json")["id"], 100);
        assert_error(
            &api(
                &emu,
                "GET",
                &format!("{prefix}/orgs/octo/installation"),
                Some(&jwt),
                None,
            ),
            404,
            "Not Found",
        );
        let user = api(
            &emu,
            "GET",
            &format!("{prefix}/users/octo/installation"),
            Some(&jwt),
            None,
        );
        assert_eq!(user.json().expect("json")["target_type"], "User");
        assert_error(
            &api(
                &emu,
                "GET",
                &format!("{prefix}/users/acme/installation"),
                Some(&jwt),
                None,
            ),
            404,
            "Not Found",
        );
        assert_error(
            &api(
                &emu,
                "GET",
                &format!("{prefix}/no/such/route"),
                Some(&jwt),
                None,
            ),
            404,
            "Not Found",
        );
    }
    let stats = emu.stats().expect("stats");
    assert_eq!(
        stats["requests"]["GET /app"], 2,
        "GHES prefix stripped in stats: {stats}"
    );
    assert_eq!(
        stats["requests"]["GET /repos/{owner}/{repo}/installation"],
        10
    );
    // An unsupported API version is refused; the two real ones are accepted.
    let versioned = |v: &str| {
        request(
            &emu.urls.api_url,
            Some(&jwt),
            "GET",
            "/app",
            &[("X-GitHub-Api-Version", v)],
            None,
        )
        .expect("req")
    };
    assert_eq!(versioned("2022-11-28").status, 200);
    assert_eq!(versioned("2026-03-10").status, 200);
    assert_eq!(versioned("1999-01-01").status, 400);
}

#[test]
fn installation_list_paginates_with_link_headers() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");
    let jwt = good_jwt(&emu);
    let all = api(&emu, "GET", "/app/installations", Some(&jwt), None);
    assert_eq!(
        all.json().expect("json").as_array().expect("array").len(),
        7,
        "default per_page 30"
    );
    assert!(all.header("link").is_none());

    let mut ids = Vec::new();
    let mut path = "/api/v3/app/installations?per_page=3".to_string();
    let mut pages = 0;
    loop {
        let page = api(&emu, "GET", &path, Some(&jwt), None);
        assert_eq!(page.status, 200);
        pages += 1;
        ids.extend(
            page.json()
                .expect("json")
                .as_array()
                .expect("array")
                .iter()
                .map(|i| i["id"].as_u64().expect("id")),
        );
        let links = links(&page);
        if pages == 1 {
            let rels: Vec<&str> = links.iter().map(|(r, _)| r.as_str()).collect();
            assert_eq!(rels, ["next", "last"]);
            assert!(
                links[1]
                    .1
                    .ends_with("/api/v3/app/installations?per_page=3&page=3"),
                "{links:?}"
            );
        }
        if pages == 2 {
            let rels: Vec<&str> = links.iter().map(|(r, _)| r.as_str()).collect();
            assert_eq!(rels, ["prev", "next", "last", "first"]);
        }
        match links.iter().find(|(rel, _)| rel == "next") {
            Some((_, url)) => {
                assert!(url.starts_with(&emu.urls.api_url), "{url}");
                path = url[emu.urls.api_url.len()..].to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, [100, 200, 300, 401, 402, 403, 404]);
    // per_page is capped at 100; page beyond the end is empty.
    let capped = api(
        &emu,
        "GET",
        "/app/installations?per_page=500",
        Some(&jwt),
        None,
    );
    assert_eq!(
        capped
            .json()
            .expect("json")
            .as_array()
            .expect("array")
            .len(),
        7
    );
    let beyond = api(
        &emu,
        "GET",
        "/app/installations?per_page=3&page=9",
        Some(&jwt),
        None,
    );
    assert_eq!(beyond.json().expect("json"), json!([]));
    // since: nothing updated after the future; everything after the past.
    let future = api(
        &emu,
        "GET",
        "/app/installations?since=2999-01-01T00:00:00Z",
        Some(&jwt),
        None,
    );
    assert_eq!(future.json().expect("json"), json!([]));
    let past = api(
        &emu,
        "GET",
        "/app/installations?since=2000-01-01T00:00:00Z",
        Some(&jwt),
        None,
    );
    assert_eq!(
        past.json().expect("json").as_array().expect("array").len(),
        7
    );
}

fn post_mint(
    emu: &EmulatorProcess,
    installation: u64,
    body: &str,
    headers: &[(&str, &str)],
) -> ghapp_testkit::emulator::HttpResponse {
    let jwt = good_jwt(emu);
    request(
        &emu.urls.api_url,
        Some(&jwt),
        "POST",
        &format!("/app/installations/{installation}/access_tokens"),
        headers,
        Some(body),
    )
    .expect("request")
}

const PERMS_422: &str = "The permissions requested are not granted to this installation.";
const REPOS_422: &str = "There is at least one repository that does not exist or is not accessible to the parent installation.";

#[test]
fn minting_narrows_and_refuses_like_github() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");

    // Not narrowed: no `repositories` key, the installation's permissions and selection.
    let full = post_mint(&emu, 100, "", &[]);
    assert_eq!(full.status, 201);
    let body = full.json().expect("json");
    assert!(body.get("repositories").is_none(), "{body}");
    assert_eq!(body["repository_selection"], "selected");
    assert_eq!(
        body["permissions"],
        json!({"contents": "write", "metadata": "read"})
    );
    let token = body["token"].as_str().expect("token");
    assert_eq!(token.len(), 40);
    assert!(token.starts_with("ghs_") && !token.contains('.'));
    let expires = body["expires_at"].as_str().expect("expires_at");
    assert_eq!(expires.len(), 20, "{expires}");
    assert!(
        expires.ends_with('Z') && expires.as_bytes()[10] == b'T',
        "{expires}"
    );
    let all = post_mint(&emu, 401, "{}", &[]).json().expect("json");
    assert_eq!(all["repository_selection"], "all");

    // Narrowed by name and by id; permissions downgraded (metadata read added).
    let narrowed = post_mint(
        &emu,
        100,
        r#"{"repositories":["widgets"],"permissions":{"contents":"read"}}"#,
        &[],
    );
    assert_eq!(narrowed.status, 201);
    let body = narrowed.json().expect("json");
    assert_eq!(body["repository_selection"], "selected");
    assert_eq!(
        body["permissions"],
        json!({"contents": "read", "metadata": "read"})
    );
    let repos = body["repositories"].as_array().expect("repositories");
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["full_name"], "acme/widgets");
    assert_eq!(repos[0]["owner"]["login"], "acme");
    assert_eq!(repos[0]["private"], true);
    let widgets_id = repos[0]["id"].as_u64().expect("id");
    let by_id = post_mint(
        &emu,
        100,
        &json!({"repository_ids": [widgets_id]}).to_string(),
        &[],
    )
    .json()
    .expect("json");
    assert_eq!(by_id["repositories"][0]["name"], "widgets");
    let both = post_mint(
        &emu,
        100,
        &json!({"repositories": ["gadgets"], "repository_ids": [widgets_id]}).to_string(),
        &[],
    );
    assert_eq!(
        both.json().expect("json")["repositories"]
            .as_array()
            .expect("repos")
            .len(),
        2
    );

    // Refusals.
    assert_error(
        &post_mint(&emu, 100, r#"{"repositories":["private"]}"#, &[]),
        422,
        REPOS_422,
    );
    assert_error(
        &post_mint(&emu, 100, r#"{"repositories":["nope"]}"#, &[]),
        422,
        REPOS_422,
    );
    assert_error(
        &post_mint(&emu, 100, r#"{"repositories":["tools"]}"#, &[]),
        422,
        REPOS_422,
    );
    assert_error(
        &post_mint(&emu, 100, r#"{"repository_ids":[1]}"#, &[]),
        422,
        REPOS_422,
    );
    assert_error(
        &post_mint(&emu, 100, r#"{"permissions":{"contents":"admin"}}"#, &[]),
        422,
        PERMS_422,
    );
    assert_error(
        &post_mint(&emu, 100, r#"{"permissions":{"issues":"read"}}"#, &[]),
        422,
        PERMS_422,
    );
    assert_error(
        &post_mint(
            &emu,
            100,
            r#"{"permissions":{"test-permissions":"read"}}"#,
            &[],
        ),
        422,
        PERMS_422,
    );
    assert_error(
        &post_mint(&emu, 100, r#"{"permissions":{"contents":"owner"}}"#, &[]),
        422,
        PERMS_422,
    );
    for bad in [
        r#"{"permissions":"contents"}"#,
        r#"{"repositories":"widgets"}"#,
        r#"{"repository_ids":["x"]}"#,
        r#"{"permissions":{"contents":1}}"#,
        "[1]",
        "{nope",
    ] {
        assert_error(
            &post_mint(&emu, 100, bad, &[]),
            400,
            "Problems parsing JSON",
        );
    }
    assert_error(&post_mint(&emu, 999, "{}", &[]), 404, "Not Found");
    // An installation token cannot mint.
    let token = mint(&emu, 100, json!({}));
    let with_token = request(
        &emu.urls.api_url,
        Some(&token),
        "POST",
        "/app/installations/100/access_tokens",
        &[],
        Some("{}"),
    )
    .expect("req");
    assert_error(&with_token, 401, "A JSON web token could not be decoded");

    // Token formats.
    let stateless = post_mint(
        &emu,
        100,
        "{}",
        &[("X-GitHub-Stateless-S2S-Token", "enabled")],
    )
    .json()
    .expect("json");
    let token = stateless["token"].as_str().expect("token");
    assert!(token.starts_with("ghs_1_"), "{token}");
    assert_eq!(token.matches('.').count(), 2);
    assert!(
        (480..=560).contains(&token.len()),
        "about 520 characters: {}",
        token.len()
    );
    assert_eq!(
        api(&emu, "GET", "/", Some(token), None).status,
        200,
        "stateless tokens work"
    );
    for value in ["disabled", "true", "1"] {
        let classic = post_mint(&emu, 100, "{}", &[("X-GitHub-Stateless-S2S-Token", value)])
            .json()
            .expect("json");
        assert_eq!(
            classic["token"].as_str().expect("token").len(),
            40,
            "header value {value}"
        );
    }
    let stats = emu.stats().expect("stats");
    assert_eq!(stats["mints"]["100"], 9, "{stats}");
    assert_eq!(stats["mints_total"], 10);
}

#[test]
fn stateless_default_from_the_fixture() {
    let text = basic_fixture(3600).replacen(
        "token_ttl_secs = 3600",
        "token_ttl_secs = 3600\nstateless_default = true",
        1,
    );
    let emu = EmulatorProcess::start(&text).expect("start");
    assert!(mint(&emu, 100, json!({})).len() > 400);
    let classic = post_mint(
        &emu,
        100,
        "{}",
        &[("X-GitHub-Stateless-S2S-Token", "disabled")],
    )
    .json()
    .expect("json");
    assert_eq!(classic["token"].as_str().expect("token").len(), 40);
}

#[test]
fn concurrent_mints_are_all_valid() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");
    let jwt = good_jwt(&emu);
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (emu, jwt) = (&emu, &jwt);
                scope.spawn(move || {
                    let header = if i % 2 == 0 { "enabled" } else { "disabled" };
                    let response = request(
                        &emu.urls.api_url,
                        Some(jwt),
                        "POST",
                        "/app/installations/100/access_tokens",
                        &[("X-GitHub-Stateless-S2S-Token", header)],
                        Some("{}"),
                    )
                    .expect("request");
                    assert_eq!(response.status, 201);
                    response.json().expect("json")["token"]
                        .as_str()
                        .expect("token")
                        .to_string()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut unique = tokens.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 16);
    for token in &tokens {
        let response = api(&emu, "GET", "/installation/repositories", Some(token), None);
        assert_eq!(
            response.status, 200,
            "every concurrently minted token is valid"
        );
        assert_eq!(response.json().expect("json")["total_count"], 2);
    }
}

#[test]
fn token_routes_and_lifecycle() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");
    let jwt = good_jwt(&emu);
    let token = mint(&emu, 100, json!({"repositories": ["widgets"]}));

    // GET / : 200 without X-OAuth-Scopes, for tokens and anonymously; rate-limit headers.
    let root = api(&emu, "GET", "/", Some(&token), None);
    assert_eq!(root.status, 200);
    assert!(root.header("x-oauth-scopes").is_none());
    let first: u64 = root
        .header("x-ratelimit-remaining")
        .expect("remaining")
        .parse()
        .expect("number");
    assert_eq!(root.header("x-ratelimit-limit"), Some("5000"));
    assert_eq!(root.header("x-ratelimit-resource"), Some("core"));
    assert!(
        root.header("x-ratelimit-reset").is_some() && root.header("x-ratelimit-used").is_some()
    );
    let second: u64 = api(&emu, "GET", "/api/v3/", Some(&token), None)
        .header("x-ratelimit-remaining")
        .expect("r")
        .parse()
        .expect("n");
    assert_eq!(second + 1, first);
    assert_eq!(api(&emu, "GET", "/", None, None).status, 200);
    assert_error(
        &api(
            &emu,
            "GET",
            "/",
            Some("ghs_000000000000000000000000000000000000"),
            None,
        ),
        401,
        "Bad credentials",
    );

    // Narrowed token sees one repository.
    let repos = api(
        &emu,
        "GET",
        "/installation/repositories",
        Some(&token),
        None,
    )
    .json()
    .expect("json");
    assert_eq!(repos["total_count"], 1);
    assert_eq!(repos["repositories"][0]["full_name"], "acme/widgets");

    // GraphQL, both layouts.
    for path in ["/graphql", "/api/graphql"] {
        let response = api(
            &emu,
            "POST",
            path,
            Some(&token),
            Some(r#"{"query":"query { viewer { login } }"}"#),
        );
        assert_eq!(response.status, 200);
        assert_eq!(
            response.json().expect("json"),
            json!({"data": {"viewer": {"login": "ghapp-test[bot]"}}})
        );
    }
    assert_error(
        &api(
            &emu,
            "POST",
            "/graphql",
            None,
            Some(r#"{"query":"{viewer{login}}"}"#),
        ),
        401,
        "This endpoint requires you to be authenticated.",
    );
    // A JWT on a token route.
    assert_error(
        &api(
            &emu,
            "POST",
            "/graphql",
            Some(&jwt),
            Some(r#"{"query":"{viewer{login}}"}"#),
        ),
        401,
        "Bad credentials",
    );
    assert_error(
        &api(&emu, "DELETE", "/installation/token", Some(&jwt), None),
        401,
        "Bad credentials",
    );

    // Runner tokens need organization_self_hosted_runners: write on that organization.
    let runner_token = mint(&emu, 300, json!({}));
    for kind in ["registration-token", "remove-token"] {
        let response = api(
            &emu,
            "POST",
            &format!("/orgs/runners-org/actions/runners/{kind}"),
            Some(&runner_token),
            None,
        );
        assert_eq!(response.status, 201, "{kind}");
        let body: Value = response.json().expect("json");
        assert_eq!(body["token"].as_str().expect("token").len(), 29);
        assert!(
            body["expires_at"]
                .as_str()
                .expect("expires")
                .ends_with(".000+00:00")
        );
    }
    let no_perm = api(
        &emu,
        "POST",
        "/orgs/acme/actions/runners/registration-token",
        Some(&token),
        None,
    );
    assert_error(&no_perm, 403, "Resource not accessible by integration");
    let other_org = api(
        &emu,
        "POST",
        "/orgs/acme/actions/runners/registration-token",
        Some(&runner_token),
        None,
    );
    assert_error(&other_org, 403, "Resource not accessible by integration");

    // Revocation: 204, then 401 everywhere, and revoking again is 401.
    let response = api(&emu, "DELETE", "/installation/token", Some(&token), None);
    assert_eq!(response.status, 204);
    assert!(response.header("date").is_some());
    assert_error(
        &api(
            &emu,
            "GET",
            "/installation/repositories",
            Some(&token),
            None,
        ),
        401,
        "Bad credentials",
    );
    assert_error(
        &api(&emu, "DELETE", "/installation/token", Some(&token), None),
        401,
        "Bad credentials",
    );
}

#[test]
fn installation_state_changes() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");
    let jwt = good_jwt(&emu);
    let token = mint(&emu, 100, json!({}));

    // Suspended: minting 403, its tokens 403, still listed and looked up.
    emu.fault(json!({"kind": "suspend", "installation": 100}))
        .expect("suspend");
    assert_error(
        &post_mint(&emu, 100, "{}", &[]),
        403,
        "This installation has been suspended",
    );
    assert_error(
        &api(&emu, "GET", "/", Some(&token), None),
        403,
        "This installation has been suspended",
    );
    let inst = api(&emu, "GET", "/app/installations/100", Some(&jwt), None)
        .json()
        .expect("json");
    assert!(inst["suspended_at"].is_string());
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
    emu.fault(json!({"kind": "unsuspend", "installation": 100}))
        .expect("unsuspend");
    assert_eq!(api(&emu, "GET", "/", Some(&token), None).status, 200);

    // Replication delay: new tokens answer 401 for a while; clearing lifts it.
    emu.fault(json!({"kind": "replication_delay", "secs": 30}))
        .expect("delay");
    let fresh = mint(&emu, 100, json!({}));
    assert_error(
        &api(&emu, "GET", "/", Some(&fresh), None),
        401,
        "Bad credentials",
    );
    emu.clear_faults().expect("clear");
    assert_eq!(api(&emu, "GET", "/", Some(&fresh), None).status, 200);

    // Revocation by fault.
    emu.fault(json!({"kind": "revoke_tokens", "installation": 100}))
        .expect("revoke");
    assert_error(
        &api(&emu, "GET", "/", Some(&fresh), None),
        401,
        "Bad credentials",
    );

    // Uninstall: 404 on its routes; reinstall gives a new id.
    let before = mint(&emu, 100, json!({}));
    emu.fault(json!({"kind": "uninstall", "installation": 100}))
        .expect("uninstall");
    assert_error(
        &api(&emu, "GET", "/app/installations/100", Some(&jwt), None),
        404,
        "Not Found",
    );
    assert_error(
        &api(
            &emu,
            "GET",
            "/repos/acme/widgets/installation",
            Some(&jwt),
            None,
        ),
        404,
        "Not Found",
    );
    assert_error(&post_mint(&emu, 100, "{}", &[]), 404, "Not Found");
    assert_error(
        &api(&emu, "GET", "/", Some(&before), None),
        401,
        "Bad credentials",
    );
    assert!(
        emu.fault(json!({"kind": "suspend", "installation": 100}))
            .is_err(),
        "unknown installation refused"
    );
    emu.fault(json!({"kind": "reinstall", "installation": 100, "new_id": 101}))
        .expect("reinstall");
    assert_eq!(
        api(
            &emu,
            "GET",
            "/repos/acme/widgets/installation",
            Some(&jwt),
            None
        )
        .json()
        .expect("json")["id"],
        101
    );
    assert_eq!(post_mint(&emu, 101, "{}", &[]).status, 201);
    assert_error(&post_mint(&emu, 100, "{}", &[]), 404, "Not Found");

    // The GitHub API route for uninstalling.
    assert_eq!(
        api(&emu, "DELETE", "/app/installations/101", Some(&jwt), None).status,
        204
    );
    assert_error(
        &api(&emu, "GET", "/app/installations/101", Some(&jwt), None),
        404,
        "Not Found",
    );
}

#[test]
fn tokens_expire_at_their_ttl() {
    let emu = EmulatorProcess::start(&fixture(2)).expect("start");
    let token = mint(&emu, 100, json!({}));
    assert_eq!(api(&emu, "GET", "/", Some(&token), None).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_error(
        &api(&emu, "GET", "/", Some(&token), None),
        401,
        "Bad credentials",
    );
    assert_error(
        &api(&emu, "DELETE", "/installation/token", Some(&token), None),
        401,
        "Bad credentials",
    );
}
