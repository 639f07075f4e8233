//! The command line and environment, parsed by hand: git starts this helper for every remote
//! operation, so start-up must not pay for an argument-parsing framework.
//!
//! `git-credential-ghapp [--socket P] [--timeout D] [--require] [-v] <operation>`; git appends
//! the operation (`get`, `store`, `erase`, or a newer one) after whatever `credential.helper`
//! holds, so flags may come before or after it.

use ghapp_protocol::duration::parse_duration;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The whole run, connect and answer included, is bounded by this unless told otherwise: git
/// waits for the helper, so a wedged daemon must never hold a `git fetch` up for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longer deadlines are refused: a helper that may block git for more than this is a mistake.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Set to a true value to print `quit=1` instead of falling through.
pub const REQUIRE_ENV: &str = "GHAPP_REQUIRE";
/// Set to a true value for diagnostics on stderr.
pub const DEBUG_ENV: &str = "GHAPP_DEBUG";
/// The deadline, like `--timeout`.
pub const TIMEOUT_ENV: &str = "GHAPP_TIMEOUT";

/// What git asked the helper to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Supply a credential.
    Get,
    /// git reports a credential worked; ghapp mints, it does not store.
    Store,
    /// git reports a credential was rejected.
    Erase,
    /// Anything newer git may send (`capability`, …): ignored, as git asks of helpers.
    Other(String),
}

impl Operation {
    fn from_arg(arg: &str) -> Self {
        match arg {
            "get" => Operation::Get,
            "store" => Operation::Store,
            "erase" => Operation::Erase,
            other => Operation::Other(other.to_string()),
        }
    }
}

/// Everything one run needs, from flags first and the environment second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--socket`; `None` leaves the choice to the shared resolution (`$GHAPP_SOCKET`, config,
    /// defaults).
    pub socket: Option<PathBuf>,
    /// The deadline for the whole run.
    pub timeout: Duration,
    /// Print `quit=1` when `get` cannot answer (fail closed).
    pub require: bool,
    /// Diagnostics on stderr.
    pub verbose: bool,
    /// What git asked.
    pub operation: Operation,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve git.
    Run(Options),
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// A command line or environment that cannot be followed. Shown on stderr always — it is a
/// configuration mistake the user must see — and never contains a secret (no flag takes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong and how to fix it.
    pub message: String,
    /// The run was a `get` meant to fail closed (`--require` or `GHAPP_REQUIRE` seen), so the
    /// helper still prints `quit=1`: a typo must not turn a fail-closed setup into a prompt.
    pub wants_quit: bool,
}

/// git's notion of a true boolean value, as `GHAPP_REQUIRE=1` / `GHAPP_DEBUG=true` use it.
pub fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Parses the arguments (without the program name) and the environment, read through `env` so
/// tests need not touch the process environment.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Command, UsageError> {
    let args: Vec<OsString> = args.into_iter().collect();
    let env_text = |name: &str| env(name).map(|v| v.to_string_lossy().into_owned());
    let env_require = env_text(REQUIRE_ENV).is_some_and(|v| is_truthy(&v));
    let wants_quit =
        env_require || (args.iter().any(|a| a == "--require") && args.iter().any(|a| a == "get"));
    let fail = |message: String| UsageError {
        message,
        wants_quit,
    };

    let mut socket = None;
    let mut timeout_flag = None;
    let mut require = env_require;
    let mut verbose = env_text(DEBUG_ENV).is_some_and(|v| is_truthy(&v));
    let mut operation = None;
    let mut only_positionals = false;
    let mut iter = args.iter();
    while let Some(raw) = iter.next() {
        let Some(arg) = raw.to_str() else {
            if operation.is_none() {
                return Err(fail("an argument is not valid UTF-8".into()));
            }
            continue;
        };
        if only_positionals || !arg.starts_with('-') || arg == "-" {
            // git appends exactly one operation; later words are ignored, as unknown input is.
            if operation.is_none() {
                operation = Some(Operation::from_arg(arg));
            }
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            match iter.next().map(|v| v.to_str()) {
                Some(Some(v)) => Ok(v.to_string()),
                Some(None) => Err(fail(format!("{name} needs a UTF-8 value"))),
                None => Err(fail(format!("{name} needs a value"))),
            }
        };
        match flag {
            "--socket" => {
                let path = value("--socket")?;
                if path.is_empty() {
                    return Err(fail("--socket needs a non-empty path".into()));
                }
                socket = Some(PathBuf::from(path));
            }
            "--timeout" => timeout_flag = Some(value("--timeout")?),
            "--require" if inline.is_none() => require = true,
            "-v" | "--verbose" if inline.is_none() => verbose = true,
            "-h" | "--help" if inline.is_none() => return Ok(Command::Help),
            "-V" | "--version" if inline.is_none() => return Ok(Command::Version),
            "--" if inline.is_none() => only_positionals = true,
            _ => {
                return Err(fail(format!(
                    "unknown option {arg:?}; see git-credential-ghapp --help"
                )));
            }
        }
    }

    let timeout = match (
        timeout_flag,
        env_text(TIMEOUT_ENV).filter(|v| !v.trim().is_empty()),
    ) {
        (Some(flag), _) => parse_timeout("--timeout", &flag).map_err(fail)?,
        (None, Some(env)) => parse_timeout(TIMEOUT_ENV, &env).map_err(fail)?,
        (None, None) => DEFAULT_TIMEOUT,
    };
    let Some(operation) = operation else {
        return Err(fail(
            "missing operation (get, store or erase): git appends it; see git-credential-ghapp --help".into(),
        ));
    };
    Ok(Command::Run(Options {
        socket,
        timeout,
        require,
        verbose,
        operation,
    }))
}

