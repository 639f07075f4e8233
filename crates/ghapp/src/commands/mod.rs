//! One module per subcommand; [`run`] dispatches and returns the process exit code.

mod cache_key;
mod client_key;
mod configure;
mod demo;
mod doctor;
mod exec;
mod exit;
mod git_config;
mod host;
mod man;
mod output;
mod runner_token;
pub mod runners;
mod status;
mod table;
mod token;

use crate::cli::{Cli, Command, LogFormat};
use anyhow::Result;
use ghapp_client::DaemonClient;
use ghapp_protocol::paths::{Environment, Resolved, socket_from_config_file};
use std::path::PathBuf;
use std::time::Duration;

/// What every command may need from the global flags.
pub struct Context {
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
}

impl Context {
    /// A client for the daemon's socket, resolved the way every ghapp binary resolves it.
    pub fn client(&self, timeout: Duration) -> DaemonClient {
        DaemonClient::new(self.socket().path, timeout).trusting(self.trusted_uids())
    }

    /// Who may run the daemon this CLI talks to: this uid, root, and the config file's
    /// `[daemon] trusted_uids`.
    pub fn trusted_uids(&self) -> ghapp_protocol::paths::trust::TrustedUids {
        let settings =
            ghapp_protocol::config::client_settings(&self.config_file().path).unwrap_or_default();
        ghapp_protocol::paths::trust::TrustedUids::current(&settings.trusted_uids)
    }

    /// The daemon's socket and the rule that chose it: `--socket`, `$GHAPP_SOCKET`, the
    /// `[daemon] socket` of the config file (`--config` respected), then the defaults.
    pub fn socket(&self) -> Resolved {
        let env = Environment::current();
        let config_socket = if self.socket.is_none() && env.socket.is_none() {
            socket_from_config_file(&self.config_file().path)
        } else {
            None
        };
        env.client_socket(self.socket.as_deref(), config_socket.as_deref(), |p| {
            p.exists()
        })
    }

    /// The config file and the rule that chose it (it may not exist).
    pub fn config_file(&self) -> Resolved {
        Environment::current().config_file(self.config.as_deref(), |p| p.is_file())
    }
}

/// Runs the parsed command line. A [`exit::Failure`] becomes its exit code with its message on
/// stderr; any other error is left to `main` (exit 1).
pub fn run(cli: Cli) -> Result<i32> {
    match dispatch(cli) {
        Err(error) => match error.downcast_ref::<exit::Failure>() {
            Some(failure) => {
                eprintln!("ghapp: {error:#}");
                Ok(failure.code)
            }
            None => Err(error),
        },
        ok => ok,
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let context = Context {
        socket: cli.socket,
        config: cli.config,
    };
    match cli.command {
        Command::Daemon(args) => {
            ghapp_daemon::run(ghapp_daemon::DaemonOptions {
                config: context.config,
                socket: context.socket,
                foreground: args.foreground,
                json_logs: args.log_format == LogFormat::Json,
            })?;
            Ok(0)
        }
        Command::Token(args) => token::run(&context, args),
        Command::Exec(args) => exec::run(&context, args),
        Command::Configure(args) => configure::configure(&context, args),
        Command::Unconfigure(args) => configure::unconfigure(&context, args),
        Command::Doctor(args) => doctor::run(&context, args),
        Command::Status(args) => status::run(&context, args),
        Command::RunnerToken(args) => runner_token::run(&context, args),
        Command::Runners(command) => runners::run(&context, command),
        Command::Demo(args) => demo::run(&context, args),
        Command::CacheKey(command) => cache_key::run(command),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, "ghapp", &mut script);
            output::print(&String::from_utf8_lossy(&script))?;
            Ok(0)
        }
        Command::ClientKey(args) => client_key::run(&args),
        Command::Man => man::run(),
    }
}
