//! A real tokman client against ghapp's network listener: Packit's `ogr` (pinned in
//! tests/clients/requirements.txt, installed by .ci/run into tests/clients/.venv) with only
//! `tokman_instance_url` set, over HTTPS (`REQUESTS_CA_BUNDLE`), selected by an
//! `address = "127.0.0.0/8"` policy. Its Tokman provider does `GET {url}/api/{ns}/{repo}` and
//! raises `GithubAppNotInstalledError` on any 400 — the status tokman (and ghapp) answers with
//! `Failed to retrieve a token: App is not installed on OWNER/REPO`.
//!
//! Without ogr installed the test prints `SKIPPED: …`; with `GHAPP_TEST_REQUIRE_OGR=1` (set by
//! .ci/run once it installed ogr) it fails instead.

use ghapp_testkit::daemon::{DaemonProcess, config_for};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture, request};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's python with ogr importable, or `None` after saying SKIPPED (a panic when
/// `GHAPP_TEST_REQUIRE_OGR=1`).
fn ogr_python() -> Option<PathBuf> {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let python = clients.join(".venv/bin/python");
    let importable = python.exists()
        && Command::new(&python)
            .args(["-c", "import ogr"])
            .status()
            .is_ok_and(|status| status.success());
    if importable {
        return Some(python);
    }
    let how = format!(
        "python3 -m venv {dir}/.venv && {dir}/.venv/bin/pip install -r {dir}/requirements.txt",
        dir = clients.display()
    );
    if std::env::var("GHAPP_TEST_REQUIRE_OGR").as_deref() == Ok("1") {
        panic!("GHAPP_TEST_REQUIRE_OGR=1 but ogr is not installed: {how}");
    }
    eprintln!(
        "SKIPPED: ogr is not installed, the real tokman client test did not run ({how}; .ci/run does it)"
    );
    None
}

/// A throwaway CA and a leaf for 127.0.0.1/localhost: (ca.pem, chain cert.pem, key.pem).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ghapp ogr test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "ghapp");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).expect("ca.pem");
    std::fs::write(&cert_file, format!("{}{}", leaf.pem(), ca.pem())).expect("cert.pem");
    std::fs::write(&key_file, leaf_key.serialize_pem()).expect("key.pem");
    // The listener refuses a TLS key that group or others can read.
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod key.pem");
    (ca_file, cert_file, key_file)
}

/// Runs the driver: `ogr_tokman.py URL NS REPO API_URL` → its JSON line.
fn ogr(python: &Path, ca_file: &Path, url: &str, ns: &str, repo: &str, api_url: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ogr_tokman.py");
    let output = Command::new(python)
        .arg(script)
        .args([url, ns, repo, api_url])
        .env("REQUESTS_CA_BUNDLE", ca_file)
        .output()
        .expect("running ogr");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ogr driver failed for {ns}/{repo}: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn ogr_tokman_over_https_with_an_address_policy() {
    let Some(python) = ogr_python() else {
        return;
    };
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("emulator");
    let tls_dir = tempfile::tempdir().expect("tempdir");
    let (ca_file, cert_file, key_file) = tls_files(tls_dir.path());
    let config = format!(
        "{base}\n[network]\nlisten = [\"127.0.0.1:0\"]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n\n\
         [[policy]]\naddress = \"127.0.0.0/8\"\nowners = [\"acme\"]\n",
        base = config_for(&emulator, ""),
        cert = cert_file.display().to_string(),
        key = key_file.display().to_string(),
    );
    let daemon = DaemonProcess::start(&config).expect("daemon");
    assert!(
        daemon.listening().iter().all(|l| l.tls),
        "{:?}",
        daemon.listening()
    );
    let url = format!("https://{}", daemon.network_address());
    let api_url = &emulator.urls.api_url;

    // A repository of the installation: a working token (used against "GitHub" by the driver).
    let got = ogr(&python, &ca_file, &url, "acme", "widgets", api_url);
    assert_eq!(got["provider"], "Tokman", "{got}");
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["repo"], "acme/widgets", "{got}");
    let issued = request(
        &emulator.urls.admin_url,
        None,
        "GET",
        "/_emulator/tokens",
        &[],
        None,
    )
    .expect("issued tokens")
    .json()
    .expect("json");
    let tokens: Vec<&str> = issued["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["token"].as_str())
        .collect();
    assert!(
        tokens
            .iter()
            .any(|t| Some(ghapp_protocol::secret::fingerprint(t).as_str())
                == got["token_fingerprint"].as_str()),
        "ogr's token is not one the emulator minted: {got}"
    );

    // A repository outside the installation: ogr's GithubAppNotInstalledError, from tokman's 400.
    let got = ogr(&python, &ca_file, &url, "acme", "private", api_url);
    assert_eq!(got["ok"], false, "{got}");
    assert_eq!(got["error_class"], "GithubAppNotInstalledError", "{got}");
    assert!(
        got["message"]
            .as_str()
            .unwrap_or("")
            .contains("Failed to retrieve a token: App is not installed on acme/private"),
        "{got}"
    );

    // An installed repository the address policy does not grant (owner octo): refused (403),
    // which ogr reports as a plain OgrException, not as "not installed".
    let got = ogr(&python, &ca_file, &url, "octo", "tools", api_url);
    assert_eq!(got["ok"], false, "{got}");
    assert_eq!(got["error_class"], "OgrException", "{got}");
    assert!(
        got["message"].as_str().unwrap_or("").contains("(403)"),
        "{got}"
    );

    // No token in the daemon's log.
    let log = daemon.log();
    for token in tokens {
        assert!(!log.contains(token), "a token leaked into the daemon log");
    }
}
