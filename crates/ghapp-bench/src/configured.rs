//! Section a's row for exactly what `ghapp configure` writes (issue 19, target 1): the helper
//! installed outside a cargo build directory (as `install.sh`, a package or `cargo install`
//! leave it), `ghapp configure` run in a throwaway `HOME`, and `git credential fill` timed with
//! that `HOME`'s git config and nothing else — against git's credential-cache in the same run,
//! alternating one run of each (which goes first alternates too), so both see the same machine.

use crate::process::Invocation;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

/// What the configured-helper row measured.
#[derive(Debug, Clone)]
pub struct ConfiguredFigures {
    /// The `credential.*` lines `ghapp configure` wrote, as `git config --get-regexp` prints them.
    pub written: Vec<String>,
    /// Alternating pairs timed.
    pub pairs: usize,
    /// Median `git credential fill` through what configure wrote, ms.
    pub ghapp_p50_ms: f64,
    /// Median `git credential fill` through credential-cache, ms.
    pub cache_p50_ms: f64,
    /// Median of the per-pair ratios ghapp / credential-cache.
    pub pair_ratio_median: f64,
}

/// Runs the row: `ghapp` runs `configure`, `helper` is the helper to install and time,
/// `socket` is the daemon's, `git_host` the emulator's git host (served over http, as
/// configure's `--host http://…` writes it).
pub fn measure(
    ghapp: &Path,
    helper_build: &Path,
    socket: &Path,
    git_host: &str,
    pairs: usize,
) -> Result<ConfiguredFigures> {
    let scratch = tempfile::tempdir()?;
    // An install outside any cargo build directory: configure writes an absolute path only for
    // a helper that stays where it is (not under a CACHEDIR.TAG, not in the Nix store).
    let install = scratch.path().join("bin");
    std::fs::create_dir(&install)?;
    let helper = install.join("git-credential-ghapp");
    std::fs::copy(helper_build, &helper)
        .with_context(|| format!("installing the helper at {}", helper.display()))?;
    let ghapp_home = scratch.path().join("home-ghapp");
    let cache_home = scratch.path().join("home-cache");
    std::fs::create_dir(&ghapp_home)?;
    std::fs::create_dir(&cache_home)?;
    let path = format!(
        "{}:{}",
        install.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = |home: &Path| {
        vec![
            (OsString::from("HOME"), home.as_os_str().to_owned()),
            (OsString::from("PATH"), OsString::from(&path)),
            (
                OsString::from("GHAPP_SOCKET"),
                socket.as_os_str().to_owned(),
            ),
            (OsString::from("GIT_TERMINAL_PROMPT"), OsString::from("0")),
            (OsString::from("GIT_CONFIG_NOSYSTEM"), OsString::from("1")),
        ]
    };

    let configure = Invocation {
        args: vec![
            "configure".into(),
            "--host".into(),
            format!("http://{git_host}").into(),
        ],
        env: env(&ghapp_home),
        ..Invocation::new(ghapp)
    };
    if let Some(why) = configure.run_checked()? {
        bail!("ghapp configure failed: {why}");
    }
    let listed = std::process::Command::new("git")
        .args(["config", "--global", "--get-regexp", r"^credential\."])
        .envs(env(&ghapp_home))
        .output()?;
    let written: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if written.is_empty() {
        bail!("ghapp configure wrote no credential.* key");
    }

    let request = format!("protocol=http\nhost={git_host}\npath=bench/r0.git\n\n").into_bytes();
    let ghapp_fill = Invocation {
        args: vec!["credential".into(), "fill".into()],
        env: env(&ghapp_home),
        stdin: request.clone(),
        expect_stdout: Some("password=".into()),
        ..Invocation::new("git")
    };
    // credential-cache as git's docs configure it, in a HOME of its own (so ghapp's helper is
    // not consulted), with useHttpPath like configure's.
    let cache_dir = cache_home.join("cache");
    std::fs::create_dir(&cache_dir)?;
    std::fs::set_permissions(
        &cache_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let cache_socket = cache_dir.join("cache.sock");
    let cache = |action: &str, stdin: Vec<u8>| Invocation {
        args: vec![
            "-c".into(),
            format!(
                "credential.helper=cache --timeout=3600 --socket {}",
                cache_socket.display()
            )
            .into(),
            "-c".into(),
            "credential.useHttpPath=true".into(),
            "credential".into(),
            action.into(),
        ],
        env: env(&cache_home),
        stdin,
        expect_stdout: (action == "fill").then(|| "password=".to_string()),
        ..Invocation::new("git")
    };
    let approve = format!(
        "protocol=http\nhost={git_host}\npath=bench/r0.git\nusername=x-access-token\npassword=cached-credential\n\n"
    );
    if let Some(why) = cache("approve", approve.into_bytes()).run_checked()? {
        bail!("git credential approve into credential-cache failed: {why}");
    }
    let cache_fill = cache("fill", request);

    for _ in 0..10 {
        for invocation in [&ghapp_fill, &cache_fill] {
            if let Some(why) = invocation.run_checked()? {
                bail!("configured-helper warm-up failed: {why}");
            }
        }
    }
    let time = |invocation: &Invocation| -> Result<f64> {
        let started = Instant::now();
        if !invocation.run_once()? {
            bail!("a timed `git credential fill` failed");
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    let (mut ghapp_ms, mut cache_ms, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (g, c) = if pair % 2 == 0 {
            let g = time(&ghapp_fill)?;
            (g, time(&cache_fill)?)
        } else {
            let c = time(&cache_fill)?;
            (time(&ghapp_fill)?, c)
        };
        ghapp_ms.push(g);
        cache_ms.push(c);
        ratios.push(g / c);
    }
    let _ = Invocation {
        args: vec![
            "credential-cache".into(),
            "--socket".into(),
            cache_socket.into(),
            "exit".into(),
        ],
        ..Invocation::new("git")
    }
    .run_once();
    Ok(ConfiguredFigures {
        written,
        pairs,
        ghapp_p50_ms: median(&mut ghapp_ms),
        cache_p50_ms: median(&mut cache_ms),
        pair_ratio_median: median(&mut ratios),
    })
}

/// The median (the lower middle of an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut []), 0.0);
    }
}
