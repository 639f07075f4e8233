//! Real signers outside ghapp for tests and benchmarks: a SoftHSM2 token holding an App key
//! (PKCS#11) and moto's KMS server (AWS KMS). Shared by `ghapp-reliability`'s signer tests and
//! `ghapp-bench`'s signer rows, so both set them up the same way.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// SoftHSM2's module, where Debian's `softhsm2` package puts it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The user PIN of the tokens [`softhsm_token_with`] creates.
pub const SOFTHSM_PIN: &str = "5678";

/// Why SoftHSM2 cannot be used here (module or `softhsm2-util` missing), or `None` when it can.
pub fn softhsm_missing() -> Option<String> {
    if !Path::new(SOFTHSM_MODULE).is_file() {
        return Some(format!(
            "SoftHSM2 is not installed ({SOFTHSM_MODULE} missing; apt-get install softhsm2)"
        ));
    }
    let works = Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!works).then(|| "softhsm2-util does not run (apt-get install softhsm2)".to_string())
}

/// A SoftHSM2 token `ghapp` (user PIN [`SOFTHSM_PIN`]) in `dir`, holding the PKCS#1 PEM key
/// `key` as the private key labelled `label`; returns the `SOFTHSM2_CONF` to use.
pub fn softhsm_token_with(dir: &Path, key: &Path, label: &str) -> Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    run(
        &conf,
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "ghapp",
            "--so-pin",
            "1234",
            "--pin",
            SOFTHSM_PIN,
        ],
    )?;
    softhsm_import(&conf, key, label, "01")?;
    Ok(conf)
}

/// Imports the PKCS#1 PEM key `key` into the token `ghapp` of `conf` as `label`, then deletes
/// the PKCS#8 copy made for the import: only the token holds the key.
pub fn softhsm_import(conf: &Path, key: &Path, label: &str, id: &str) -> Result<()> {
    let pkcs8 = conf.with_file_name(format!("{label}.p8.pem"));
    let (key, pkcs8_path) = (key.display().to_string(), pkcs8.display().to_string());
    run(
        conf,
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &key,
            "-out",
            &pkcs8_path,
        ],
    )?;
    run(
        conf,
        "softhsm2-util",
        &[
            "--import",
            &pkcs8_path,
            "--token",
            "ghapp",
            "--label",
            label,
            "--id",
            id,
            "--pin",
            SOFTHSM_PIN,
        ],
    )?;
    std::fs::remove_file(&pkcs8).with_context(|| format!("removing {}", pkcs8.display()))
}

fn run(conf: &Path, program: &str, args: &[&str]) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A running `moto_server` (moto's AWS emulator) on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT` (the `kms_endpoint_url`).
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Moto {
    /// Starts `program` (a `moto_server`) and waits until it listens.
    pub fn start(program: &Path) -> Result<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("{} did not listen within 60 s", program.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    /// Stops the server (a KMS outage); idempotent.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One KMS call (`TrentService.<action>`); moto does not check SigV4 signatures.
    pub fn kms(&self, action: &str, body: Value) -> Result<Value> {
        let target = format!("TrentService.{action}");
        let response = crate::emulator::request(
            &self.url,
            None,
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", &target),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
            Some(&body.to_string()),
        )?;
        if response.status != 200 {
            bail!(
                "KMS {action}: HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        Ok(serde_json::from_slice(&response.body)?)
    }

    /// Creates an `RSA_2048` `SIGN_VERIFY` key; returns its id and its public key as a PEM
    /// (`-----BEGIN PUBLIC KEY-----`), ready for the emulator's `public_key_file`.
    pub fn create_signing_key(&self) -> Result<(String, String)> {
        let created = self.kms(
            "CreateKey",
            json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
        )?;
        let key_id = created["KeyMetadata"]["KeyId"]
            .as_str()
            .context("CreateKey answered no KeyId")?
            .to_string();
        let public = self.kms("GetPublicKey", json!({"KeyId": key_id}))?;
        let der = public["PublicKey"]
            .as_str()
            .context("GetPublicKey answered no PublicKey")?;
        let lines: Vec<String> = der
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        );
        Ok((key_id, pem))
    }
}
