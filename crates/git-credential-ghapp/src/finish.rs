//! The one way this process ends: write the answer (or nothing, or `quit=1`) once, then exit 0.
//!
//! Three things may end a run — the operation finishing, the deadline watchdog, a panic — and
//! they can race. A single gate makes the first one the only one: whatever it writes is whole,
//! nothing is written after it, and the exit status git sees is 0 every time, even where a
//! release build would otherwise abort on a panic (`panic = "abort"`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

static GATE: Mutex<()> = Mutex::new(());

/// Whether an unfinished run should still say `quit=1` (a `get` with `--require`). Read by the
/// watchdog and the panic hook, which have no answer of their own.
static QUIT_ON_FAILURE: AtomicBool = AtomicBool::new(false);

/// Whether diagnostics go to stderr.
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Sets how a run that cannot finish normally ends.
pub fn configure(quit_on_failure: bool, verbose: bool) {
    QUIT_ON_FAILURE.store(quit_on_failure, Ordering::SeqCst);
    VERBOSE.store(verbose, Ordering::SeqCst);
}

/// Whether `-v`/`GHAPP_DEBUG` asked for diagnostics.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// A diagnostic line on stderr, only when asked for. Callers pass fingerprints, never tokens.
pub fn note(message: std::fmt::Arguments<'_>) {
    if verbose() {
        let _ = writeln!(std::io::stderr().lock(), "git-credential-ghapp: {message}");
    }
}

/// What the run prints when it gives up: `quit=1` under `--require` for `get`, else nothing.
pub fn failure_output() -> &'static [u8] {
    if QUIT_ON_FAILURE.load(Ordering::SeqCst) {
        ghapp_protocol::credential::QUIT
    } else {
        b""
    }
}

/// Writes `output` whole to stdout and exits 0; if another path got here first, waits for it
/// to exit instead.
pub fn finish(output: &[u8]) -> ! {
    let _gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
    write_stdout(output);
    std::process::exit(0)
}

/// [`finish`] with the failure output (watchdog, errors).
pub fn give_up() -> ! {
    finish(failure_output())
}

fn write_stdout(output: &[u8]) {
    if output.is_empty() {
        return;
    }
    // git ignores SIGPIPE while talking to helpers and Rust ignores it too, so a closed pipe is
    // an error here that there is no one left to report to.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(output);
    let _ = stdout.flush();
}

/// Makes any panic end the run like a failure: no payload is printed (it could hold anything),
/// only where it happened and only with `-v`; then the failure output and exit 0.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if verbose() {
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let _ = writeln!(
                std::io::stderr(),
                "git-credential-ghapp: internal error{place}; falling through"
            );
        }
        // try_lock: if this thread panicked while holding the gate, locking would deadlock.
        match GATE.try_lock() {
            Ok(_gate) => {
                write_stdout(failure_output());
                std::process::exit(0)
            }
            Err(_) => std::process::exit(0),
        }
    }));
}

/// Ends the run with the failure output when `deadline` passes, whatever the main thread is
/// doing (reading stdin, connecting, waiting for the daemon).
pub fn start_watchdog(deadline: std::time::Instant) {
    let spawned = std::thread::Builder::new()
        .name("deadline".into())
        .spawn(move || {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            std::thread::sleep(left);
            note(format_args!("deadline reached; giving up"));
            give_up()
        });
    if spawned.is_err() {
        // The client's own deadline still bounds the daemon call.
        note(format_args!(
            "cannot start the deadline watchdog; relying on the client deadline"
        ));
    }
}

/// Debug builds only: panics where `GHAPP_HELPER_TEST_PANIC` names `place`, with a payload that
/// looks like a token, so the tests can prove a panic prints no payload and still exits 0.
/// Release builds compile this to nothing.
pub fn test_panic_point(place: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("GHAPP_HELPER_TEST_PANIC").is_some_and(|v| v == place) {
        panic!("test panic with ghs_PANICPAYLOAD at {place}");
    }
    #[cfg(not(debug_assertions))]
    let _ = place;
}
