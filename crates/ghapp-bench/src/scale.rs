//! Section s: what chaining hosts to a broker saves — mints per repository-hour for 50 simulated
//! hosts × 20 repositories, per-host-only against chained-to-a-broker, both in the same run
//! (docs/scale-out.md).
//!
//! - Per host only: 50 `ghapp daemon` processes, each with the App key (its own `[[app]]`),
//!   minting at their own emulator.
//! - Chained: 50 key-less daemons (`[upstream]`, no `[[app]]`, each with its own client key) and
//!   one broker daemon (`[network]` on loopback, plain HTTP; a `[[client]]` and a `[[policy]]`
//!   per host) minting at a second emulator.
//!
//! Both topologies run at once under the same CI-like load: every host asks for each of the 20
//! repositories once per pass, one request at a time at a steady pace, hosts staggered over the
//! pass. Short token lives stand in for hours: the emulators issue tokens living
//! [`TOKEN_LIFE`] and the daemons' `min_ttl` / `refresh_ahead` / `refresh_window` are set for
//! it ([`daemon_timing`]). Mints are counted at the emulators over a window of whole token lives
//! that starts after every first mint, so only the steady state (refresh-ahead) is counted.

use crate::load;
use crate::row::SectionRow;
use anyhow::{Context, Result, bail};
use ghapp_testkit::daemon::{DaemonProcess, DaemonStart, parse_prometheus};
use ghapp_testkit::emulator::EmulatorProcess;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Simulated hosts per topology.
pub const HOSTS: usize = 50;
/// Repositories every host asks for.
pub const REPOS: usize = 20;
/// How long the emulators' installation tokens live: the stand-in for GitHub's hour.
pub const TOKEN_LIFE: Duration = Duration::from_secs(30);
/// Every host asks for each repository once per pass (so each key stays "recently used").
const PASS: Duration = Duration::from_secs(5);
/// From the first request to the start of counting: two passes, so every first mint (spread
/// over the first pass by the hosts' stagger and repository order) is behind.
const WARM_UP: Duration = Duration::from_secs(10);
/// Daemons started at once (each start waits for its `ready` line).
const START_PARALLEL: usize = 8;

/// The `[daemon]` table of every daemon (hosts and broker alike): GitHub's defaults for an
/// hour-long token (min_ttl 30m, refresh_ahead 5m, refresh_window 1h) would leave a 30 s token
/// no room, so the margins are scaled to [`TOKEN_LIFE`] — a third of its life as min_ttl, a
/// sixth as refresh_ahead, so a daemon that mints for itself refreshes each key it serves
/// every ~12.5 s (30 s − 2.5 s of clock slack − 15 s), 2.4 times per token life, as the
/// defaults do for one-hour tokens (3600 s / 1500 s).
fn daemon_timing() -> String {
    let life = TOKEN_LIFE.as_secs();
    format!(
        "[daemon]\nmin_ttl = \"{}s\"\nrefresh_ahead = \"{}s\"\nrefresh_window = \"{life}s\"\ndegraded_min_ttl = \"{}s\"\n",
        life / 3,
        life / 6,
        life / 6
    )
}

fn fixture() -> String {
    let mut text = format!(
        "token_ttl_secs = {}\n\n[[apps]]\nid = 1\nclient_id = \"Iv1.0123456789abcdef\"\nslug = \"ghapp-scale\"\nprivate_key_out = \"app1.pem\"\n\n[[installations]]\nid = 100\napp = 1\naccount = \"scale\"\naccount_type = \"Organization\"\npermissions = {{ metadata = \"read\", contents = \"write\" }}\n",
        TOKEN_LIFE.as_secs()
    );
    for repo in 0..REPOS {
        let _ = write!(text, "\n[[repositories]]\nfull_name = \"scale/r{repo}\"\n");
    }
    text
}

fn app_table(emulator: &EmulatorProcess) -> String {
    format!(
        "\n[[app]]\nname = \"scale\"\nhost = \"{host}\"\napi_url = \"{api}\"\napp_id = 1\nprivate_key_file = \"{key}\"\ninsecure_http = true\n",
        host = emulator.git_host(),
        api = emulator.urls.api_url,
        key = emulator.key_path("app1.pem").display(),
    )
}

/// A throwaway client key for host `n` (this benchmark only).
fn client_key(n: usize) -> String {
    format!("ghk_scale-bench-host-{n:02}-not-a-secret-0123456789")
}

/// The broker: the App, a plain-HTTP loopback listener, and a client and a policy per host.
/// The per-identity mint limit is raised: time runs ~120× faster here than with hour-long
/// tokens, and the limit is per real minute.
fn broker_config(emulator: &EmulatorProcess) -> String {
    let mut text = format!(
        "{}\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\nmint_rate = 100000\nmint_burst = 100000\n{}",
        daemon_timing(),
        app_table(emulator)
    );
    for n in 0..HOSTS {
        let _ = write!(
            text,
            "\n[[client]]\nname = \"host-{n:02}\"\nkey_sha256 = \"{}\"\n\n[[policy]]\nclient = \"host-{n:02}\"\n",
            ghapp_protocol::client_key::digest_hex(&client_key(n))
        );
    }
    text
}

