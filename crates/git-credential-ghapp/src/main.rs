//! `git-credential-ghapp`: git's credential helper for ghapp.
//!
//! git runs it for every remote operation (`credential.helper ghapp` → `git credential-ghapp
//! get`). It asks the local daemon for an installation token over the Unix socket and prints it
//! in git's credential protocol — or prints nothing and exits 0 when it cannot help, so git asks
//! its next helper. Every run is bounded by one deadline (2 s by default), ends with exit
//! status 0 (usage errors aside), and never prints a token anywhere but stdout.

mod answer;
mod args;
mod finish;
mod operations;
mod plan;

use args::{Command, Operation};
use std::io::IsTerminal;
use std::time::Instant;

fn main() {
    let started = Instant::now();
    finish::install_panic_hook();
    let command = args::parse(std::env::args_os().skip(1), |name| std::env::var_os(name));
    let options = match command {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print!("{}", args::HELP);
            return;
        }
        Ok(Command::Version) => {
            println!("git-credential-ghapp {}", ghapp_protocol::VERSION);
            return;
        }
        Err(usage) => {
            eprintln!("git-credential-ghapp: {}", usage.message);
            if usage.wants_quit {
                finish::configure(true, false);
                print!(
                    "{}",
                    String::from_utf8_lossy(ghapp_protocol::credential::QUIT)
                );
            }
            std::process::exit(2);
        }
    };
    let is_get = options.operation == Operation::Get;
    finish::configure(is_get && options.require, options.verbose);

    let context = |deadline| operations::Context {
        socket_flag: options.socket.as_deref(),
        deadline,
        started,
    };
    match &options.operation {
        Operation::Get | Operation::Erase => {
            // A person typing a request by hand gets the deadline after the input, not during it;
            // git never gives the helper a terminal. The timeout is at most 1 h: no overflow.
            let interactive = std::io::stdin().is_terminal();
            let mut deadline = started + options.timeout;
            if !interactive {
                finish::start_watchdog(deadline);
            }
            let Some(request) = operations::read_stdin_request() else {
                // Malformed input: no answer at all, even with --require (documented).
                finish::finish(b"");
            };
            if interactive {
                deadline = Instant::now() + options.timeout;
                finish::start_watchdog(deadline);
            }
            let context = context(deadline);
            if is_get {
                let output = operations::get(&context, &request);
                finish::finish(&output);
            }
            operations::erase(&context, &request);
            finish::finish(b"");
        }
        Operation::Store => finish::note(format_args!(
            "store: nothing to do (ghapp mints, it does not store)"
        )),
        Operation::Other(name) => finish::note(format_args!("unknown operation {name:?}: ignored")),
    }
    finish::finish(b"")
}
