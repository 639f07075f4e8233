//! The shared cache over TLS (`[cache] redis_url = "rediss://…"`, docs/scale-out.md): a real
//! `redis-server` listening on a TLS port only, its certificate from a private CA of the test's
//! own, which the replicas trust through `[cache] ca_file`.
//!
//! - two replicas on `rediss://` mint each repository once between them (one after the other,
//!   and all at once), and what they stored is read back over TLS with `redis-cli --tls`; a
//!   `ca_file` that cannot be read stops a replica at start;
//! - a replica given a plain `redis://` URL to that TLS-only port fails closed to its own cache:
//!   every request is served, nothing reaches Redis, no panic, and "unreachable" is logged once.
//!
//! Without redis-server the tests say SKIPPED loudly (or fail under
//! `GHAPP_TEST_REQUIRE_REDIS=1`).

use ghapp_testkit::daemon::{DaemonProcess, config_for, http_request};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use ghapp_testkit::redis::Redis;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Wider than the defaults (250 ms, 2 s): a loaded 2-core machine must not make a replica go
/// alone and mint twice (the broker's unit tests cover the defaults on a paused clock).
const TEST_TIMEOUTS: &str = "timeout = \"2s\"\npeer_wait = \"10s\"\n";

/// 32 bytes from the kernel, 0600 (what `ghapp cache-key new` writes).
fn write_key(path: &Path) {
    use std::io::Read;
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut key)
        .unwrap();
    fs::write(path, key).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A replica's config: the emulator's App plus `cache` lines.
fn replica_config(emulator: &EmulatorProcess, cache: &str) -> String {
    format!("{}\n[cache]\n{cache}", config_for(emulator, ""))
}

fn token_path(emulator: &EmulatorProcess, repo: &str) -> String {
    format!(
        "/v1/token?host={}&owner=acme&repo={repo}&protocol=http",
        emulator.git_host()
    )
}

fn mints(emulator: &EmulatorProcess) -> u64 {
    emulator.stats().unwrap()["mints_total"].as_u64().unwrap()
}

/// `/v1/token` for `repo` on `socket`: the token, or the failure.
fn token(socket: &Path, path: &str) -> Result<String, String> {
    let answer = http_request(socket, "GET", path, None).map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("{}: {}", answer.status, answer.body));
    }
    let body: serde_json::Value = serde_json::from_str(&answer.body).map_err(|e| e.to_string())?;
    Ok(body["token"].as_str().unwrap_or_default().to_string())
}

fn shared_status(daemon: &DaemonProcess) -> serde_json::Value {
    let (code, body) = daemon.get("/v1/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["shared_cache"].clone()
}

#[test]
fn two_replicas_on_rediss_mint_each_repository_once() {
    if !Redis::available() {
        return;
    }
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let redis = Redis::start_tls().expect("a TLS-only redis-server");
    assert!(redis.url().starts_with("rediss://127.0.0.1:"));
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("cache.key");
    write_key(&key_file);
    let ca_file: PathBuf = redis.ca_file().unwrap();
    let config = replica_config(
        &emulator,
        &format!(
            "redis_url = {:?}\nencryption_key_file = {:?}\nca_file = {:?}\n{TEST_TIMEOUTS}",
            redis.url(),
            key_file.display().to_string(),
            ca_file.display().to_string()
        ),
    );
    // A CA file that cannot be read stops the replica at start, naming the setting.
    let missing = config.replace(
        &format!("{:?}", ca_file.display().to_string()),
        "\"/nonexistent/ca.pem\"",
    );
    let refused = DaemonProcess::start(&missing)
        .err()
        .expect("refused at start");
    assert!(refused.to_string().contains("ca_file"), "{refused}");
    let replicas: Vec<DaemonProcess> = (0..2)
        .map(|_| DaemonProcess::start(&config).expect("a rediss:// replica starts"))
        .collect();
    emulator.reset_stats().unwrap();

    // One after the other: the second replica takes the first one's token from Redis.
    let widgets = token_path(&emulator, "widgets");
    let first = token(replicas[0].socket(), &widgets).unwrap();
    let second = token(replicas[1].socket(), &widgets).unwrap();
    assert!(
        first == second,
        "the second replica served the shared token"
    );
    assert_eq!(mints(&emulator), 1, "one mint for acme/widgets");

    // All at once, 20 requests over both replicas for another repository.
    let gadgets = token_path(&emulator, "gadgets");
    let sockets: Vec<PathBuf> = replicas.iter().map(|r| r.socket().to_path_buf()).collect();
    let answers: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (socket, path) = (&sockets[i % 2], &gadgets);
                scope.spawn(move || token(socket, path))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let tokens: std::collections::BTreeSet<String> = answers
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every concurrent request is served");
    assert_eq!(tokens.len(), 1, "both replicas served the one token");
    let total = mints(&emulator);
    let going_alone: Vec<String> = replicas
        .iter()
        .flat_map(|r| {
            r.log()
                .lines()
                .filter(|l| l.contains("shared cache") || l.contains("did not deliver"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        total, 2,
        "one mint per repository between the two replicas; going alone:\n{going_alone:#?}"
    );
    for replica in &replicas {
        let shared = shared_status(replica);
        assert_eq!(shared["healthy"], true, "{shared}");
        assert_eq!(shared["backend"], redis.url(), "{shared}");
    }
    // What they stored went over TLS: read back with `redis-cli --tls --cacert`.
    let stored = redis.dump().unwrap();
    let tokens_stored = stored
        .iter()
        .filter(|(key, _)| key.starts_with("ghapp:token:"))
        .count();
    assert_eq!(tokens_stored, 2, "two tokens in Redis: {stored:?}");
    eprintln!(
        "figures: 2 replicas on rediss://: 2 + 20 requests for 2 repositories, {total} mints, {} keys in Redis",
        stored.len()
    );
}

#[test]
fn a_plain_url_to_a_tls_only_redis_fails_closed_to_the_local_cache() {
    if !Redis::available() {
        return;
    }
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let redis = Redis::start_tls().expect("a TLS-only redis-server");
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("cache.key");
    write_key(&key_file);
    // The default timeout (250 ms): the mistake must cost little.
    let config = replica_config(
        &emulator,
        &format!(
            "redis_url = {:?}\nencryption_key_file = {:?}\n",
            redis.plain_url(),
            key_file.display().to_string()
        ),
    );
    let replica = DaemonProcess::start(&config).expect("starts: Redis is only met on first use");
    emulator.reset_stats().unwrap();

    let widgets = token_path(&emulator, "widgets");
    let tokens: Vec<String> = (0..5)
        .map(|_| token(replica.socket(), &widgets).expect("served from the local cache"))
        .collect();
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one cached token");
    assert_eq!(
        token(replica.socket(), &token_path(&emulator, "gadgets")).map(|_| ()),
        Ok(()),
        "a second repository is minted alone"
    );
    assert_eq!(mints(&emulator), 2, "each repository minted once, locally");
    let shared = shared_status(&replica);
    assert_eq!(shared["healthy"], false, "{shared}");
    assert_eq!(shared["backend"], redis.plain_url());
    let log = replica.log();
    assert_eq!(
        log.matches("the shared cache is unreachable").count(),
        1,
        "logged once, not per request:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let logged = log
        .lines()
        .find(|l| l.contains("the shared cache is unreachable"))
        .unwrap_or_default();
    eprintln!(
        "figures: a plain redis:// URL to a TLS-only port, 6 requests served locally, logged once: {logged}"
    );
    // Nothing got through the TLS port in plain text.
    assert_eq!(redis.cli(&["DBSIZE"]).unwrap().trim(), "0");
}
