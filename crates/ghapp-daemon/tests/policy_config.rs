//! Policy and App settings the config refuses or enforces, with the real daemon against the
//! emulator (issue 12.3, 12.7, 12.11): a policy's `hosts` hold a peer to its hosts; an empty
//! policy ceiling and plain http off loopback are refused at start, naming file, line and key.
//!
//! Needs the binaries built: `cargo build -p ghapp --bin ghapp -p github-emulator --bin
//! github-emulator`.

use ghapp_testkit::daemon::{DaemonProcess, config_for};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};

/// The emulator's App 1 again, as a second `[[app]]` serving `host`.
fn second_app(emulator: &EmulatorProcess, host: &str) -> String {
    format!(
        "\n[[app]]\nname = \"second\"\nhost = {host:?}\napi_url = {api:?}\napp_id = 1\nprivate_key_file = {key:?}\ninsecure_http = true\n",
        api = emulator.urls.api_url,
        key = emulator.key_path("app1.pem").display().to_string()
    )
}

#[test]
fn a_policy_with_hosts_gets_nothing_from_an_app_on_another_host() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let own_uid = rustix::process::geteuid().as_raw();
    let first = emulator.git_host();
    let port = first.rsplit(':').next().unwrap();
    let other = format!("localhost:{port}");
    let token = |daemon: &DaemonProcess, host: &str| {
        daemon
            .get(&format!("/v1/token?host={host}&owner=acme&repo=widgets"))
            .unwrap()
    };
    let policy = |hosts: &str| {
        format!(
            "{}{}",
            config_for(
                &emulator,
                &format!("[[daemon.policy]]\nuid = {own_uid}\nrepos = [\"acme/widgets\"]\n{hosts}")
            ),
            second_app(&emulator, &other)
        )
    };

    // Without `hosts` (the default: every host) both Apps serve acme/widgets to the peer.
    let open = DaemonProcess::start(&policy("")).unwrap();
    assert_eq!(token(&open, &first).0, 200);
    assert_eq!(token(&open, &other).0, 200, "no hosts: every host");

    // Attacker's pass: once `hosts` holds the peer to the first host, /v1/status must not show
    // it the other host's installations or cached tokens (fingerprints, repositories,
    // permissions) either. The cached token minted above survives the reload.
    open.write_config(&policy(&format!("hosts = [{first:?}]\n")))
        .unwrap();
    open.reload().unwrap();
    open.wait_for_log("configuration reloaded", std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(token(&open, &other).0, 403, "the reload applied the hosts");
    let (status, body) = open.get("/v1/status").unwrap();
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hosts_of = |list: &str| -> Vec<String> {
        page[list]
            .as_array()
            .unwrap_or_else(|| panic!("no {list} in {body}"))
            .iter()
            .map(|entry| entry["host"].as_str().unwrap().to_ascii_lowercase())
            .collect()
    };
    let tokens = hosts_of("tokens");
    assert!(
        tokens.contains(&first.to_ascii_lowercase()),
        "the peer's own token is listed: {body}"
    );
    for list in ["tokens", "installations"] {
        assert!(
            !hosts_of(list).contains(&other.to_ascii_lowercase()),
            "{list} of a host the policy excludes are shown: {body}"
        );
    }
    drop(open);

    let limited = DaemonProcess::start(&policy(&format!("hosts = [{first:?}]\n"))).unwrap();
    assert_eq!(token(&limited, &first).0, 200);
    let (status, body) = token(&limited, &other);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&format!("host {other} is not allowed")),
        "{body}"
    );
}

#[test]
fn the_daemon_refuses_an_empty_policy_ceiling_and_plain_http_off_loopback() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let empty_ceiling = config_for(
        &emulator,
        "[[daemon.policy]]\nuid = 1001\npermissions = {}\n",
    );
    let error = DaemonProcess::start(&empty_ceiling)
        .err()
        .expect("the daemon started with permissions = {} in a policy")
        .to_string();
    assert!(
        error.contains("line 4: daemon.policy[0].permissions: permissions = {} would read as \"no ceiling\" and grant everything the App has"),
        "{error}"
    );

    let off_loopback = config_for(&emulator, "")
        + "\n[[app]]\nname = \"lan\"\nhost = \"ghe.lan.example\"\napp_id = 1\nprivate_key_env = \"K\"\ninsecure_http = true\n";
    let error = DaemonProcess::start(&off_loopback)
        .err()
        .expect("the daemon started with insecure_http for a non-loopback host")
        .to_string();
    assert!(
        error.contains("app[1] (lan): insecure_http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost), not ghe.lan.example"),
        "{error}"
    );
}
