//! The CLI's exit codes and the error that carries one, so scripts can tell "fix your command
//! line" from "start the daemon" from "GitHub said no" from "try again later".
//!
//! The codes are documented in `ghapp --help` and the man page (see `crate::cli::EXIT_CODES`).

use ghapp_client::ClientError;
use ghapp_protocol::paths::Resolved;
use std::fmt;

/// Success.
pub const OK: i32 = 0;
/// A generic failure (and `ghapp doctor` found a FAIL).
pub const FAILURE: i32 = 1;
/// The command line is wrong (clap uses 2 for its own usage errors too).
pub const USAGE: i32 = 2;
/// No daemon answered on the socket (not running, wrong socket, timed out, not ghapp).
pub const DAEMON_UNREACHABLE: i32 = 3;
/// The daemon refused: not installed, no App for the host, policy, permission beyond the
/// ceiling, ambiguous owner, malformed request. Retrying will not help.
pub const REFUSED: i32 = 4;
/// GitHub is unreachable or failing and nothing usable is cached, or the daemon failed
/// internally. Retrying later may help.
pub const UNAVAILABLE: i32 = 5;
/// `ghapp exec`: the command was found but could not be run (as shells do).
pub const CANNOT_EXECUTE: i32 = 126;
/// `ghapp exec`: the command was not found (as shells do).
pub const NOT_FOUND: i32 = 127;

/// An error that decides the process's exit code. `commands::run` prints it as `ghapp: …` on
/// stderr and exits with `code`.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: i32,
    /// What went wrong and what to do; never a secret.
    pub message: String,
}

impl Failure {
    /// A failure with an explicit code.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A command-line mistake (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(USAGE, message)
    }

    /// A failed daemon call, classified by what the daemon (or its absence) said. `socket` is
    /// how the socket was chosen, so the hint can say which setting to change.
    pub fn from_client(error: ClientError, socket: &Resolved) -> Self {
        match &error {
            ClientError::Unreachable { .. } | ClientError::Timeout { .. } => Failure::new(
                DAEMON_UNREACHABLE,
                format!(
                    "{error} (socket chosen by: {})\n\
                     hint: start the daemon (`systemctl --user start ghapp.socket` or `ghapp daemon --foreground`), \
                     or point --socket / $GHAPP_SOCKET at its socket; `ghapp doctor` checks the setup",
                    socket.source
                ),
            ),
            ClientError::Untrusted { .. } => Failure::new(
                DAEMON_UNREACHABLE,
                format!(
                    "{error} (socket chosen by: {})\n\
                     hint: nothing was sent; fix the ownership or mode named above, or point --socket / $GHAPP_SOCKET at your daemon's socket",
                    socket.source
                ),
            ),
            ClientError::IdToken { .. } => Failure::new(
                USAGE,
                format!(
                    "{error}\nhint: nothing was sent; fix the file, or unset ${} to ask as this uid alone",
                    ghapp_client::id_token::ENV
                ),
            ),
            ClientError::Protocol { .. } => Failure::new(
                DAEMON_UNREACHABLE,
                format!(
                    "{error}\nhint: is another program listening on that socket? `ghapp doctor` checks the setup"
                ),
            ),
            ClientError::Api { status, message } => {
                let code = match status {
                    400..=499 => REFUSED,
                    _ => UNAVAILABLE,
                };
                Failure::new(code, format!("{message} (daemon answered {status})"))
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::paths::Source;
    use std::path::PathBuf;

    fn socket() -> Resolved {
        Resolved {
            path: PathBuf::from("/s.sock"),
            source: Source::Env,
        }
    }

    #[test]
    fn classifies_daemon_answers() {
        let api = |status| ClientError::Api {
            status,
            message: "no".into(),
        };
        for status in [400, 403, 404, 409, 422] {
            assert_eq!(
                Failure::from_client(api(status), &socket()).code,
                REFUSED,
                "{status}"
            );
        }
        for status in [500, 502, 503] {
            assert_eq!(
                Failure::from_client(api(status), &socket()).code,
                UNAVAILABLE,
                "{status}"
            );
        }
        let down = ClientError::Unreachable {
            socket: "/s.sock".into(),
            reason: "No such file".into(),
        };
        let failure = Failure::from_client(down, &socket());
        assert_eq!(failure.code, DAEMON_UNREACHABLE);
        assert!(failure.message.contains("/s.sock"), "{}", failure.message);
        assert!(
            failure.message.contains("environment"),
            "names the socket's source: {}",
            failure.message
        );
    }
}
