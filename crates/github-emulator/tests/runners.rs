//! Self-hosted runners as GitHub serves them: generate-jitconfig's validation (422 without
//! runner_group_id, with 0 or 101 labels; 409 for a name in use), list with pagination and
//! `Link`, get, delete (204, then 404), the permission checks, and the admin route that drives
//! a runner's life (online, busy, a finished job removing an ephemeral runner, registration with
//! a registration token).

use ghapp_testkit::emulator::{EmulatorProcess, HttpResponse, basic_fixture, request};
use serde_json::{Value, json};

fn fixture() -> String {
    let mut text = basic_fixture(3600);
    text.push_str(
        "\n[[installations]]\nid = 300\napp = 1\naccount = \"runners-org\"\nrepositories = [\"ci\"]\npermissions = { organization_self_hosted_runners = \"write\", metadata = \"read\" }\n\n[[repositories]]\nfull_name = \"runners-org/ci\"\n",
    );
    text
}

fn call(
    emulator: &EmulatorProcess,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> HttpResponse {
    let body = body.map(|b| b.to_string());
    emulator
        .api(
            method,
            path,
            Some(token),
            &[("Content-Type", "application/json")],
            body.as_deref(),
        )
        .unwrap()
}

fn admin(emulator: &EmulatorProcess, action: Value) -> HttpResponse {
    request(
        &emulator.urls.admin_url,
        None,
        "POST",
        "/_emulator/runners",
        &[],
        Some(&action.to_string()),
    )
    .unwrap()
}

#[test]
fn runners_api_as_github_serves_it() {
    let emulator = EmulatorProcess::start(&fixture()).unwrap();
    let token = emulator.mint_token(300, json!({})).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let jit = "/orgs/runners-org/actions/runners/generate-jitconfig";

    let missing_group = call(
        &emulator,
        &token,
        "POST",
        jit,
        Some(json!({"name": "a", "labels": ["x"]})),
    );
    assert_eq!(missing_group.status, 422);
    assert!(
        missing_group.json().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("runner_group_id")
    );
    let no_labels = call(
        &emulator,
        &token,
        "POST",
        jit,
        Some(json!({"name": "a", "runner_group_id": 1, "labels": []})),
    );
    assert_eq!(no_labels.status, 422);
    let labels: Vec<String> = (0..101).map(|i| format!("l{i}")).collect();
    let too_many = call(
        &emulator,
        &token,
        "POST",
        jit,
        Some(json!({"name": "a", "runner_group_id": 1, "labels": labels})),
    );
    assert_eq!(too_many.status, 422);

    let created = call(
        &emulator,
        &token,
        "POST",
        jit,
        Some(json!({"name": "a", "runner_group_id": 1, "labels": ["gpu"], "work_folder": "_work"})),
    );
    assert_eq!(created.status, 201);
    let created = created.json().unwrap();
    assert!(!created["encoded_jit_config"].as_str().unwrap().is_empty());
    assert_eq!(created["runner"]["status"], "offline");
    let labels: Vec<(&str, &str)> = created["runner"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["type"].as_str().unwrap()))
        .collect();
    assert!(
        labels.contains(&("self-hosted", "read-only")) && labels.contains(&("gpu", "custom")),
        "{labels:?}"
    );
    let id = created["runner"]["id"].as_u64().unwrap();
    let duplicate = call(
        &emulator,
        &token,
        "POST",
        jit,
        Some(json!({"name": "a", "runner_group_id": 1, "labels": ["gpu"]})),
    );
    assert_eq!(duplicate.status, 409);

    for i in 0..4 {
        let made = call(
            &emulator,
            &token,
            "POST",
            jit,
            Some(json!({"name": format!("r{i}"), "runner_group_id": 1, "labels": ["x"]})),
        );
        assert_eq!(made.status, 201);
    }
    let page = call(
        &emulator,
        &token,
        "GET",
        "/orgs/runners-org/actions/runners?per_page=2",
        None,
    );
    assert_eq!(page.status, 200);
    let body = page.json().unwrap();
    assert_eq!(body["total_count"], 5);
    assert_eq!(body["runners"].as_array().unwrap().len(), 2);
    let link = page.header("link").unwrap();
    assert!(
        link.contains("page=2>; rel=\"next\"") && link.contains("page=3>; rel=\"last\""),
        "{link}"
    );
    let last = call(
        &emulator,
        &token,
        "GET",
        "/orgs/runners-org/actions/runners?per_page=2&page=3",
        None,
    );
    assert!(last.header("link").is_none());
    assert_eq!(last.json().unwrap()["runners"].as_array().unwrap().len(), 1);

    // The admin route drives the runner; GitHub's list shows it.
    assert_eq!(
        admin(&emulator, json!({"action": "busy", "id": id})).status,
        200
    );
    let got = call(
        &emulator,
        &token,
        "GET",
        &format!("/orgs/runners-org/actions/runners/{id}"),
        None,
    );
    assert_eq!(got.json().unwrap()["status"], "online");
    assert_eq!(got.json().unwrap()["busy"], true);
    // A JIT runner is ephemeral: its finished job removes it.
    let finished = admin(&emulator, json!({"action": "finish_job", "id": id}));
    assert_eq!(finished.json().unwrap()["runner"]["removed"], true);
    let gone = call(
        &emulator,
        &token,
        "GET",
        &format!("/orgs/runners-org/actions/runners/{id}"),
        None,
    );
    assert_eq!(gone.status, 404);

    let deleted = call(
        &emulator,
        &token,
        "DELETE",
        "/orgs/runners-org/actions/runners/2",
        None,
    );
    assert_eq!(deleted.status, 204);
    let again = call(
        &emulator,
        &token,
        "DELETE",
        "/orgs/runners-org/actions/runners/2",
        None,
    );
    assert_eq!(again.status, 404);

    // config.sh with a registration token registers an (offline) runner in that scope.
    let registration = call(
        &emulator,
        &token,
        "POST",
        "/orgs/runners-org/actions/runners/registration-token",
        None,
    );
    let secret = registration.json().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let registered = admin(
        &emulator,
        json!({"action": "register", "registration_token": secret, "name": "cfg"}),
    );
    assert_eq!(registered.status, 200);
    assert_eq!(
        admin(
            &emulator,
            json!({"action": "register", "registration_token": "nope", "name": "x"})
        )
        .status,
        404
    );

    // Permissions: an organization without the runner permission, a repository without
    // administration.
    let other = emulator.mint_token(100, json!({})).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = call(&emulator, &other, "GET", "/orgs/acme/actions/runners", None);
    assert_eq!(refused.status, 403);
    let refused = call(
        &emulator,
        &other,
        "POST",
        "/repos/acme/widgets/actions/runners/generate-jitconfig",
        Some(json!({"name": "z", "runner_group_id": 1, "labels": ["x"]})),
    );
    assert_eq!(refused.status, 403);
    let elsewhere = call(&emulator, &token, "GET", "/orgs/acme/actions/runners", None);
    assert_eq!(elsewhere.status, 403);
}
