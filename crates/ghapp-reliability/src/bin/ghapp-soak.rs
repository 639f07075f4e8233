//! `ghapp-soak [DURATION] [--figures FILE]`: runs the soak (see `ghapp_reliability::soak`) for
//! DURATION (default 60s; `10m`, `2h`…), prints its report as JSON, writes it as one JSON line
//! to FILE when given, and exits 1 unless it passed: zero failed requests, zero expired tokens
//! served, flat daemon RSS and open files. `scripts/soak.sh` builds and runs it.

use ghapp_reliability::soak::{self, SoakOptions};
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("ghapp-soak: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let mut duration = Duration::from_secs(60);
    let mut figures: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--figures" => {
                figures = Some(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--figures needs a file"))?
                        .into(),
                )
            }
            "-h" | "--help" => {
                println!(
                    "usage: ghapp-soak [DURATION] [--figures FILE]   (DURATION like 60s, 10m; default 60s)"
                );
                return Ok(true);
            }
            text => {
                duration = ghapp_protocol::duration::parse_duration(text)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            }
        }
    }
    eprintln!("ghapp-soak: mixed load for {duration:?}…");
    let report = soak::run(&SoakOptions::new(duration))?;
    let json = serde_json::to_string(&report)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = figures {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, format!("{json}\n"))?;
    }
    match report.verdict() {
        Ok(()) => {
            eprintln!(
                "ghapp-soak: PASSED — {} requests, {} mints, 0 failed, 0 expired, RSS {} → {} KiB",
                report.requests, report.github.mints, report.rss_start_kib, report.rss_end_kib
            );
            Ok(true)
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("ghapp-soak: FAILED — {problem}");
            }
            Ok(false)
        }
    }
}
