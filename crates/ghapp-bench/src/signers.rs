//! Section g: what each signer costs on the cold path. One emulator and one daemon per signer
//! (the PEM key, the same key imported into a SoftHSM2 token, a key in moto's emulated KMS),
//! all in one run. A cold mint is timed twice: with a JWT that must be signed first, and with
//! the JWT still reused — the second shows that signing stays off the hot path.
//!
//! A fresh JWT is forced by moving GitHub's (the emulator's) clock 600 s back and forth before
//! the request: GitHub refuses the reused JWT's times once, the daemon adopts GitHub's clock
//! and signs a new JWT. So the "fresh" figure holds one refused call for every signer alike;
//! the PEM row is the baseline the other signers are compared with.

use crate::load;
use crate::stats::{Samples, Summary};
use anyhow::{Context, Result, bail};
use ghapp_testkit::daemon::{DaemonProcess, DaemonStart};
use ghapp_testkit::emulator::EmulatorProcess;
use ghapp_testkit::signers::{self, Moto};
use serde_json::json;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What one signer cost, or why it was not measured.
pub struct SignerFigures {
    /// The signer as the row names it.
    pub name: &'static str,
    /// Cold mints needing a fresh JWT, and cold mints with the JWT reused; or why not measured.
    pub measured: Result<(Summary, Summary), String>,
}

/// Measures the PEM, SoftHSM2 and emulated-KMS signers, `n` cold mints of each kind apiece.
pub async fn measure(n: usize) -> Vec<SignerFigures> {
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            return ["PEM key", "SoftHSM2", "AWS KMS (moto)"]
                .into_iter()
                .map(|name| SignerFigures {
                    name,
                    measured: Err(format!("no temp dir: {e}")),
                })
                .collect();
        }
    };
    let pem = pem(n).await.map_err(|e| format!("{e:#}"));
    let softhsm = softhsm(n, scratch.path())
        .await
        .map_err(|e| format!("{e:#}"))
        .and_then(|r| r);
    let kms = kms(n, scratch.path())
        .await
        .map_err(|e| format!("{e:#}"))
        .and_then(|r| r);
    vec![
        SignerFigures {
            name: "PEM key (in memory)",
            measured: pem,
        },
        SignerFigures {
            name: "SoftHSM2 token (PKCS#11)",
            measured: softhsm,
        },
        SignerFigures {
            name: "AWS KMS emulated by moto",
            measured: kms,
        },
    ]
}

/// The emulator fixture: repositories `w` (warm-up) and `c0..c{2n}`; the App's key generated (`private_key_out`)
/// or given by its public half (`public_key_file`).
fn fixture(n: usize, key_line: &str) -> String {
    let mut text = format!(
        "token_ttl_secs = 3600\n\n[[apps]]\nid = 1\nclient_id = \"Iv1.0123456789abcdef\"\nslug = \"ghapp-bench\"\n{key_line}\n\n[[installations]]\nid = 100\napp = 1\naccount = \"bench\"\naccount_type = \"Organization\"\npermissions = {{ metadata = \"read\", contents = \"write\" }}\n"
    );
    let repos = std::iter::once("w".to_string()).chain((0..2 * n).map(|i| format!("c{i}")));
    for repo in repos {
        let _ = write!(text, "\n[[repositories]]\nfull_name = \"bench/{repo}\"\n");
    }
    text
}

fn daemon_config(emulator: &EmulatorProcess, key_lines: &str) -> String {
    format!(
        "[daemon]\nmin_ttl = \"30m\"\n\n[[app]]\nname = \"bench\"\nhost = \"{host}\"\napi_url = \"{api}\"\napp_id = 1\ninsecure_http = true\n{key_lines}",
        host = emulator.git_host(),
        api = emulator.urls.api_url,
    )
}

fn start_daemon(
    emulator: &EmulatorProcess,
    key_lines: &str,
    env: &[(&str, String)],
) -> Result<DaemonProcess> {
    let mut all = vec![("GHAPP_LOG".to_string(), "info".to_string())];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    DaemonProcess::start_with(
        &daemon_config(emulator, key_lines),
        DaemonStart {
            env: all,
            ..DaemonStart::default()
        },
    )
}

async fn pem(n: usize) -> Result<(Summary, Summary)> {
    let emulator = EmulatorProcess::start(&fixture(n, "private_key_out = \"app1.pem\""))?;
    let key = emulator.key_path("app1.pem");
    let daemon = start_daemon(
        &emulator,
        &format!("private_key_file = {:?}\n", key.display().to_string()),
        &[],
    )?;
    cold_mints(&emulator, &daemon, n).await
}

