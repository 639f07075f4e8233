//! Every flag of `ghapp`, defined once: used for parsing, `--help`, the man page and the shell
//! completions (`ghapp man`, `ghapp completions SHELL`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Exit codes, shown by `ghapp --help` (the man page renders the same table from
/// `commands::man::EXIT_CODES`; a unit test keeps the two in step).
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0 success
  1 failure (ghapp doctor: at least one FAIL)
  2 usage error (bad flag, OWNER/REPO, permission or duration)
  3 daemon not reachable on the socket
  4 refused by the daemon (not installed, no App for the host, beyond the ceiling, policy)
  5 GitHub unavailable and nothing usable cached (retry later)
  126 ghapp exec: the command could not be run; otherwise exec exits with the command's status
  127 ghapp exec: the command was not found";

/// GitHub App installation tokens for git, gh and scripts, brokered by one daemon per host.
#[derive(Debug, Parser)]
#[command(name = "ghapp", version, propagate_version = true, max_term_width = 100, after_long_help = EXIT_STATUS_HELP)]
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
    ///
    /// Stdout holds the token and a newline and nothing else, so `ghapp token acme | gh auth
    /// login --with-token` works; errors go to stderr with a distinct exit status (see `ghapp
    /// --help`). With OWNER/REPO the token is narrowed to that repository.
    #[command(after_long_help = EXIT_STATUS_HELP)]
    Token(TokenArgs),
    /// Run a command with GH_TOKEN (or GH_ENTERPRISE_TOKEN), GH_HOST and GH_REPO set.
    ///
    /// The token goes in GH_TOKEN for github.com, *.ghe.com and github.localhost, and in
    /// GH_ENTERPRISE_TOKEN for other (GitHub Enterprise Server) hosts, as gh reads them;
    /// GITHUB_TOKEN and GITHUB_ENTERPRISE_TOKEN are removed. GH_REPO is OWNER/REPO on github.com
    /// and HOST/OWNER/REPO elsewhere. ghapp replaces itself with the command: the token is never
    /// in any argv, signals reach the command directly, and its exit status is ghapp's.
    #[command(after_long_help = EXIT_STATUS_HELP)]
    Exec(ExecArgs),
    /// Configure git to ask ghapp for credentials (credential.helper and useHttpPath).
    ///
    /// Writes, for each host, `credential.https://HOST.helper` as an empty value (which resets
    /// helpers configured before it, as `gh auth setup-git` does, so a store or cache helper
    /// cannot answer first with an expired token) followed by `ghapp`, and
    /// `credential.https://HOST.useHttpPath true` (so ghapp learns the repository). Helpers
    /// configured after it still run when ghapp cannot help. Running it twice changes nothing.
    Configure(ConfigureArgs),
    /// Remove exactly what `ghapp configure` wrote.
    ///
    /// Removes the ghapp helper, the reset in front of it and useHttpPath for each host (every
    /// host with a ghapp helper in the file unless --host is given); other helpers and keys are
    /// left as they are.
    Unconfigure(ConfigureArgs),
    /// Check the setup and print OK/WARN/FAIL with a fix for each problem.
    ///
    /// Checks the config file, each App's private key, the daemon and its socket's permissions,
    /// whether GitHub accepts each App's key (GET /app) and the clock skew against GitHub's Date,
    /// git-credential-ghapp on PATH, and git's configuration for each host (useHttpPath, storage
    /// helpers in front of ghapp, stale tokens saved by `store`). Exits 1 if any check FAILs.
    Doctor(DoctorArgs),
    /// Show what the daemon holds: Apps, installations, cached tokens (fingerprints only).
    Status(StatusArgs),
    /// Get a self-hosted runner registration (or removal) token for an organization
    /// (--org ORG) or one repository (OWNER/REPO).
    ///
    /// An organization's installation needs the organization_self_hosted_runners: write
    /// permission; a repository's (the way user accounts' repositories get runners) needs
    /// administration: write on it. Prints the token, or --json with its expiry, or the
    /// runner's `./config.sh` line.
    #[command(after_long_help = EXIT_STATUS_HELP)]
    RunnerToken(RunnerTokenArgs),
    /// Self-hosted runners: provision (just-in-time by default), list, status, deprovision,
    /// cleanup, and the database's audit trail and backups (docs/runners.md).
    #[command(subcommand, after_long_help = EXIT_STATUS_HELP)]
    Runners(crate::commands::runners::RunnersCommand),
    /// Run the whole flow on this machine with no GitHub App and no network: emulator, daemon,
    /// git clone/commit/push through the helper.
    Demo(DemoArgs),
    /// Make client keys for callers of the network API (`[[client]]`, docs/policy.md).
    ClientKey(ClientKeyArgs),
    /// Write the shared cache's encryption key (`[cache] encryption_key_file`).
    #[command(subcommand)]
    CacheKey(CacheKeyCommand),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff): ghapp(1), every subcommand on one page.
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
    /// The git host, HOST[:PORT] (default: the host of the config file's Apps when they all
    /// serve one, else github.com).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// A permission to ask for, NAME=LEVEL with LEVEL read, write or admin (repeatable;
    /// default: everything the App's ceiling allows).
    #[arg(long = "permission", short = 'p', value_name = "NAME=LEVEL")]
    pub permissions: Vec<String>,
    /// The least remaining life the token must have (e.g. 45m; never less than the daemon's
    /// min_ttl).
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
    /// The git host, HOST[:PORT] or https://HOST[:PORT]; http://HOST:PORT for test hosts
    /// served by an App with insecure_http (default: every App host in the config file, else
    /// github.com; for unconfigure: every host configured with ghapp).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

/// `ghapp doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The git host to check git's configuration for, HOST[:PORT] or a URL as for configure
    /// (default: every configured App's host).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

/// `ghapp client-key`.
#[derive(Debug, Args)]
pub struct ClientKeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ClientKeyCommand,
}

/// `ghapp client-key` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientKeyCommand {
    /// Print a fresh random client key and the `[[client]]` lines (its SHA-256) to paste into
    /// the daemon's config. The key is shown only this once.
    New {
        /// The client's name, as `[[policy]] client = NAME` and the audit log name it.
        name: String,
    },
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
#[command(group = clap::ArgGroup::new("runner_target").required(true).args(["org", "repository"]))]
pub struct RunnerTokenArgs {
    /// A repository: a runner for it alone (`/repos/OWNER/REPO/actions/runners/…`).
    #[arg(value_name = "OWNER/REPO")]
    pub repository: Option<String>,
    /// The organization: a runner for the whole organization.
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// The git host (default: the host of the config file's Apps when they all serve one,
    /// else github.com).
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

/// `ghapp cache-key`.
#[derive(Debug, Subcommand)]
pub enum CacheKeyCommand {
    /// Write 32 random bytes to FILE, created with mode 0600 (an existing file is never
    /// overwritten): the key every broker replica sharing a Redis cache must hold.
    New {
        /// Where to write it (`/etc/ghapp/cache.key`).
        file: PathBuf,
    },
}

/// `ghapp completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
