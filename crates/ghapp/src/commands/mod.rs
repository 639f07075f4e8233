//! One module per subcommand; [`run`] dispatches and returns the process exit code.

mod configure;
mod demo;
mod doctor;
mod exec;
mod runner_token;
mod status;
mod token;

use crate::cli::{Cli, Command, LogFormat};
use anyhow::Result;
use ghapp_client::DaemonClient;
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
        let socket = ghapp_protocol::paths::client_socket(self.socket.as_deref());
        DaemonClient::new(socket.path, timeout)
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<i32> {
    let context = Context { socket: cli.socket, config: cli.config };
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
        Command::Demo(args) => demo::run(&context, args),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "ghapp", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(0)
        }
    }
}
