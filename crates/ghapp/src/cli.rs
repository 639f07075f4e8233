//! Every flag of `ghapp`, defined once: used for parsing, `--help`, the man page and the shell
//! completions (`ghapp man`, `ghapp completions SHELL`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// GitHub App installation tokens for git, gh and scripts, brokered by one daemon per host.
#[derive(Debug, Parser)]
#[command(name = "ghapp", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The daemon's socket (default: $GHAPP_SOCKET, the config's [daemon] socket,
    /// $XDG_RUNTIME_DIR/ghapp/ghapp.sock, /run/ghapp/ghapp.sock, $TMPDIR/ghapp-UID/ghapp.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The config file (default: $GHAPP_CONFIG, ~/.config/ghapp/config.toml, /etc/ghapp/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: hold the App keys, mint and refresh tokens, serve them on the socket.
    Daemon(DaemonArgs),
    /// Print a token for OWNER or OWNER/REPO (only the token and a newline, or --json).
    Token(TokenArgs),
    /// Run a command with GH_TOKEN (or GH_ENTERPRISE_TOKEN), GH_HOST and GH_REPO set.
    Exec(ExecArgs),
    /// Configure git to ask ghapp for credentials (credential.helper and useHttpPath).
    Configure(ConfigureArgs),
    /// Remove exactly what `ghapp configure` wrote.
    Unconfigure(ConfigureArgs),
    /// Check the setup and print OK/WARN/FAIL with a fix for each problem.
    Doctor(DoctorArgs),
    /// Show what the daemon holds: Apps, installations, cached tokens (fingerprints only).
    Status(StatusArgs),
    /// Get a self-hosted runner registration (or removal) token for an organization.
    RunnerToken(RunnerTokenArgs),
    /// Run the whole flow on this machine with no GitHub App and no network: emulator, daemon,
    /// git clone/commit/push through the helper.
    Demo(DemoArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// `ghapp daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Stay in the foreground (ghapp never forks; systemd and containers want this).
    #[arg(long)]
    pub foreground: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Options shared by the commands that ask for a token.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// The git host (default: github.com).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// A permission to ask for, NAME=LEVEL (repeatable; default: the App's ceiling).
    #[arg(long = "permission", short = 'p', value_name = "NAME=LEVEL")]
    pub permissions: Vec<String>,
    /// The least remaining life the token must have (e.g. 45m).
    #[arg(long, value_name = "DURATION")]
    pub min_ttl: Option<String>,
}

/// `ghapp token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// OWNER or OWNER/REPO.
    #[arg(value_name = "OWNER[/REPO]")]
    pub target: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Print JSON with the expiry and scope instead of the bare token.
    #[arg(long)]
    pub json: bool,
}

/// `ghapp exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// OWNER/REPO the command works on (sets GH_REPO; the token is narrowed to it).
    #[arg(long, value_name = "OWNER/REPO")]
    pub repo: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `ghapp configure` / `unconfigure`.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Write the user's git config (~/.gitconfig). The default.
    #[arg(long, group = "scope")]
    pub global: bool,
    /// Write the system git config (/etc/gitconfig).
    #[arg(long, group = "scope")]
    pub system: bool,
    /// Write the current repository's config.
    #[arg(long, group = "scope")]
    pub local: bool,
    /// The git host to configure (default: github.com).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

/// `ghapp doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The git host to check git's configuration for (default: every configured App's host).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

/// `ghapp status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the daemon's JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ghapp runner-token`.
#[derive(Debug, Args)]
pub struct RunnerTokenArgs {
    /// The organization.
    #[arg(long, value_name = "ORG")]
    pub org: String,
    /// The git host (default: github.com).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// A removal token instead of a registration token.
    #[arg(long)]
    pub remove: bool,
    /// Print the runner's `./config.sh --url … --token …` line.
    #[arg(long)]
    pub print_config_command: bool,
    /// Print JSON with the expiry.
    #[arg(long)]
    pub json: bool,
}

/// `ghapp demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's temp directory instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

/// `ghapp completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