fn parse_timeout(what: &str, text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text).map_err(|e| format!("{what}: {e}"))?;
    if timeout.is_zero() {
        return Err(format!("{what} must be more than 0 (e.g. 500ms, 2s)"));
    }
    if timeout > MAX_TIMEOUT {
        return Err(format!(
            "{what} {text:?} is longer than the 1h this helper allows"
        ));
    }
    Ok(timeout)
}

/// `--help`: every flag, every environment variable, and what git sees in each case.
pub const HELP: &str = "\
git-credential-ghapp: git's credential helper for ghapp

Asks the local ghapp daemon for a GitHub App installation token for the repository git is
talking to, and prints it in git's credential protocol. When it cannot help it prints nothing
and exits 0, so git moves on to its next credential helper.

USAGE:
    git config --global credential.helper ghapp
    git config --global credential.useHttpPath true
    git-credential-ghapp [OPTIONS] <get|store|erase>

OPERATIONS (git appends one):
    get      print username=x-access-token, password=<token>, password_expiry_utc=<unix time>
    store    ignored: ghapp mints tokens, it does not store them
    erase    tell the daemon the token git used was rejected, so the next get mints a new one
    (others) ignored silently, as git asks of helpers

OPTIONS:
    --socket PATH    the daemon's socket (default: $GHAPP_SOCKET, then [daemon] socket in the
                     config file, then $XDG_RUNTIME_DIR/ghapp/ghapp.sock, /run/ghapp/ghapp.sock,
                     $TMPDIR/ghapp-<uid>/ghapp.sock)
    --timeout D      deadline for the whole run, e.g. 500ms, 2s (default 2s, at most 1h)
    --require        fail closed: when `get` cannot answer (daemon missing, slow or erroring,
                     host or repository not served) print quit=1, so git stops without asking
                     other helpers or prompting
    -v, --verbose    explain on stderr what happened (never the token: fingerprints only)
    -h, --help       this text
    -V, --version    the version

ENVIRONMENT:
    GHAPP_SOCKET=PATH    like --socket
    GHAPP_TIMEOUT=D      like --timeout (the flag wins)
    GHAPP_REQUIRE=1      like --require
    GHAPP_DEBUG=1        like --verbose
    GHAPP_CONFIG=FILE    the config file read for [daemon] socket

ANSWERS:
    Only protocol=https is served (and http for Apps configured with insecure_http). Without
    credential.useHttpPath git sends no repository path; the daemon then answers only if exactly
    one installation serves the host. Malformed input (a line without '=', non-UTF-8, a line
    over 65535 bytes, no host) gets no answer and exit status 0, even with --require.
    Usage errors are reported on stderr and exit with status 2.

