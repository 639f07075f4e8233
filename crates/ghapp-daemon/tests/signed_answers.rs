//! Signed answers (issue 14, item 5) with real processes against the emulator:
//! `Accept: application/jwt` on `/v1/token` returns a compact JWS that verifies with the keys at
//! `/.well-known/jwks.json` (checked with jsonwebtoken, as a caller would), a tampered answer
//! does not, and after the answer key is replaced (SIGHUP) the old key stays published — across
//! a restart too — until the last answer it signed has expired, and no longer.
//!
//! Needs the binaries built: `cargo build -p ghapp --bin ghapp -p github-emulator --bin
//! github-emulator`.

use base64::Engine;
use ghapp_testkit::daemon::{DaemonProcess, HttpResponse, config_for, raw_request};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "/v1/token?owner=acme&repo=widgets";

/// Spoils the published-keys file in one way (a mode, an owner) for one case of a test.
type FileSpoiler = dyn Fn(&std::path::Path);

fn network_section() -> &'static str {
    "\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\n"
}

fn signed(daemon: &DaemonProcess, path: &str) -> HttpResponse {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: ghapp\r\nAccept: application/jwt\r\nConnection: close\r\n\r\n"
    );
    raw_request(daemon.socket(), request.as_bytes()).unwrap()
}

fn jwks(daemon: &DaemonProcess) -> JwkSet {
    let (status, body) = daemon.get("/.well-known/jwks.json").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn kids(set: &JwkSet) -> Vec<String> {
    set.keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap_or_default())
        .collect()
}

/// Verifies `jws` as a caller would: the key named by its `kid`, from the JWKS, ES256 only.
fn verify(jws: &str, set: &JwkSet) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(jws).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or(format!("kid {kid} not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_required_spec_claims(&["exp", "iat", "sub"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(jws, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_signed_answer_verifies_with_the_published_keys_and_a_tampered_one_does_not() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = format!("{}{}", config_for(&emulator, ""), network_section());
    let daemon = DaemonProcess::start(&config).unwrap();

    let plain = daemon.request("GET", TOKEN, None).unwrap();
    assert_eq!(plain.status, 200, "{}", plain.body);
    let plain = plain.json().unwrap();

    let answer = signed(&daemon, TOKEN);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/jwt");
    let jws = answer.body.trim();
    assert_eq!(jws.split('.').count(), 3, "a compact JWS: {jws}");
    let set = jwks(&daemon);
    let header = jsonwebtoken::decode_header(jws).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(kids(&set), vec![header.kid.clone().unwrap()]);

    let claims = verify(jws, &set).unwrap();
    let uid = rustix::process::geteuid().as_raw();
    assert_eq!(claims["sub"], format!("uid:{uid}"), "the local caller");
    assert_eq!(claims["token"], plain["token"]);
    assert_eq!(claims["expires_at"], plain["expires_at"]);
    assert_eq!(claims["installation_id"], 100);
    assert_eq!(claims["repositories"], plain["repositories"]);
    assert_eq!(claims["permissions"], plain["permissions"]);
    let expires_at = time_of(plain["expires_at"].as_str().unwrap());
    assert!(
        claims["exp"].as_i64().unwrap() <= expires_at,
        "exp within the token's life"
    );
    let iat = claims["iat"].as_i64().unwrap();
    assert!((now() - iat).abs() <= 5, "iat is now: {iat}");
    assert!(
        !daemon.log().contains(plain["token"].as_str().unwrap()),
        "no token in the log"
    );

    // The same keys on the network listener, without a credential.
    let mut tcp = std::net::TcpStream::connect(daemon.network_address()).unwrap();
    use std::io::{Read, Write};
    tcp.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap();
    let over_network = ghapp_testkit::daemon::parse_response(&raw).unwrap();
    assert_eq!(over_network.status, 200);
    let network_set: JwkSet = serde_json::from_str(&over_network.body).unwrap();
    assert_eq!(kids(&network_set), kids(&set));

    // Tampered: claims changed under the same signature, or the signature changed.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jws.split('.').collect();
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = Value::from("uid:0");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&forged_claims).unwrap()),
        parts[2]
    );
    assert!(
        verify(&forged, &set).is_err(),
        "changed claims must not verify"
    );
    let mut signature = b64.decode(parts[2]).unwrap();
    signature[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], b64.encode(signature));
    assert!(
        verify(&flipped, &set).is_err(),
        "a changed signature must not verify"
    );
    // And a key that is not the daemon's proves nothing.
    let stranger = rcgen::KeyPair::generate().unwrap();
    let stranger_key =
        jsonwebtoken::EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some(kids(&set)[0].clone());
    let impostor = jsonwebtoken::encode(&header, &claims, &stranger_key).unwrap();
    assert!(
        verify(&impostor, &set).is_err(),
        "another key's signature must not verify"
    );
}

fn time_of(text: &str) -> i64 {
    ghapp_protocol::time::Timestamp::parse(text)
        .unwrap()
        .unix_seconds()
}

