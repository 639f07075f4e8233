//! One module per subcommand; [`run`] dispatches. Returns the process exit code.

use crate::cli::{Cli, Command, LogFormat};
use anyhow::Result;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Daemon(args) => {
            ghapp_daemon::run(ghapp_daemon::DaemonOptions {
                config: cli.config,
                socket: cli.socket,
                foreground: args.foreground,
                json_logs: args.log_format == LogFormat::Json,
            })?;
            Ok(0)
        }
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
        other => anyhow::bail!("{other:?}: not implemented yet"),
    }
}
