//! Section p: the API proxy (docs/proxy.md) against the emulator directly, in the same run.
//! - Latency added on a cache hit (`cache_fresh_for` > 0: no GitHub request) and on a
//!   revalidation (`cache_fresh_for = 0`: a conditional request GitHub answers 304), each over
//!   the emulator's own latency for the same GET with an installation token.
//! - GitHub rate-limit points spent by a replayed CI-like access pattern — jobs that each read
//!   the repository, its pull requests and two files, while the repository changes now and
//!   then — with every job calling GitHub itself and with every job going through the proxy.

use crate::row::SectionRow;
use crate::stats::Samples;
use anyhow::{Context, Result, bail};
use ghapp_testkit::daemon::{DaemonProcess, config_for_emulator};
use ghapp_testkit::emulator::{EmulatorProcess, request};
use std::time::{Duration, Instant};

const CLIENT_KEY: &str = "bench-proxy-client-key";
/// sha256("bench-proxy-client-key").
fn client_key_digest() -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CLIENT_KEY.as_bytes());
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

const FIXTURE: &str = r#"token_ttl_secs = 3600

[[apps]]
id = 1
slug = "ghapp-bench"
private_key_out = "app1.pem"

[[installations]]
id = 100
app = 1
account = "bench"
account_type = "Organization"
permissions = { metadata = "read", contents = "read", pull_requests = "read" }

[[repositories]]
full_name = "bench/r0"
"#;