See docs/git.md for recipes.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Command, UsageError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(OsString::from), move |name| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    fn options(args: &[&str], env: &[(&str, &str)]) -> Options {
        match run(args, env) {
            Ok(Command::Run(options)) => options,
            other => panic!("expected options, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_operations() {
        let o = options(&["get"], &[]);
        assert_eq!(
            o,
            Options {
                socket: None,
                timeout: DEFAULT_TIMEOUT,
                require: false,
                verbose: false,
                operation: Operation::Get
            }
        );
        assert_eq!(options(&["store"], &[]).operation, Operation::Store);
        assert_eq!(options(&["erase"], &[]).operation, Operation::Erase);
        assert_eq!(
            options(&["capability"], &[]).operation,
            Operation::Other("capability".into())
        );
        assert_eq!(
            options(&["get", "extra"], &[]).operation,
            Operation::Get,
            "later words ignored"
        );
    }

    #[test]
    fn flags_in_both_forms_and_positions() {
        let o = options(
            &[
                "--socket",
                "/x/y.sock",
                "--timeout=500ms",
                "--require",
                "-v",
                "get",
            ],
            &[],
        );
        assert_eq!(o.socket, Some(PathBuf::from("/x/y.sock")));
        assert_eq!(o.timeout, Duration::from_millis(500));
        assert!(o.require && o.verbose);
        // git appends the operation, but a hand-written `credential.helper` may put flags last.
        let o = options(&["get", "--socket=/s", "--timeout", "3"], &[]);
        assert_eq!(o.socket, Some(PathBuf::from("/s")));
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(
            options(&["--", "--weird-op"], &[]).operation,
            Operation::Other("--weird-op".into())
        );
    }

    #[test]
    fn environment_and_precedence() {
        let o = options(
            &["get"],
            &[
                ("GHAPP_REQUIRE", "1"),
                ("GHAPP_DEBUG", "true"),
                ("GHAPP_TIMEOUT", "750ms"),
            ],
        );
        assert!(o.require && o.verbose);
        assert_eq!(o.timeout, Duration::from_millis(750));
        assert_eq!(
            options(&["--timeout", "1s", "get"], &[("GHAPP_TIMEOUT", "9s")]).timeout,
            Duration::from_secs(1)
        );
        let o = options(
            &["get"],
            &[
                ("GHAPP_REQUIRE", "0"),
                ("GHAPP_DEBUG", "no"),
                ("GHAPP_TIMEOUT", ""),
            ],
        );
        assert!(!o.require && !o.verbose);
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(run(&["--help"], &[]), Ok(Command::Help));
        assert_eq!(run(&["-h", "get"], &[]), Ok(Command::Help));
        assert_eq!(run(&["--version"], &[]), Ok(Command::Version));
        for needle in [
            "--socket",
            "--timeout",
            "--require",
            "--verbose",
            "GHAPP_SOCKET",
            "GHAPP_TIMEOUT",
            "GHAPP_REQUIRE",
            "GHAPP_DEBUG",
            "useHttpPath",
        ] {
            assert!(HELP.contains(needle), "help documents {needle}");
        }
    }

    #[test]
    fn usage_errors_say_what_and_keep_fail_closed() {
        let err = run(&["--bogus", "get"], &[]).unwrap_err();
        assert!(err.message.contains("--bogus") && !err.wants_quit);
        let err = run(&["--require", "--timout", "1s", "get"], &[]).unwrap_err();
        assert!(err.wants_quit, "a typo must not open a fail-closed setup");
        assert!(
            !run(&["--require", "--bogus", "erase"], &[])
                .unwrap_err()
                .wants_quit
        );
        assert!(
            run(&["--bogus", "get"], &[("GHAPP_REQUIRE", "yes")])
                .unwrap_err()
                .wants_quit
        );
        assert!(
            run(&["--timeout", "soon", "get"], &[])
                .unwrap_err()
                .message
                .contains("--timeout")
        );
        assert!(
            run(&["--timeout", "0", "get"], &[])
                .unwrap_err()
                .message
                .contains("more than 0")
        );
        assert!(
            run(&["--timeout", "2h", "get"], &[])
                .unwrap_err()
                .message
                .contains("1h")
        );
        assert!(
            run(&["get"], &[("GHAPP_TIMEOUT", "x")])
                .unwrap_err()
                .message
                .contains("GHAPP_TIMEOUT")
        );
        assert!(
            run(&["get", "--socket"], &[])
                .unwrap_err()
                .message
                .contains("needs a value")
        );
        assert!(
            run(&["--socket=", "get"], &[])
                .unwrap_err()
                .message
                .contains("non-empty")
        );
        assert!(
            run(&["--require=yes", "get"], &[]).is_err(),
            "boolean flags take no value"
        );
        assert!(
            run(&[], &[])
                .unwrap_err()
                .message
                .contains("missing operation")
        );
    }
}
