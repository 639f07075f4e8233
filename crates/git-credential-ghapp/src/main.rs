//! `git-credential-ghapp`: git's credential helper for ghapp.
//!
//! git runs it for every remote operation (`credential.helper ghapp` → `git credential-ghapp
//! get`). It asks the local daemon for an installation token over the Unix socket and prints it
//! in git's credential protocol — or prints nothing and exits 0 when it cannot help, so git asks
//! its next helper. Every run is bounded by one deadline (2 s by default), ends with exit
//! status 0 (usage errors aside), and never prints a token anywhere but stdout.
//!
//! The binary is `#![no_main]`: std's start-up before `main` (a stack-overflow guard that reads
//! `/proc/self/maps`, an alternate signal stack, the stdio check, `SIGPIPE`) cost about a tenth
//! of a millisecond on every `git fetch`. What of it the helper needs, it does itself
//! ([`finish::prepare_process`]); a stack overflow still kills the process, only without std's
//! message. Tests build the ordinary way (the test harness brings its own `main`).

#![cfg_attr(not(test), no_main)]

mod answer;
mod args;
mod finish;
mod operations;
mod plan;

use args::{Command, Operation};
use std::io::IsTerminal;
use std::time::Instant;

/// The C entry point, called by libc's start-up. The arguments are read from `argv` here:
/// std's own copy is filled by glibc only (musl, which a static build may use, passes nothing
/// to the initialisers std relies on).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    let count = usize::try_from(argc).unwrap_or(0);
    let arguments = (1..count).map(|index| {
        // SAFETY: libc passes `argc` pointers to NUL-terminated strings, alive for the whole
        // process; `index < argc`.
        let bytes = unsafe { std::ffi::CStr::from_ptr(*argv.add(index)) }.to_bytes();
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes).to_os_string()
    });
    run(arguments.collect());
    finish::finish(b"")
}

#[cfg_attr(test, allow(dead_code))]
fn run(arguments: Vec<std::ffi::OsString>) {
    let started = Instant::now();
    finish::prepare_process();
    finish::install_panic_hook();
    let command = args::parse(arguments, |name| std::env::var_os(name));
    let options = match command {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => finish::finish(args::HELP.as_bytes()),
        Ok(Command::Version) => {
            finish::finish(format!("git-credential-ghapp {}\n", ghapp_protocol::VERSION).as_bytes())
        }
        Err(usage) => {
            eprintln!("git-credential-ghapp: {}", usage.message);
            if usage.wants_quit {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(ghapp_protocol::credential::QUIT);
                let _ = stdout.flush();
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
        Operation::Store => finish::note!("store: nothing to do (ghapp mints, it does not store)"),
        Operation::Other(name) => finish::note!("unknown operation {name:?}: ignored"),
    }
}
