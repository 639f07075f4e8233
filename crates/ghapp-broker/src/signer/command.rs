//! `sign_command`: a program that signs. The JWT's signing input goes to its stdin, the raw
//! RS256 signature comes back on its stdout; run without a shell, killed at `sign_timeout`.
//! ghapp never holds the key: the command may talk to an HSM, a cloud KMS or an agent.

use super::{SignError, Signer};
use ghapp_protocol::secret::fingerprint;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most bytes read from a signing command's stdout (an RSA-8192 signature is 1024).
const MAX_SIGNATURE_BYTES: u64 = 1024;

/// Signs by running a command (`sign_command`, `next_sign_command`).
pub struct CommandSigner {
    argv: Vec<String>,
    timeout: Duration,
    describe: String,
    fingerprint: String,
}

impl CommandSigner {
    /// A signer running `argv` (program, then arguments), allowed `timeout` per signature.
    pub fn new(argv: &[String], timeout: Duration) -> Result<Self, String> {
        let program = argv
            .first()
            .filter(|p| !p.is_empty())
            .ok_or("sign_command is empty: give the program, then its arguments")?;
        Ok(CommandSigner {
            describe: format!("command {program}"),
            fingerprint: fingerprint(&format!("sign_command\0{}", argv.join("\0"))),
            argv: argv.to_vec(),
            timeout,
        })
    }
}

impl Signer for CommandSigner {
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let fail = |detail: String| SignError::new(self, detail);
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| fail("empty".into()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail("no pipes to the command".into()));
        };
        // Writer and readers on threads, so neither side can stall the other on a full pipe
        // and the deadline below holds whatever the command does.
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.take(MAX_SIGNATURE_BYTES + 1).read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.take(4096).read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "did not finish within sign_timeout ({:.1}s) and was killed",
                        self.timeout.as_secs_f64()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(fail(format!("waiting for {program}: {e}"))),
            }
        };
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        if !status.success() {
            let text = String::from_utf8_lossy(&err);
            let first_line = text.lines().next().unwrap_or("").trim();
            let said = if first_line.is_empty() {
                String::new()
            } else {
                format!(": {}", first_line.chars().take(200).collect::<String>())
            };
            return Err(fail(format!("failed ({status}){said}")));
        }
        check_signature_length(out.len()).map_err(fail)?;
        Ok(out)
    }

    fn describe(&self) -> &str {
        &self.describe
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// An RSA signature is as long as the key's modulus: 128 to 1024 bytes in steps of 128
/// (RSA-1024 … RSA-8192). Anything else is not one — most often base64 or a trailing newline.
fn check_signature_length(len: usize) -> Result<(), String> {
    if len == 0 {
        return Err("printed nothing on stdout: expected the raw RS256 signature".into());
    }
    if !(128..=1024).contains(&len) || !len.is_multiple_of(128) {
        return Err(format!(
            "printed {len} bytes, which is not an RSA signature (256 bytes for RSA-2048, 384, 512): print the raw signature bytes, not base64, with no newline"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(script: &str, timeout: Duration) -> CommandSigner {
        CommandSigner::new(&["sh".into(), "-c".into(), script.into()], timeout).unwrap()
    }

    #[test]
    fn signs_with_openssl_like_the_pem_key() {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-key.pem");
        let command = signer(
            &format!("exec openssl dgst -sha256 -sign {key}"),
            Duration::from_secs(10),
        );
        let pem = crate::key::AppKey::from_pem(
            include_bytes!("../../tests/data/test-key.pem"),
            "test".into(),
            "t",
        )
        .unwrap();
        let input = b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9";
        assert_eq!(command.sign(input).unwrap(), pem.sign(input).unwrap());
        assert_eq!(command.describe(), "command sh");
        assert!(command.fingerprint().starts_with("sha256:"));
    }

    #[test]
    fn failures_name_the_signer_and_why() {
        let err = signer("echo 'token expired' >&2; exit 3", Duration::from_secs(5))
            .sign(b"x")
            .unwrap_err();
        assert_eq!(err.signer, "command sh");
        assert_eq!(err.detail, "failed (exit status: 3): token expired");
        assert_eq!(
            err.to_string(),
            "signer command sh: failed (exit status: 3): token expired"
        );

        let started = Instant::now();
        let err = signer("sleep 30", Duration::from_millis(300))
            .sign(b"x")
            .unwrap_err();
        assert_eq!(
            err.detail,
            "did not finish within sign_timeout (0.3s) and was killed"
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        let err = signer("head -c 344 /dev/zero | tr '\\0' A", Duration::from_secs(5))
            .sign(b"x")
            .unwrap_err();
        assert!(err.detail.contains("printed 344 bytes"), "{err}");
        let err = signer("cat >/dev/null", Duration::from_secs(5))
            .sign(b"x")
            .unwrap_err();
        assert!(err.detail.contains("printed nothing"), "{err}");

        let missing =
            CommandSigner::new(&["/nonexistent/sign".into()], Duration::from_secs(1)).unwrap();
        let err = missing.sign(b"x").unwrap_err();
        assert!(
            err.detail.starts_with("cannot run /nonexistent/sign"),
            "{err}"
        );
        assert!(CommandSigner::new(&[], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn no_shell_between_config_and_program() {
        // `$(…)` reaches the program literally: printf prints it, 6 bytes, not a signature.
        let err = CommandSigner::new(
            &["printf".into(), "%s".into(), "$(id)".into()],
            Duration::from_secs(5),
        )
        .unwrap()
        .sign(b"x")
        .unwrap_err();
        assert!(err.detail.contains("printed 5 bytes"), "{err}");
    }
}