/// A key-less host: its tokens for the emulator's git host come from the broker.
fn chained_host_config(broker: std::net::SocketAddr, git_host: &str, key_file: &Path) -> String {
    format!(
        "{}\n[upstream]\nurl = \"http://{broker}\"\nclient_key_file = \"{}\"\nhosts = [\"{git_host}\"]\n",
        daemon_timing(),
        key_file.display()
    )
}

/// Starts one daemon per config, [`START_PARALLEL`] at a time, at log level `info`.
fn start_daemons(configs: Vec<String>) -> Result<Vec<DaemonProcess>> {
    let mut daemons = Vec::with_capacity(configs.len());
    for chunk in configs.chunks(START_PARALLEL) {
        let started: Vec<Result<DaemonProcess>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|config| {
                    scope.spawn(move || {
                        DaemonProcess::start_with(
                            config,
                            DaemonStart {
                                env: vec![("GHAPP_LOG".into(), "info".into())],
                                ..DaemonStart::default()
                            },
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a daemon start panicked"))
                })
                .collect()
        });
        for daemon in started {
            daemons.push(daemon.context("starting a daemon")?);
        }
    }
    Ok(daemons)
}

/// Answers the simulated hosts got.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// The first failure, to say why.
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(why);
    }
}

/// One topology under load: its emulator (counting mints), its host daemons, its broker.
struct Topology {
    emulator: EmulatorProcess,
    hosts: Vec<DaemonProcess>,
    broker: Option<DaemonProcess>,
    tally: Arc<Tally>,
}

impl Topology {
    fn mints(&self) -> Result<u64> {
        Ok(self.emulator.stats()?["mints_total"].as_u64().unwrap_or(0))
    }

    /// `/v1/token` requests the broker answered (cache hits and misses): what the hosts asked.
    fn broker_requests(&self) -> Result<u64> {
        let Some(broker) = &self.broker else {
            return Ok(0);
        };
        let (status, body) = broker.get("/metrics")?;
        if status != 200 {
            bail!("the broker's /metrics answered {status}: {body}");
        }
        let samples =
            parse_prometheus(&body).map_err(|e| anyhow::anyhow!("broker /metrics: {e}"))?;
        Ok(samples
            .iter()
            .filter(|s| s.name == "ghapp_cache_hits_total" || s.name == "ghapp_cache_misses_total")
            .map(|s| s.value as u64)
            .sum())
    }

    /// One simulated host per daemon on `runtime`, each asking for every repository once per
    /// [`PASS`], until `stop`.
    fn drive(
        &self,
        runtime: &tokio::runtime::Runtime,
        stop: &Arc<AtomicBool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let git_host = self.emulator.git_host();
        let paths: Arc<Vec<String>> = Arc::new(
            (0..REPOS)
                .map(|r| format!("/v1/token?host={git_host}&owner=scale&repo=r{r}&protocol=http"))
                .collect(),
        );
        let start = tokio::time::Instant::now();
        let step = PASS / REPOS as u32;
        self.hosts
            .iter()
            .enumerate()
            .map(|(n, daemon)| {
                let socket = daemon.socket().to_path_buf();
                let (paths, stop, tally) = (paths.clone(), stop.clone(), self.tally.clone());
                // Hosts staggered over one pass, each starting at another repository.
                let mut at = start + PASS * n as u32 / HOSTS as u32;
                let mut repo = n % REPOS;
                runtime.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep_until(at).await;
                        match load::get(&socket, &paths[repo]).await {
                            Ok((200, _)) => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((status, body)) => tally.fail(format!(
                                "host {n} r{repo}: {status} {}",
                                String::from_utf8_lossy(&body)
                            )),
                            Err(e) => tally.fail(format!("host {n} r{repo}: {e:#}")),
                        }
                        repo = (repo + 1) % REPOS;
                        at += step;
                    }
                })
            })
            .collect()
    }
}

/// Counters at one moment.
struct Snapshot {
    mints: u64,
    broker_requests: u64,
}

fn snapshot(topology: &Topology) -> Result<Snapshot> {
    Ok(Snapshot {
        mints: topology.mints()?,
        broker_requests: topology.broker_requests()?,
    })
}

