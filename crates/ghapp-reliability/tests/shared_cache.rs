//! Broker replicas sharing one token cache on a real `redis-server` (`[cache]`,
//! docs/scale-out.md): three `ghapp daemon`s with the same config, each on its own socket, one
//! Redis, the emulator counting mints.
//!
//! - 3,000 concurrent requests over 30 repositories spread over the replicas → exactly 30
//!   mints; every key and value in Redis (read with `redis-cli`) holds no token, no token's
//!   fingerprint, no owner or repository name;
//! - Redis killed (SIGKILL) while mints are in flight → no request fails; Redis started again
//!   → the replicas rejoin by themselves, and a new repository is minted once across them.
//!
//! Each test starts its own `redis-server` (Debian's package) on a free loopback port with no
//! persistence. Without one the tests say SKIPPED loudly, or fail when
//! `GHAPP_TEST_REQUIRE_REDIS=1` (.ci/run sets it once it installed the package).

use anyhow::Context;
use ghapp_client::DaemonClient;
use ghapp_protocol::api::{StatusResponse, TokenQuery};
use ghapp_protocol::secret::fingerprint;
use ghapp_testkit::daemon::{DaemonProcess, config_for};
use ghapp_testkit::emulator::EmulatorProcess;
use ghapp_testkit::redis::Redis;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Repositories the fixture holds: `service-alpha-00` … (long names, so a chance match inside
/// random ciphertext is out of the question).
const REPOSITORIES: usize = 64;
const OWNER: &str = "acme";

fn repo(n: usize) -> String {
    format!("service-alpha-{n:02}")
}

/// The emulator with one installation on `acme` covering every test repository; tokens live
/// two minutes (refreshes fall due well after each test ends).
fn fixture() -> String {
    let names: Vec<String> = (0..REPOSITORIES)
        .map(|n| format!("{:?}", repo(n)))
        .collect();
    let mut out = format!(
        "token_ttl_secs = 120\n\n[[apps]]\nid = 1\nslug = \"ghapp-test\"\nprivate_key_out = \"app1.pem\"\n\n[[installations]]\nid = 100\napp = 1\naccount = \"{OWNER}\"\naccount_type = \"Organization\"\nrepositories = [{}]\npermissions = {{ contents = \"write\", metadata = \"read\" }}\n",
        names.join(", ")
    );
    for n in 0..REPOSITORIES {
        out.push_str(&format!(
            "\n[[repositories]]\nfull_name = \"{OWNER}/{}\"\n",
            repo(n)
        ));
    }
    out
}

/// Redis's deadline and the wait for a peer's mint, wider than the defaults (250 ms, 2 s): on
/// a loaded 2-core machine 3,000 debug-build requests can stall a replica past those, and it
/// then goes alone by design (the unit tests in the broker's shared/ cover the defaults on a
/// paused clock). Killing Redis is a refused connection: it is noticed at once all the same.
const TEST_TIMEOUTS: &str = "timeout = \"2s\"\npeer_wait = \"10s\"\n";

/// One fleet at a time: two fleets' 6,000 requests on a 2-core machine would time each other
/// out of Redis (250 ms a command) and measure the machine, not the sharing.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What each replica logged about going alone: Redis unreachable, a claim holder too slow.
fn alone_lines(fleet: &Fleet) -> String {
    fleet
        .replicas
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.log()
                .lines()
                .filter(|l| l.contains("shared cache") || l.contains("did not deliver"))
                .map(|l| format!("replica {i}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Emulator, Redis, the shared key and three replicas on one config.
struct Fleet {
    emulator: EmulatorProcess,
    redis: Redis,
    replicas: Vec<DaemonProcess>,
    _key_dir: tempfile::TempDir,
}

impl Fleet {
    fn start() -> anyhow::Result<Fleet> {
        let emulator = EmulatorProcess::start(&fixture())?;
        let redis = Redis::start()?;
        let key_dir = tempfile::tempdir()?;
        let key_file = key_dir.path().join("cache.key");
        write_key(&key_file)?;
        let config = format!(
            "{}\n[cache]\nredis_url = {:?}\nencryption_key_file = {:?}\n{TEST_TIMEOUTS}",
            config_for(
                &emulator,
                "min_ttl = \"20s\"\ndegraded_min_ttl = \"5s\"\nrefresh_ahead = \"10s\"\n"
            ),
            redis.url(),
            key_file.display().to_string()
        );
        let replicas = (0..3)
            .map(|_| DaemonProcess::start(&config))
            .collect::<anyhow::Result<Vec<_>>>()?;
        emulator.reset_stats()?;
        Ok(Fleet {
            emulator,
            redis,
            replicas,
            _key_dir: key_dir,
        })
    }

    fn mints(&self) -> anyhow::Result<u64> {
        self.emulator.stats()?["mints_total"]
            .as_u64()
            .context("stats without mints_total")
    }

    /// The App's host (the emulator's git `host:port`), as git names it.
    fn host(&self) -> String {
        self.emulator.git_host()
    }

    fn sockets(&self) -> Vec<PathBuf> {
        self.replicas
            .iter()
            .map(|d| d.socket().to_path_buf())
            .collect()
    }
}

/// 32 bytes from the kernel, 0600 (`ghapp cache-key new` writes the same; tested in the
/// ghapp crate).
fn write_key(path: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    fs::write(path, key)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// What a batch of requests yielded: the tokens served per repository, and the failures.
#[derive(Default)]
struct Outcome {
    tokens: BTreeMap<String, BTreeSet<String>>,
    failures: Vec<String>,
    requests: usize,
}

/// `requests` concurrent token requests, request `i` for `repos[i % len]` on replica
/// `i % 3` (rotated per repository, so each repository is asked of every replica).
fn run_batch(host: &str, sockets: &[PathBuf], repos: &[String], requests: usize) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let clients: Vec<DaemonClient> = sockets
            .iter()
            .map(|s| DaemonClient::new(s.clone(), Duration::from_secs(20)))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..requests {
            let repo = repos[i % repos.len()].clone();
            let client = clients[(i + i / repos.len()) % clients.len()].clone();
            let query = TokenQuery {
                host: Some(host.to_string()),
                owner: Some(OWNER.into()),
                repo: Some(repo.clone()),
                protocol: Some("http".into()),
                ..TokenQuery::default()
            };
            tasks.spawn(async move { (repo, client.token(&query).await) });
        }
        let mut outcome = Outcome {
            requests,
            ..Outcome::default()
        };
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((repo, Ok(answer))) => {
                    outcome
                        .tokens
                        .entry(repo)
                        .or_default()
                        .insert(answer.token.expose().to_string());
                }
                Ok((repo, Err(e))) => outcome.failures.push(format!("{repo}: {e}")),
                Err(e) => outcome.failures.push(format!("task: {e}")),
            }
        }
        outcome
    })
}