#[test]
fn a_replaced_key_stays_published_until_its_last_answer_expires_even_across_a_restart() {
    // Tokens live 12 s, so the old key's last answer expires within the test.
    let emulator = EmulatorProcess::start(&basic_fixture(12)).unwrap();
    let config = format!(
        "{}{}",
        config_for(
            &emulator,
            "min_ttl = \"2s\"\ndegraded_min_ttl = \"1s\"\nrefresh_ahead = \"1s\""
        ),
        network_section()
    );
    let mut daemon = DaemonProcess::start(&config).unwrap();
    let first = signed(&daemon, TOKEN);
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.body.trim().to_string();
    let old_kid = jsonwebtoken::decode_header(&first).unwrap().kid.unwrap();
    let first_claims = verify(&first, &jwks(&daemon)).unwrap();
    let old_until = first_claims["exp"].as_i64().unwrap();

    // Replace the key file and reload.
    let key_file = daemon.dir().join("answer-key.pem");
    let temp = daemon.dir().join("answer-key.pem.new");
    std::fs::write(&temp, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&temp, &key_file).unwrap();
    daemon.reload().unwrap();
    daemon
        .wait_for_log("answer key replaced", Duration::from_secs(10))
        .unwrap();

    let second = signed(&daemon, TOKEN);
    assert_eq!(second.status, 200, "{}", second.body);
    let new_kid = jsonwebtoken::decode_header(second.body.trim())
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(new_kid, old_kid);
    let set = jwks(&daemon);
    assert_eq!(kids(&set), vec![new_kid.clone(), old_kid.clone()]);
    verify(second.body.trim(), &set).unwrap();
    assert!(
        now() < old_until,
        "the machine took the whole 12 s token life to get here; the test cannot judge"
    );
    verify(&first, &set).expect("an answer of the old key still verifies");

    // A restart keeps the old key published (its record is next to the key file).
    daemon.restart().unwrap();
    let after_restart = kids(&jwks(&daemon));
    if now() < old_until {
        assert_eq!(after_restart, vec![new_kid.clone(), old_kid.clone()]);
    }

    // Once its last answer has expired, the old key is withdrawn.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let published = kids(&jwks(&daemon));
        if !published.contains(&old_kid) {
            assert!(
                now() >= old_until,
                "withdrawn at {} before its last answer expired at {old_until}",
                now()
            );
            assert!(published.contains(&new_kid));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old key is still published 30 s on (its last answer expired at {old_until})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Attacker's pass (2026-12-07): the `.published.json` record next to the answer key decides
/// which keys the JWKS lists. Whoever could write it — another user owning it, or a
/// group/world-writable file — listed a key of their choice, valid for as long as they liked,
/// and answers they signed with it verified. The record is now trusted only as the key is.
#[test]
fn a_published_keys_record_another_user_could_write_publishes_none_of_its_keys() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = format!("{}{}", config_for(&emulator, ""), network_section());
    let mut daemon = DaemonProcess::start(&config).unwrap();
    let own_kid = kids(&jwks(&daemon))[0].clone();
    let record = daemon.dir().join("answer-key.pem.published.json");
    assert!(record.exists(), "the daemon keeps its record at {record:?}");

    // The attacker's key, listed as a replaced key whose last answer expires in 2100.
    let attacker = rcgen::KeyPair::generate().unwrap();
    let point = attacker.public_key_raw();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let attacker_kid = "attacker-chosen-kid";
    let tampered = serde_json::json!({
        "current": null,
        "retired": [{
            "jwk": {
                "kty": "EC", "crv": "P-256",
                "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..]),
                "kid": attacker_kid, "alg": "ES256", "use": "sig"
            },
            "until": 4102444800i64
        }]
    });

    let mut cases: Vec<(&str, Box<FileSpoiler>)> = vec![(
        "world-writable",
        Box::new(|p| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap()),
    )];
    if rustix::process::geteuid().is_root() {
        cases.push((
            "owned by nobody",
            Box::new(|p| {
                std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }),
        ));
    } else {
        eprintln!("SKIPPED: not root, cannot give the record to another user (the mode case runs)");
    }
    for (case, make_untrusted) in cases {
        daemon.stop().unwrap();
        std::fs::write(&record, serde_json::to_vec(&tampered).unwrap()).unwrap();
        make_untrusted(&record);
        daemon.restart().unwrap();
        let published = kids(&jwks(&daemon));
        assert!(
            !published.iter().any(|k| k == attacker_kid),
            "{case}: a key listed only in a record another user could write is published: {published:?}"
        );
        assert_eq!(published, vec![own_kid.clone()], "{case}");
    }
}

/// Attacker's pass (2026-12-07): the published-keys record was rewritten through
/// `<record>.tmp` opened with `std::fs::write`, which follows a symlink: one planted there (in a
/// state directory another user can write) made the daemon overwrite the file it points to with
/// JSON — as root, any file. The temporary file is now created anew, never followed.
#[test]
fn the_published_keys_record_is_never_written_through_a_planted_symlink() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = format!("{}{}", config_for(&emulator, ""), network_section());
    let mut daemon = DaemonProcess::start(&config).unwrap();
    daemon.stop().unwrap();
    let victim = daemon.dir().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let temp = daemon.dir().join("answer-key.pem.published.json.tmp");
    std::os::unix::fs::symlink(&victim, &temp).unwrap();
    daemon.restart().unwrap();
    let (status, body) = daemon.get("/.well-known/jwks.json").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "the daemon wrote through the symlink"
    );
    let record = daemon.dir().join("answer-key.pem.published.json");
    assert!(
        std::fs::symlink_metadata(&record).unwrap().is_file(),
        "the record is a file of its own"
    );
}
