//! Conditional requests (issue 17): `GET /repos/{o}/{r}`, `…/pulls` and `…/contents/{path}`
//! carry `ETag` (and `Last-Modified` where GitHub sends one); a matching `If-None-Match` or
//! `If-Modified-Since` answers 304, which does not count against an authorized caller's rate
//! limit; `/_emulator/resources` changes a resource so its `ETag` changes; `/_emulator/rate_limit`
//! reads the buckets and forces one exhausted.

use ghapp_testkit::emulator::{EmulatorProcess, HttpResponse, basic_fixture, request};
use serde_json::{Value, json};

fn fixture() -> String {
    let enforced = format!("{}\n[rate_limit]\nenforce = true\n", basic_fixture(3600));
    enforced.replace(
        "permissions = { contents = \"write\", metadata = \"read\" }",
        "permissions = { contents = \"write\", metadata = \"read\", pull_requests = \"read\" }",
    )
}

fn admin(emulator: &EmulatorProcess, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let response = request(
        &emulator.urls.admin_url,
        None,
        method,
        path,
        &[],
        body.as_deref(),
    )
    .expect("admin request");
    assert_eq!(
        response.status,
        200,
        "{method} {path}: {}",
        String::from_utf8_lossy(&response.body)
    );
    response.json().expect("admin json")
}

fn used(emulator: &EmulatorProcess, key: &str) -> u64 {
    admin(emulator, "GET", "/_emulator/rate_limit", None)["buckets"][key]["used"]
        .as_u64()
        .unwrap_or(0)
}

fn get(
    emulator: &EmulatorProcess,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    emulator
        .api("GET", path, Some(token), headers, None)
        .expect("GET")
}

#[test]
fn conditional_requests_and_rate_limit_accounting() {
    let emulator = EmulatorProcess::start(&fixture()).expect("emulator");
    let token = emulator.mint_token(100, json!({})).expect("mint")["token"]
        .as_str()
        .expect("token")
        .to_string();
    let bucket = "installation:100";

    // The repository: validators on a 200, one point spent.
    let first = get(&emulator, "/repos/acme/widgets", &token, &[]);
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("ETag").to_string();
    let last_modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    assert!(
        first
            .header("vary")
            .is_some_and(|v| v.contains("Authorization"))
    );
    assert_eq!(used(&emulator, bucket), 1);

    // A matching If-None-Match: 304, no body, no point.
    let again = get(
        &emulator,
        "/repos/acme/widgets",
        &token,
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("x-ratelimit-used"), Some("1"));
    // If-Modified-Since alone works the same.
    let since = get(
        &emulator,
        "/repos/acme/widgets",
        &token,
        &[("If-Modified-Since", &last_modified)],
    );
    assert_eq!(since.status, 304);
    assert_eq!(
        used(&emulator, bucket),
        1,
        "304s are free for an authorized caller"
    );

    // A change moves the ETag: the old one no longer matches and the 200 costs a point.
    admin(
        &emulator,
        "POST",
        "/_emulator/resources",
        Some(json!({"kind": "touch_repository", "owner": "acme", "repo": "widgets"})),
    );
    let changed = get(
        &emulator,
        "/repos/acme/widgets",
        &token,
        &[("If-None-Match", &etag)],
    );
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(used(&emulator, bucket), 2);

    // Pull requests.
    let pulls = get(&emulator, "/repos/acme/widgets/pulls", &token, &[]);
    assert_eq!(pulls.status, 200);
    assert_eq!(pulls.json().expect("json"), json!([]));
    let pulls_etag = pulls.header("etag").expect("ETag").to_string();
    admin(
        &emulator,
        "POST",
        "/_emulator/resources",
        Some(json!({"kind": "add_pull", "owner": "acme", "repo": "widgets", "title": "Fix"})),
    );
    let pulls = get(
        &emulator,
        "/repos/acme/widgets/pulls",
        &token,
        &[("If-None-Match", &pulls_etag)],
    );
    assert_eq!(
        pulls.status,
        200,
        "{:?} {}",
        pulls.headers,
        String::from_utf8_lossy(&pulls.body)
    );
    assert_eq!(pulls.json().expect("json")[0]["title"], "Fix");

    // Contents, at any depth.
    let readme = get(
        &emulator,
        "/repos/acme/widgets/contents/README.md",
        &token,
        &[],
    );
    assert_eq!(readme.status, 200);
    assert_eq!(readme.json().expect("json")["encoding"], "base64");
    admin(
        &emulator,
        "POST",
        "/_emulator/resources",
        Some(
            json!({"kind": "put_file", "owner": "acme", "repo": "widgets",
                    "path": "docs/a.md", "content": "hello"}),
        ),
    );
    let file = get(
        &emulator,
        "/repos/acme/widgets/contents/docs/a.md",
        &token,
        &[],
    );
    assert_eq!(file.status, 200);
    assert_eq!(file.json().expect("json")["path"], "docs/a.md");
    let file_etag = file.header("etag").expect("ETag").to_string();
    let before = used(&emulator, bucket);
    let file = get(
        &emulator,
        "/repos/acme/widgets/contents/docs/a.md",
        &token,
        &[("If-None-Match", &file_etag)],
    );
    assert_eq!(file.status, 304);
    assert_eq!(used(&emulator, bucket), before);
    assert_eq!(
        get(
            &emulator,
            "/repos/acme/widgets/contents/missing.md",
            &token,
            &[]
        )
        .status,
        404
    );

    // A forced rate limit: 403 even for a conditional request that would match.
    admin(
        &emulator,
        "POST",
        "/_emulator/rate_limit",
        Some(json!({"key": bucket, "remaining": 0})),
    );
    let limited = get(
        &emulator,
        "/repos/acme/widgets/contents/docs/a.md",
        &token,
        &[("If-None-Match", &file_etag)],
    );
    assert_eq!(limited.status, 403);
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let message = limited.json().expect("json")["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("rate limit"), "{message}");
}
