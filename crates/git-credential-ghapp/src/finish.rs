//! The one way this process ends: write the answer (or nothing, or `quit=1`) once, then exit 0.
//!
//! Three things may end a run — the operation finishing, the deadline, a panic — and they can
//! race. A single flag makes the first one the only one: whatever it writes is whole, nothing
//! is written after it, and the exit status git sees is 0 every time, even where a release build
//! would otherwise abort on a panic (`panic = "abort"`).
//!
//! The deadline is a `SIGALRM` timer (`setitimer`), not a watchdog thread: the helper runs on
//! git's hot path, and starting a thread (its stack, its allocator arena, a second task for the
//! scheduler) cost more than the rest of the helper's own work (docs/benchmarks-findings.md).
//! The process is single-threaded, so the signal interrupts whatever the one thread is blocked
//! in — reading stdin, opening a file, connecting, waiting for the daemon — and its handler does
//! only async-signal-safe things: an atomic swap, `write(2)`, `_exit(2)`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by whichever path ends the run first; the others then write nothing.
static FINISHING: AtomicBool = AtomicBool::new(false);

/// Whether an unfinished run should still say `quit=1` (a `get` with `--require`). Read by the
/// deadline and the panic hook, which have no answer of their own.
static QUIT_ON_FAILURE: AtomicBool = AtomicBool::new(false);

/// Whether diagnostics go to stderr.
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// What std's runtime would have done before `main` (the binary is `#![no_main]`, see main.rs):
/// ignore `SIGPIPE` (git ignores it while talking to helpers; a closed pipe must be an error,
/// not death by signal and a non-zero status), and make sure fds 0–2 are open, so the daemon's
/// socket can never become "stdout" and receive the answer meant for git.
pub fn prepare_process() {
    // SAFETY: plain libc calls with valid arguments; nothing else runs yet (one thread).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for fd in fds {
                if fd.revents & libc::POLLNVAL != 0 {
                    let mode = if fd.fd == 0 {
                        libc::O_RDONLY
                    } else {
                        libc::O_WRONLY
                    };
                    if libc::open(c"/dev/null".as_ptr(), mode) != fd.fd {
                        libc::_exit(0);
                    }
                }
            }
        }
    }
}

/// Sets how a run that cannot finish normally ends.
pub fn configure(quit_on_failure: bool, verbose: bool) {
    QUIT_ON_FAILURE.store(quit_on_failure, Ordering::SeqCst);
    VERBOSE.store(verbose, Ordering::SeqCst);
}

/// Whether `-v`/`GHAPP_DEBUG` asked for diagnostics.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// A diagnostic line on stderr, only when asked for (see [`note!`]).
pub fn write_note(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "git-credential-ghapp: {message}");
}

/// `note!("…", args)`: a diagnostic line on stderr when `-v`/`GHAPP_DEBUG` asked for one. The
/// arguments are evaluated only then — a token's fingerprint is a SHA-256 (and a CPU feature
/// probe), which every fetch would otherwise pay. Callers pass fingerprints, never tokens.
macro_rules! note {
    ($($message:tt)*) => {
        if $crate::finish::verbose() {
            $crate::finish::write_note(format_args!($($message)*));
        }
    };
}
pub(crate) use note;

/// What the run prints when it gives up: `quit=1` under `--require` for `get`, else nothing.
pub fn failure_output() -> &'static [u8] {
    if QUIT_ON_FAILURE.load(Ordering::SeqCst) {
        ghapp_protocol::credential::QUIT
    } else {
        b""
    }
}

/// Writes `output` whole to stdout and exits 0 — unless the run is already ending (the
/// deadline or a panic got there first), in which case it writes nothing.
pub fn finish(output: &[u8]) -> ! {
    if !FINISHING.swap(true, Ordering::SeqCst) {
        write_all(libc::STDOUT_FILENO, output);
    }
    std::process::exit(0)
}

/// Writes `bytes` whole to `fd` with `write(2)` alone (async-signal-safe, no buffer, no lock):
/// the deadline's handler uses it too. git ignores SIGPIPE while talking to helpers and so do
/// we, so a closed pipe is an error here that there is no one left to report to.
fn write_all(fd: libc::c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written > 0 {
            bytes = &bytes[written as usize..];
        } else if written < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {
            continue;
        } else {
            return;
        }
    }
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
        if !FINISHING.swap(true, Ordering::SeqCst) {
            write_all(libc::STDOUT_FILENO, failure_output());
        }
        std::process::exit(0)
    }));
}

/// The deadline: ends the run with the failure output, whatever the thread was doing.
extern "C" fn on_deadline(_signal: libc::c_int) {
    if FINISHING.swap(true, Ordering::SeqCst) {
        // The run is already writing its answer; let it.
        return;
    }
    if verbose() {
        write_all(
            libc::STDERR_FILENO,
            b"git-credential-ghapp: deadline reached; giving up\n",
        );
    }
    write_all(libc::STDOUT_FILENO, failure_output());
    // SAFETY: _exit is async-signal-safe; nothing is left to flush (every write above is raw).
    unsafe { libc::_exit(0) }
}

/// Ends the run with the failure output when `deadline` passes, whatever the process is doing
/// (reading stdin, connecting, waiting for the daemon). Called again, it moves the deadline.
pub fn start_watchdog(deadline: std::time::Instant) {
    // At least 1 µs: a zero timer would disarm rather than fire.
    let left = deadline
        .saturating_duration_since(std::time::Instant::now())
        .max(std::time::Duration::from_micros(1));
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            // At most an hour (args::MAX_TIMEOUT): no overflow.
            tv_sec: left.as_secs() as _,
            tv_usec: left.subsec_micros() as _,
        },
    };
    // SAFETY: the handler only touches atomics and calls async-signal-safe functions; the
    // structures passed are fully initialised.
    let armed = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_deadline as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut unblock: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut unblock);
        libc::sigaddset(&mut unblock, libc::SIGALRM);
        // A blocked SIGALRM is inherited across exec; the deadline must fire regardless.
        libc::sigprocmask(libc::SIG_UNBLOCK, &unblock, std::ptr::null_mut()) == 0
            && libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) == 0
            && libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) == 0
    };
    if !armed {
        // The client's own deadline still bounds the daemon call.
        note!("cannot arm the deadline timer; relying on the client deadline");
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
