//! `github-emulator --fixture FILE --state-dir DIR [--listen 127.0.0.1:0]`: starts the emulator,
//! prints one JSON line (`{"api_url":…,"git_url":…,"admin_url":…}`, plus `"ca_file"` with
//! `--tls`) on stdout, and serves until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use github_emulator::{Emulator, Options};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A strict local emulator of GitHub's App API and git smart HTTP.
#[derive(Parser, Debug)]
#[command(name = "github-emulator", version)]
struct Args {
    /// The fixture (TOML): apps, installations, repositories.
    #[arg(long)]
    fixture: PathBuf,
    /// Where keys, bare repositories and ca.pem go.
    #[arg(long)]
    state_dir: PathBuf,
    /// API and admin listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Git smart-HTTP listen address (default: the --listen IP, a free port).
    #[arg(long)]
    git_listen: Option<SocketAddr>,
    /// Serve https with a generated CA written to STATE_DIR/ca.pem.
    #[arg(long)]
    tls: bool,
    /// An extra name for the TLS certificate (repeatable).
    #[arg(long = "tls-hostname", value_name = "NAME")]
    tls_hostnames: Vec<String>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("github-emulator: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GITHUB_EMULATOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let fixture_text = tokio::fs::read_to_string(&args.fixture)
            .await
            .with_context(|| format!("reading fixture {}", args.fixture.display()))?;
        let fixture_dir = args.fixture.parent().map(PathBuf::from).unwrap_or_default();
        let options = Options {
            listen: args.listen,
            git_listen: args.git_listen,
            tls: args.tls,
            tls_hostnames: args.tls_hostnames.clone(),
        };
        let emulator =
            Emulator::start_with(&fixture_text, &fixture_dir, &args.state_dir, options).await?;
        let line = serde_json::to_string(&emulator.urls)?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{line}").context("writing the URL line")?;
            stdout.flush().context("flushing stdout")?;
        }
        wait_for_signal().await?;
        emulator.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
