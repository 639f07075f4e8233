//! Credentials through a real `ghapp daemon` process on its Unix socket, against the emulator:
//! a client key and an ID token (issuer started in this test) are honoured and narrow the uid's
//! grant; forged and invalid ones get 401; and no credential — valid or not — ever appears in
//! the daemon's stderr or its audit log, which name the identity instead.
//!
//! Needs the binaries built: `cargo build -p ghapp --bin ghapp -p github-emulator --bin
//! github-emulator` (or `cargo test --workspace`, which builds every binary first).

mod oidc_issuer;

use ghapp_testkit::daemon::{DaemonProcess, config_for, raw_request};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use jsonwebtoken::Algorithm;
use oidc_issuer::{Issuers, SigningKey, claims};
use std::path::PathBuf;

const CLIENT_KEY: &str = "ghk_process-test-key-0123456789abcdefghijklmn";
const FORGED_KEY: &str = "ghk_forged-key-nobody-was-given-0123456789ab";

async fn ask(socket: PathBuf, path: &str, authorization: Option<String>) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let header = authorization
            .map(|value| format!("authorization: {value}\r\n"))
            .unwrap_or_default();
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{header}\r\n");
        let answer = raw_request(&socket, request.as_bytes()).unwrap();
        (answer.status, answer.body)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_honoured_and_never_logged() {
    let issuers = Issuers::start().await;
    let key = SigningKey::new("k8s-1", Algorithm::ES256);
    issuers.publish("cluster", &[&key]);
    let issuer = issuers.issuer("cluster");
    let me = rustix::process::geteuid().as_raw();
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = format!(
        "{}\n[[oidc]]\nissuer = \"{issuer}\"\naudience = \"ghapp\"\n\n[[client]]\nname = \"ci-bot\"\nkey_sha256 = \"{}\"\n\n[[policy]]\nuid = {me}\nowners = [\"acme\"]\n\n[[policy]]\nclient = \"ci-bot\"\nrepos = [\"acme/widgets\"]\n\n[[policy]]\nissuer = \"{issuer}\"\nsubject = \"system:serviceaccount:ci:*\"\nrepos = [\"acme/gadgets\"]\npermissions = {{ contents = \"read\" }}\n",
        config_for(&emulator, "audit_log = \"audit.jsonl\""),
        ghapp_protocol::client_key::digest_hex(CLIENT_KEY),
    );
    let mut daemon = DaemonProcess::start(&config).unwrap();
    let socket = daemon.socket().to_path_buf();
    let valid_id = key.sign(&claims(
        &issuer,
        "ghapp",
        "system:serviceaccount:ci:builder",
    ));
    let wrong_aud = key.sign(&claims(
        &issuer,
        "not-ghapp",
        "system:serviceaccount:ci:builder",
    ));
    let bearer = |credential: &str| Some(format!("Bearer {credential}"));

    let widgets = "/v1/token?owner=acme&repo=widgets";
    let gadgets = "/v1/token?owner=acme&repo=gadgets";
    let (status, body) = ask(socket.clone(), widgets, bearer(CLIENT_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = ask(socket.clone(), widgets, Some(format!("token {CLIENT_KEY}"))).await;
    assert_eq!(
        status, 200,
        "`token KEY` as the seed proxy's clients send it"
    );
    assert_eq!(
        ask(socket.clone(), gadgets, bearer(CLIENT_KEY)).await.0,
        403
    );
    let (status, body) = ask(socket.clone(), gadgets, bearer(&valid_id)).await;
    assert_eq!(status, 200, "{body}");
    let granted: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Narrowed to the entry's ceiling (GitHub adds metadata: read to every token).
    assert_eq!(granted["permissions"]["contents"], "read", "{body}");
    assert_eq!(ask(socket.clone(), widgets, bearer(&valid_id)).await.0, 403);
    assert_eq!(
        ask(socket.clone(), widgets, bearer(FORGED_KEY)).await.0,
        401
    );
    let (status, body) = ask(socket.clone(), widgets, bearer(&wrong_aud)).await;
    assert_eq!(status, 401);
    assert!(body.contains("not for audience ghapp"), "{body}");
    // Without a credential, the uid's own entry.
    assert_eq!(ask(socket.clone(), gadgets, None).await.0, 200);

    daemon.stop().unwrap();
    let log = daemon.log();
    let audit = std::fs::read_to_string(daemon.dir().join("audit.jsonl")).unwrap();
    for (what, secret) in [
        ("client key", CLIENT_KEY),
        ("forged key", FORGED_KEY),
        ("ID token", valid_id.as_str()),
        ("invalid ID token", wrong_aud.as_str()),
    ] {
        assert!(
            !log.contains(secret),
            "the {what} is in the daemon's stderr"
        );
        assert!(!audit.contains(secret), "the {what} is in the audit log");
        // Not even its signature part (the most secret-looking piece of a JWS).
        let tail = secret.rsplit('.').next().unwrap();
        assert!(
            !log.contains(tail) && !audit.contains(tail),
            "part of the {what} leaked"
        );
    }
    assert!(audit.contains(r#""client":"ci-bot""#), "{audit}");
    assert!(
        audit.contains(r#""subject":"system:serviceaccount:ci:builder""#),
        "{audit}"
    );
    assert!(audit.contains(&format!(r#""peer_uid":{me}"#)), "{audit}");
    assert!(audit.contains("denied_credential"), "{audit}");
    assert!(log.contains("refused an invalid credential"), "{log}");
}

/// The same identities on the real `[network]` listener (plain HTTP on loopback): a GitHub
/// Actions shaped ID token gets acme/widgets read and is refused acme/gadgets; curl presents a
/// client key on the workspace endpoint as the seed's entrypoint does; a caller presenting
/// nothing is judged by its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_callers_on_the_real_listener() {
    let issuers = Issuers::start().await;
    let key = SigningKey::new("actions-1", Algorithm::RS256);
    issuers.publish("actions", &[&key]);
    let issuer = issuers.issuer("actions");
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = format!(
        "{}\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\n\n[[oidc]]\nissuer = \"{issuer}\"\naudience = \"ghapp\"\n\n[[client]]\nname = \"workspace\"\nkey_sha256 = \"{}\"\n\n[[policy]]\nissuer = \"{issuer}\"\nsubject = \"repo:acme/widgets:ref:refs/heads/main\"\nclaims = {{ repository_owner = \"acme\" }}\nrepos = [\"acme/widgets\"]\npermissions = {{ contents = \"read\" }}\n\n[[policy]]\nclient = \"workspace\"\nowners = [\"acme\"]\n\n[[policy]]\naddress = \"127.0.0.1/32\"\nrepos = [\"acme/gadgets\"]\n",
        config_for(
            &emulator,
            "audit_log = \"audit.jsonl\"\ndefault_owner = \"acme\""
        ),
        ghapp_protocol::client_key::digest_hex(CLIENT_KEY),
    );
    let mut daemon = DaemonProcess::start(&config).unwrap();
    let base = format!("http://{}", daemon.network_address());
    let http = reqwest::Client::new();
    let get = |path: &str, credential: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let mut actions = claims(&issuer, "ghapp", "repo:acme/widgets:ref:refs/heads/main");
    actions["repository_owner"] = "acme".into();
    let id_token = key.sign(&actions);

    let (status, body) = get("/v1/token?owner=acme&repo=widgets", Some(&id_token)).await;
    assert_eq!(status, 200, "{body}");
    let granted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(granted["permissions"]["contents"], "read", "{body}");
    let (status, body) = get("/v1/token?owner=acme&repo=gadgets", Some(&id_token)).await;
    assert_eq!(status, 403, "{body}");
    // Nothing presented: the address entry (acme/gadgets only), tokman's route included.
    assert_eq!(get("/api/acme/gadgets", None).await.0, 200);
    assert_eq!(get("/v1/token?owner=acme&repo=widgets", None).await.0, 403);
    assert_eq!(get("/admin/github-installation-token", None).await.0, 401);

    if ghapp_testkit::system::on_path("curl").is_none() {
        eprintln!(
            "SKIPPED: curl is not installed; the workspace entrypoint's curl call was not checked"
        );
    } else {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "-H"])
            .arg(format!("Authorization: Bearer {CLIENT_KEY}"))
            .arg(format!("{base}/admin/github-installation-token"))
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            answer["token"]
                .as_str()
                .is_some_and(|t| t.starts_with("ghs_")),
            "{body}"
        );
        assert!(answer["expires_at"].is_string());
    }
    daemon.stop().unwrap();
    let audit = std::fs::read_to_string(daemon.dir().join("audit.jsonl")).unwrap();
    assert!(!audit.contains(&id_token) && !audit.contains(CLIENT_KEY));
    assert!(audit.contains(r#""address":"127.0.0.1""#), "{audit}");
    assert!(
        audit.contains(r#""subject":"repo:acme/widgets:ref:refs/heads/main""#),
        "{audit}"
    );
    assert!(!daemon.log().contains(&id_token));
}