/// Runs both topologies and returns the section's rows; `lives` token lives are counted, or as
/// many as `GHAPP_BENCH_SCALE_LIVES` says (a longer run for docs/scale-out.md).
pub fn measure(lives: u32) -> Result<Vec<SectionRow>> {
    let lives = match std::env::var("GHAPP_BENCH_SCALE_LIVES") {
        Ok(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| {
                format!("GHAPP_BENCH_SCALE_LIVES={text:?}: expected a whole number above 0")
            })?,
        Err(_) => lives,
    };
    let keys = tempfile::tempdir()?;
    eprintln!(
        "bench: scale-out: starting 2 emulators, {HOSTS} per-host daemons, a broker and {HOSTS} key-less daemons"
    );
    let per_host_emulator = EmulatorProcess::start(&fixture()).context("starting an emulator")?;
    let chained_emulator = EmulatorProcess::start(&fixture()).context("starting an emulator")?;
    let per_host_config = format!("{}{}", daemon_timing(), app_table(&per_host_emulator));
    let per_host = Topology {
        hosts: start_daemons(vec![per_host_config; HOSTS])?,
        emulator: per_host_emulator,
        broker: None,
        tally: Arc::default(),
    };
    let broker = start_daemons(vec![broker_config(&chained_emulator)])?
        .pop()
        .context("no broker")?;
    let broker_address = broker.network_address();
    let mut chained_configs = Vec::with_capacity(HOSTS);
    for n in 0..HOSTS {
        let key_file = keys.path().join(format!("host-{n:02}.key"));
        std::fs::write(&key_file, client_key(n))?;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        chained_configs.push(chained_host_config(
            broker_address,
            &chained_emulator.git_host(),
            &key_file,
        ));
    }
    let chained = Topology {
        hosts: start_daemons(chained_configs)?,
        emulator: chained_emulator,
        broker: Some(broker),
        tally: Arc::default(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = per_host.drive(&runtime, &stop);
    tasks.extend(chained.drive(&runtime, &stop));
    let window = TOKEN_LIFE * lives;
    eprintln!(
        "bench: scale-out: load running; counting from {:?} for {:?} ({lives} token lives)",
        WARM_UP, window
    );
    std::thread::sleep(WARM_UP);
    let (per_host_before, chained_before) = (snapshot(&per_host)?, snapshot(&chained)?);
    let counting = std::time::Instant::now();
    std::thread::sleep(window);
    let (per_host_after, chained_after) = (snapshot(&per_host)?, snapshot(&chained)?);
    let counted = counting.elapsed();
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });

    let token_lives = counted.as_secs_f64() / TOKEN_LIFE.as_secs_f64();
    let per_repo_life = |mints: u64| mints as f64 / REPOS as f64 / token_lives;
    let per_host_mints = per_host_after.mints - per_host_before.mints;
    let chained_mints = chained_after.mints - chained_before.mints;
    let asked = chained_after.broker_requests - chained_before.broker_requests;
    let (per_host_rate, chained_rate) =
        (per_repo_life(per_host_mints), per_repo_life(chained_mints));
    let savings = per_host_rate / chained_rate.max(f64::MIN_POSITIVE);
    // Each host needs each broker token once: the ideal is one request per host per mint.
    let asked_per_token = asked as f64 / HOSTS as f64 / chained_mints.max(1) as f64;
    let window_text = format!(
        "{HOSTS} hosts × {REPOS} repos, {:.0} s = {token_lives:.1} token lives of {} s",
        counted.as_secs_f64(),
        TOKEN_LIFE.as_secs()
    );
    let failures = |t: &Tally| -> (u64, u64, String) {
        let first = t
            .first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|why| format!(" (first: {why})"))
            .unwrap_or_default();
        (
            t.ok.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
            first,
        )
    };
    let (ph_total, ph_failed, ph_first) = failures(&per_host.tally);
    let (ch_total, ch_failed, ch_first) = failures(&chained.tally);
    if ph_failed + ch_failed > 0 {
        eprintln!(
            "bench: scale-out: failed requests: per host {ph_failed}{ph_first}; chained {ch_failed}{ch_first}"
        );
    }
    Ok(vec![
        SectionRow {
            what: format!(
                "per host only: {HOSTS} daemons each with the App key, mints at GitHub per repository per token life"
            ),
            figure: format!("{per_host_rate:.1} ({per_host_mints} mints; {window_text})"),
            baseline: format!("one host: {:.2}", per_host_rate / HOSTS as f64),
            ratio: "–".into(),
            target: "–".into(),
            met: None,
        },
        SectionRow {
            what: format!(
                "chained: {HOSTS} key-less daemons → 1 broker, mints at GitHub per repository per token life"
            ),
            figure: format!("{chained_rate:.2} ({chained_mints} mints, same window)"),
            baseline: format!("per host only: {per_host_rate:.1}"),
            ratio: format!("{savings:.1}× fewer"),
            // Half the hosts: a one-life (--quick) window counts each key's 2–3 refreshes
            // whole or not at all, ±20 %; with hour-long tokens the figure is ~50× (docs/scale-out.md).
            target: format!("≥ {}× fewer", HOSTS / 2),
            met: Some(savings >= (HOSTS / 2) as f64),
        },
        SectionRow {
            what: "chained: requests from the hosts to the broker per host and broker token".into(),
            figure: format!("{asked_per_token:.2} ({asked} requests)"),
            baseline: "1 (each host fetches each broker token once)".into(),
            ratio: format!("{asked_per_token:.2}×"),
            target: "≤ 1.2".into(),
            met: Some(asked_per_token <= 1.2),
        },
        SectionRow {
            what: "failed requests (a host's /v1/token not answered 200), whole run".into(),
            figure: format!(
                "per host only: {ph_failed} of {ph_total}; chained: {ch_failed} of {ch_total}"
            ),
            baseline: "–".into(),
            ratio: "–".into(),
            target: "0".into(),
            met: Some(ph_failed + ch_failed == 0),
        },
    ])
}