/// A daemon whose proxy keeps answers fresh for `fresh_for` (a TOML duration).
fn proxy_daemon(emulator: &EmulatorProcess, fresh_for: &str) -> Result<(DaemonProcess, String)> {
    let config = format!(
        "{}\n[proxy]\nlisten = \"127.0.0.1:0\"\ndefault_installation = \"bench\"\ncache_fresh_for = \"{fresh_for}\"\n\n[[proxy.client]]\nname = \"bench\"\nkey_sha256 = \"{}\"\n",
        config_for_emulator(
            &emulator.urls.api_url,
            &emulator.urls.git_url,
            &emulator.key_path("app1.pem"),
            ""
        ),
        client_key_digest()
    );
    let daemon = DaemonProcess::start(&config)?;
    let log = daemon.log();
    let address = log
        .lines()
        .find_map(|line| line.split("ghapp proxy listening on http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .context("the daemon logged no proxy address")?
        .to_string();
    Ok((daemon, format!("http://{address}/api/v3")))
}

fn client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// `n` sequential GETs of `url` on one kept-alive connection.
fn latency(client: &reqwest::blocking::Client, url: &str, auth: &str, n: usize) -> Result<Samples> {
    let mut samples = Samples::default();
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let response = client
            .get(url)
            .header("Authorization", auth)
            .header("User-Agent", "ghapp-bench")
            .send()?;
        let ok = response.status().is_success();
        let _ = response.bytes()?;
        if ok {
            samples.micros.push(t.elapsed().as_micros() as u64);
        } else {
            samples.errors += 1;
        }
    }
    samples.elapsed = started.elapsed();
    Ok(samples)
}

/// Points used so far in the emulator's `installation:100` bucket.
fn points(emulator: &EmulatorProcess) -> Result<u64> {
    emulator.rate_limit_used("installation:100")
}

fn change(emulator: &EmulatorProcess, body: &str) -> Result<()> {
    let response = request(
        &emulator.urls.admin_url,
        None,
        "POST",
        "/_emulator/resources",
        &[],
        Some(body),
    )?;
    if response.status != 200 {
        bail!("resource change refused: {}", response.status);
    }
    Ok(())
}

/// The CI-like pattern: `jobs` jobs, each reading four resources; every fifth job follows a
/// push and every seventh a new pull request. Returns the points GitHub counted.
fn replay(
    emulator: &EmulatorProcess,
    client: &reqwest::blocking::Client,
    base: &str,
    auth: &str,
    jobs: usize,
) -> Result<u64> {
    let paths = [
        "/repos/bench/r0",
        "/repos/bench/r0/pulls",
        "/repos/bench/r0/contents/README.md",
        "/repos/bench/r0/contents/.ci/pipeline.yml",
    ];
    change(
        emulator,
        r#"{"kind":"put_file","owner":"bench","repo":"r0","path":".ci/pipeline.yml","content":"steps: []"}"#,
    )?;
    let before = points(emulator)?;
    for job in 0..jobs {
        if job % 5 == 4 {
            change(
                emulator,
                r#"{"kind":"touch_repository","owner":"bench","repo":"r0"}"#,
            )?;
        }
        if job % 7 == 6 {
            change(
                emulator,
                r#"{"kind":"add_pull","owner":"bench","repo":"r0","title":"change"}"#,
            )?;
        }
        for path in paths {
            let response = client
                .get(format!("{base}{path}"))
                .header("Authorization", auth)
                .header("User-Agent", "ghapp-bench")
                .send()?;
            if !response.status().is_success() {
                bail!("{path} answered {}", response.status());
            }
            let _ = response.bytes()?;
        }
    }
    Ok(points(emulator)? - before)
}

/// Runs section p; `scale` divides the sample counts (20 for `--quick`).
pub fn measure(scale: u64) -> Result<Vec<SectionRow>> {
    let emulator = EmulatorProcess::start(FIXTURE)?;
    let token = emulator.mint_token(100, serde_json::json!({}))?["token"]
        .as_str()
        .context("minted token")?
        .to_string();
    let direct_auth = format!("token {token}");
    let proxy_auth = format!("token {CLIENT_KEY}");
    let (hit_daemon, hit_base) = proxy_daemon(&emulator, "1h")?;
    let (revalidate_daemon, revalidate_base) = proxy_daemon(&emulator, "0s")?;
    let client = client()?;
    let n = (4000 / scale) as usize;
    let direct_url = format!("{}/repos/bench/r0", emulator.urls.api_url);
    // Warm every path (token minted, connection open, answer cached).
    latency(&client, &direct_url, &direct_auth, 50)?;
    latency(
        &client,
        &format!("{hit_base}/repos/bench/r0"),
        &proxy_auth,
        50,
    )?;
    latency(
        &client,
        &format!("{revalidate_base}/repos/bench/r0"),
        &proxy_auth,
        50,
    )?;
    let direct = latency(&client, &direct_url, &direct_auth, n)?.summary();
    let hit = latency(
        &client,
        &format!("{hit_base}/repos/bench/r0"),
        &proxy_auth,
        n,
    )?
    .summary();
    let revalidated = latency(
        &client,
        &format!("{revalidate_base}/repos/bench/r0"),
        &proxy_auth,
        n,
    )?
    .summary();
    if direct.errors + hit.errors + revalidated.errors > 0 {
        bail!(
            "failed requests: direct {}, hit {}, revalidated {}",
            direct.errors,
            hit.errors,
            revalidated.errors
        );
    }
    let added_hit = hit.p50_ms - direct.p50_ms;
    let added_revalidated = revalidated.p50_ms - direct.p50_ms;
    let ms = |x: f64| format!("{x:.3} ms");
    let mut rows = vec![
        SectionRow {
            what: format!(
                "GET /repos/{{o}}/{{r}} through the proxy, cache hit: p50 ({n} sequential, keep-alive)"
            ),
            figure: ms(hit.p50_ms),
            baseline: format!("{} (emulator directly)", ms(direct.p50_ms)),
            ratio: format!("{added_hit:+.3} ms added"),
            target: "< 1 ms added".into(),
            met: Some(added_hit < 1.0),
        },
        SectionRow {
            what: "  the same, p99".into(),
            figure: ms(hit.p99_ms),
            baseline: ms(direct.p99_ms),
            ratio: format!("{:+.3} ms", hit.p99_ms - direct.p99_ms),
            target: "–".into(),
            met: None,
        },
        SectionRow {
            what: "  revalidated (cache_fresh_for = 0: a 304 from the emulator each time): p50"
                .into(),
            figure: ms(revalidated.p50_ms),
            baseline: ms(direct.p50_ms),
            ratio: format!("{added_revalidated:+.3} ms added"),
            target: "–".into(),
            met: None,
        },
    ];
    let jobs = (200 / scale).max(10) as usize;
    let without = replay(
        &emulator,
        &client,
        &emulator.urls.api_url,
        &direct_auth,
        jobs,
    )?;
    let with = replay(&emulator, &client, &revalidate_base, &proxy_auth, jobs)?;
    rows.push(SectionRow {
        what: format!(
            "rate-limit points for {jobs} CI-like jobs × 4 GETs (a push every 5th job, a new pull request every 7th), through the proxy"
        ),
        figure: with.to_string(),
        baseline: format!("{without} (jobs calling GitHub directly)"),
        ratio: format!("{:.1}% of direct", 100.0 * with as f64 / without.max(1) as f64),
        target: "fewer".into(),
        met: Some(with < without),
    });
    drop((hit_daemon, revalidate_daemon));
    Ok(rows)
}
