//! `ghapp`: the daemon and the CLI. All work happens in the command modules.

mod cli;
mod commands;

fn main() {
    let cli = <cli::Cli as clap::Parser>::parse();
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("ghapp: {error:#}");
            std::process::exit(1);
        }
    }
}