fn status(socket: &Path) -> anyhow::Result<StatusResponse> {
    let client = DaemonClient::new(socket.to_path_buf(), Duration::from_secs(5));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(client.status())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

#[test]
fn three_replicas_mint_each_repository_once_and_redis_holds_no_secret() {
    if !Redis::available() {
        return;
    }
    let _one = ONE_FLEET.lock().unwrap_or_else(|p| p.into_inner());
    let fleet = Fleet::start().expect("fleet starts");
    let repos: Vec<String> = (0..30).map(repo).collect();
    let started = Instant::now();
    let outcome = run_batch(&fleet.host(), &fleet.sockets(), &repos, 3_000);
    let elapsed = started.elapsed();
    let mints = fleet.mints().unwrap();
    eprintln!(
        "figures: {} requests over {} repositories on 3 replicas in {:.2} s: {} failed, {} mints at the emulator",
        outcome.requests,
        repos.len(),
        elapsed.as_secs_f64(),
        outcome.failures.len(),
        mints
    );
    assert!(
        outcome.failures.is_empty(),
        "{} failed, first: {:?}",
        outcome.failures.len(),
        outcome.failures.first()
    );
    assert_eq!(
        mints,
        30,
        "one mint per repository across the fleet; going alone:\n{}",
        alone_lines(&fleet)
    );
    for (repo, tokens) in &outcome.tokens {
        assert_eq!(
            tokens.len(),
            1,
            "{repo}: every replica served the one token"
        );
    }
    for replica in &fleet.replicas {
        let shared = status(replica.socket())
            .unwrap()
            .shared_cache
            .expect("status names the shared cache");
        assert!(shared.healthy, "{shared:?}");
        assert_eq!(shared.backend, fleet.redis.url());
    }

    // Nothing in Redis tells a token, its fingerprint, or what it is for.
    let stored = fleet.redis.dump().unwrap();
    assert!(
        stored.len() >= 30,
        "the 30 tokens (and the look-ups) are stored: {} keys",
        stored.len()
    );
    let mut needles: Vec<String> = vec![OWNER.to_string(), "ghapp-test".into(), "test-app".into()];
    needles.extend(repos.iter().cloned());
    for tokens in outcome.tokens.values() {
        for token in tokens {
            let print = fingerprint(token);
            needles.push(print.trim_start_matches("sha256:").to_string());
            needles.push(print);
            needles.push(token.clone());
        }
    }
    for (key, value) in &stored {
        assert!(key.starts_with("ghapp:"), "{key}");
        for needle in &needles {
            assert!(
                !key.contains(needle.as_str()),
                "key {key} contains {needle:?}"
            );
            assert!(
                !value.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the value of {key} contains {needle:?}"
            );
        }
    }
    eprintln!(
        "figures: {} keys in Redis, none holding a token, fingerprint, owner or repository name",
        stored.len()
    );
}

#[test]
fn redis_killed_mid_run_fails_nothing_and_restarted_shares_again() {
    if !Redis::available() {
        return;
    }
    let _one = ONE_FLEET.lock().unwrap_or_else(|p| p.into_inner());
    let mut fleet = Fleet::start().expect("fleet starts");
    // Mints take 400 ms: Redis dies while the claim holders mint and their peers wait.
    fleet
        .emulator
        .fault(serde_json::json!({"kind": "latency", "route": "POST /app/installations/*/access_tokens", "ms": 400}))
        .unwrap();
    let sockets = fleet.sockets();
    let repos: Vec<String> = (0..30).map(repo).collect();
    let host = fleet.host();
    let batch = std::thread::spawn({
        let (host, sockets) = (host.clone(), sockets.clone());
        move || run_batch(&host, &sockets, &repos, 3_000)
    });
    // Wait until the first mint is under way, then kill Redis.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.emulator.stats().unwrap()["requests"]
        .as_object()
        .is_none_or(|r| !r.keys().any(|k| k.contains("access_tokens")))
    {
        assert!(Instant::now() < deadline, "no mint started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    fleet.redis.kill();
    let outcome = batch.join().unwrap();
    let mints_outage = fleet.mints().unwrap();
    eprintln!(
        "figures: Redis killed mid-run: {} requests, {} failed, {} mints for 30 repositories",
        outcome.requests,
        outcome.failures.len(),
        mints_outage
    );
    assert!(
        outcome.failures.is_empty(),
        "{} failed, first: {:?}",
        outcome.failures.len(),
        outcome.failures.first()
    );
    for replica in &fleet.replicas {
        let shared = status(replica.socket()).unwrap().shared_cache.unwrap();
        assert!(!shared.healthy, "Redis is down: {shared:?}");
        let log = replica.log();
        assert_eq!(
            log.matches("the shared cache is unreachable").count(),
            1,
            "logged once, not per request:\n{log}"
        );
    }
    // While down, a new repository still gets its token (each replica on its own).
    let alone = run_batch(&host, &sockets, &[repo(40)], 30);
    assert!(alone.failures.is_empty(), "{:?}", alone.failures);

    // Redis again (empty): every replica rejoins by itself, and sharing works again.
    fleet.emulator.clear_faults().unwrap();
    fleet.redis.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for replica in &fleet.replicas {
        loop {
            if status(replica.socket())
                .unwrap()
                .shared_cache
                .unwrap()
                .healthy
            {
                break;
            }
            assert!(Instant::now() < deadline, "replica did not rejoin Redis");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let before = fleet.mints().unwrap();
    let rejoined = run_batch(&host, &sockets, &[repo(50)], 300);
    let after = fleet.mints().unwrap();
    eprintln!(
        "figures: after Redis came back: 300 requests for a new repository on 3 replicas, {} failed, {} mint(s)",
        rejoined.failures.len(),
        after - before
    );
    assert!(rejoined.failures.is_empty(), "{:?}", rejoined.failures);
    assert_eq!(
        after - before,
        1,
        "shared again: one mint across the replicas; going alone:\n{}",
        alone_lines(&fleet)
    );
    for replica in &fleet.replicas {
        assert!(replica.log().contains("the shared cache answers again"));
    }
}
