//! Timing whole processes (git, the helper, `/bin/true`) and reading their memory use.

use crate::stats::Samples;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A command to run many times with the same stdin.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
    /// What to write on stdin.
    pub stdin: Vec<u8>,
    /// A string stdout must contain for a run to count as a success (checked every run).
    pub expect_stdout: Option<String>,
}

impl Invocation {
    /// A command with no arguments, input or expectation.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Invocation {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: Vec::new(),
            expect_stdout: None,
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs once; Ok(true) when it exited 0 and printed what was expected.
    pub fn run_once(&self) -> Result<bool> {
        self.run_checked().map(|failure| failure.is_none())
    }

    /// Runs once; `Some(stderr)` when the run failed, so warm-up failures can say why.
    pub fn run_checked(&self) -> Result<Option<String>> {
        let mut child = self
            .command()
            .spawn()
            .with_context(|| format!("spawning {}", self.program.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper may exit without reading stdin (e.g. /bin/true): ignore EPIPE.
            let _ = stdin.write_all(&self.stdin);
        }
        let output = child.wait_with_output()?;
        let stdout_ok = self
            .expect_stdout
            .as_ref()
            .is_none_or(|needle| String::from_utf8_lossy(&output.stdout).contains(needle.as_str()));
        if output.status.success() && stdout_ok {
            Ok(None)
        } else {
            Ok(Some(format!(
                "{}; stderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// Runs `warmup` untimed then `runs` timed, sequentially.
    pub fn time(&self, warmup: usize, runs: usize) -> Result<Samples> {
        for _ in 0..warmup {
            if let Some(why) = self.run_checked()? {
                bail!(
                    "{} {:?} failed during warm-up: {why}",
                    self.program.display(),
                    self.args
                );
            }
        }
        let mut samples = Samples::default();
        let started = Instant::now();
        for _ in 0..runs {
            let t = Instant::now();
            if self.run_once()? {
                samples.micros.push(t.elapsed().as_micros() as u64);
            } else {
                samples.errors += 1;
            }
        }
        samples.elapsed = started.elapsed();
        Ok(samples)
    }

    /// Runs once under GNU time and returns the process's peak resident set size, in KiB.
    /// A child's `ru_maxrss` also counts what its parent had resident when it forked, so the
    /// process must be forked by something small: GNU time is, and `/bin/true` measured the same
    /// way gives the floor to compare with.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let time = Path::new("/usr/bin/time");
        if !time.is_file() {
            bail!("/usr/bin/time (Debian package `time`) is needed to measure peak RSS");
        }
        let mut command = Command::new(time);
        command
            .arg("-f")
            .arg("%M")
            .arg(&self.program)
            .args(&self.args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&self.stdin);
        }
        let output = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        last.parse()
            .with_context(|| format!("GNU time printed {last:?}"))
    }
}

/// A running process's resident memory, KiB, from /proc/PID/status.
pub struct Resident {
    /// VmRSS: every resident page.
    pub total: u64,
    /// VmHWM: the peak of `total`.
    pub peak: u64,
    /// RssAnon: the process's own memory (heap, stacks).
    pub anonymous: u64,
    /// RssFile: pages of mapped files — the binary and its libraries.
    pub file_backed: u64,
}

/// The resident memory of a running process.
pub fn rss_kib(pid: u32) -> Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing from /proc/{pid}/status"))?;
        Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
    };
    Ok(Resident {
        total: field("VmRSS:")?,
        peak: field("VmHWM:")?,
        anonymous: field("RssAnon:")?,
        file_backed: field("RssFile:")?,
    })
}