/// `Err(why)` inside: SoftHSM2 is not here.
async fn softhsm(n: usize, scratch: &Path) -> Result<Result<(Summary, Summary), String>> {
    if let Some(why) = signers::softhsm_missing() {
        return Ok(Err(format!("not measured: {why}")));
    }
    let emulator = EmulatorProcess::start(&fixture(n, "private_key_out = \"app1.pem\""))?;
    let dir = scratch.join("softhsm");
    std::fs::create_dir_all(&dir)?;
    let conf = signers::softhsm_token_with(&dir, &emulator.key_path("app1.pem"), "app1")?;
    let pin = dir.join("pin");
    std::fs::write(&pin, signers::SOFTHSM_PIN)?;
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600))?;
    let daemon = start_daemon(
        &emulator,
        &format!(
            "signer = \"pkcs11\"\npkcs11_module = {:?}\npkcs11_token_label = \"ghapp\"\npkcs11_key_label = \"app1\"\npkcs11_pin_file = {:?}\n",
            signers::SOFTHSM_MODULE,
            pin.display().to_string()
        ),
        &[("SOFTHSM2_CONF", conf.display().to_string())],
    )?;
    Ok(Ok(cold_mints(&emulator, &daemon, n).await?))
}

/// moto's server: the test's venv (`.ci/run` makes it) or `moto_server` on `PATH`.
fn moto_program() -> Option<PathBuf> {
    let venv = PathBuf::from("crates/ghapp-reliability/tests/kms/.venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    })
}

/// `Err(why)` inside: moto is not here, or ghapp was built without `aws-kms`.
async fn kms(n: usize, scratch: &Path) -> Result<Result<(Summary, Summary), String>> {
    let Some(program) = moto_program() else {
        return Ok(Err(
            "not measured: moto's server is not installed (pip install -r crates/ghapp-reliability/tests/kms/requirements.txt)".into(),
        ));
    };
    let moto = Moto::start(&program)?;
    let (key_id, public) = moto.create_signing_key()?;
    let public_pem = scratch.join("kms-public.pem");
    std::fs::write(&public_pem, public)?;
    let emulator = EmulatorProcess::start(&fixture(
        n,
        &format!("public_key_file = {:?}", public_pem.display().to_string()),
    ))?;
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let started = start_daemon(
        &emulator,
        &format!(
            "signer = \"aws_kms\"\nkms_key_id = {key_id:?}\nkms_endpoint_url = {:?}\n",
            moto.url
        ),
        &env,
    );
    let daemon = match started {
        Err(e) if e.to_string().contains("is not built into this ghapp") => {
            return Ok(Err(
                "not measured: this ghapp was built without the aws-kms feature (scripts/bench.sh builds it with)".into(),
            ));
        }
        started => started?,
    };
    Ok(Ok(cold_mints(&emulator, &daemon, n).await?))
}

/// `n` cold mints needing a fresh JWT, each followed by a cold mint reusing it.
async fn cold_mints(
    emulator: &EmulatorProcess,
    daemon: &DaemonProcess,
    n: usize,
) -> Result<(Summary, Summary)> {
    let socket = daemon.socket().to_path_buf();
    let path = |repo: &str| {
        format!(
            "/v1/token?host={}&owner=bench&repo={repo}&protocol=http",
            emulator.git_host()
        )
    };
    // The first JWT and the connection to GitHub, outside the figures.
    let (status, body) = load::get(&socket, &path("w")).await?;
    if status != 200 {
        bail!(
            "warm-up token request answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (mut fresh, mut reused) = (Samples::default(), Samples::default());
    for i in 0..n {
        // GitHub's clock moves 600 s: the JWT the daemon holds is refused for its times once.
        let secs = if i % 2 == 0 { 600 } else { 0 };
        emulator
            .fault(json!({"kind": "clock_offset", "secs": secs}))
            .context("moving the emulator's clock")?;
        for (repo, samples) in [(2 * i, &mut fresh), (2 * i + 1, &mut reused)] {
            let t = Instant::now();
            let (status, body) = load::get(&socket, &path(&format!("c{repo}"))).await?;
            if status != 200 {
                bail!(
                    "cold token request for c{repo} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            samples.micros.push(t.elapsed().as_micros() as u64);
        }
    }
    Ok((fresh.summary(), reused.summary()))
}
