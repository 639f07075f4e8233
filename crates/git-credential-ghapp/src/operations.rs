//! `get` and `erase` against the daemon. Each returns the bytes to print (possibly none); the
//! caller writes them once. Every failure is a fall-through: git must never be broken by ghapp.

use crate::answer::credential_for;
use crate::finish::{failure_output, note};
use crate::plan::{Plan, plan, served_protocol};
use ghapp_client::ClientError;
use ghapp_client::blocking::BlockingClient;
use ghapp_protocol::api::{TokenQuery, check_host};
use ghapp_protocol::credential::{CredentialRequest, TOKEN_USERNAME, read_request};
use ghapp_protocol::paths::client_target;
use ghapp_protocol::secret::is_installation_token;
use ghapp_protocol::time::Timestamp;
use std::path::Path;
use std::time::Instant;

/// The inputs every operation shares.
pub struct Context<'a> {
    /// `--socket`, if given.
    pub socket_flag: Option<&'a Path>,
    /// When the whole run must be over.
    pub deadline: Instant,
    /// When the run started, for `-v` timings.
    pub started: Instant,
}

impl Context<'_> {
    /// A client for the resolved socket, trusting this uid, root and the config's
    /// `trusted_uids`; the socket itself is checked when the request is made.
    fn client(&self) -> Option<BlockingClient> {
        self.client_and_hosts().map(|(client, _)| client)
    }

    /// [`Context::client`], and the hosts the config file's Apps serve (empty without a
    /// trusted config file), from the one read of the config.
    fn client_and_hosts(&self) -> Option<(BlockingClient, Vec<String>)> {
        let target = client_target(self.socket_flag, None);
        let socket = target.socket;
        let left = self.deadline.saturating_duration_since(Instant::now());
        note!(
            "daemon socket {} (from {})",
            socket.path.display(),
            socket.source
        );
        if left.is_zero() {
            note!("deadline reached before asking the daemon");
            return None;
        }
        Some((
            BlockingClient::new(socket.path, self.deadline)
                .trusting(target.trusted)
                .with_id_token_from_env(),
            target.app_hosts,
        ))
    }

    fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }
}

/// Reads git's request from stdin; malformed input is logged (with `-v`) and answered with
/// nothing, as documented: git never sends it, so whoever did gets no token.
pub fn read_stdin_request() -> Option<CredentialRequest> {
    match read_request(std::io::stdin().lock()) {
        Ok(request) => Some(request),
        Err(e) => {
            note!("ignoring malformed input: {e}");
            None
        }
    }
}

/// `get`: a token for the repository git names, or nothing (or `quit=1` with `--require`).
pub fn get(context: &Context<'_>, request: &CredentialRequest) -> Vec<u8> {
    crate::finish::test_panic_point("get");
    let query = match plan(request) {
        Plan::Ask(query) => query,
        Plan::Skip(skip) => {
            note!("{}", skip.describe());
            return if skip.fails_closed() {
                failure_output().to_vec()
            } else {
                Vec::new()
            };
        }
    };
    let what = describe_query(&query);
    let Some(client) = context.client() else {
        return failure_output().to_vec();
    };
    match client.token(&query) {
        Ok(token) => match credential_for(&token, Timestamp::now()).map(|c| (c.encode(), c)) {
            Ok((Ok(bytes), credential)) => {
                note!(
                    "answered {what} with token {} (App {}, installation {}), expires {}, git told {} (after {} ms)",
                    token.token.fingerprint(),
                    token.app,
                    token.installation_id,
                    token.expires_at,
                    credential.password_expiry_utc.unwrap_or_default(),
                    context.elapsed_ms()
                );
                bytes
            }
            Ok((Err(e), _)) => {
                note!("cannot pass the daemon's answer to git: {e}");
                failure_output().to_vec()
            }
            Err(e) => {
                note!("not answering {what}: {e}");
                failure_output().to_vec()
            }
        },
        Err(error) => {
            explain(&error, &query, &what, context);
            failure_output().to_vec()
        }
    }
}

fn describe_query(query: &TokenQuery) -> String {
    let host = query.host_or_default();
    let protocol = query.protocol.as_deref().unwrap_or("https");
    match (&query.owner, &query.repo) {
        (Some(owner), Some(repo)) => format!("{protocol}://{host}/{owner}/{repo}"),
        (Some(owner), None) => format!("{protocol}://{host}/{owner} (owner-wide)"),
        _ => format!("{protocol}://{host} (no path)"),
    }
}

/// The `-v` explanation of a fall-through, with the fix where there is one.
fn explain(error: &ClientError, query: &TokenQuery, what: &str, context: &Context<'_>) {
    let elapsed = context.elapsed_ms();
    match error {
        ClientError::Api {
            status: 409,
            message,
        } if query.owner.is_none() => note!(
            "not answering {what}: git sent no repository path and more than one installation serves {}; \
             run `git config --global credential.useHttpPath true` so git names the repository (daemon: {message})",
            query.host_or_default()
        ),
        ClientError::Api {
            status: 404,
            message,
        } => note!("not answering {what}: not served by this daemon: {message}"),
        other if other.is_unreachable() => {
            note!("not answering {what}: {other} (after {elapsed} ms); falling through")
        }
        other => note!("not answering {what}: {other}"),
    }
}

/// `erase`: git reports that the password it used was rejected; if it may be a ghapp token, ask
/// the daemon to drop it (the daemon does so only if it is the token it cached). Prints nothing.
pub fn erase(context: &Context<'_>, request: &CredentialRequest) {
    let Some(password) = &request.password else {
        note!("erase without a password: nothing to invalidate");
        return;
    };
    // Only send the daemon passwords that can be ours: another helper's secret for another
    // protocol or user has no business crossing the socket.
    if served_protocol(request.protocol.as_deref()).is_none() {
        note!("erase for another protocol: ignored");
        return;
    }
    if request
        .username
        .as_deref()
        .is_some_and(|u| u != TOKEN_USERNAME)
    {
        note!("erase for another user: ignored");
        return;
    }
    // The shape and the host are checked before anything crosses the socket: git sends every
    // helper the rejected password of any host, and only ghapp's own tokens are ours to report.
    if !is_installation_token(password.expose()) {
        note!("erase of a password that is no GitHub installation token: ignored");
        return;
    }
    let Some(host) = request.host.as_deref().and_then(|h| check_host(h).ok()) else {
        note!("erase without a servable host: ignored");
        return;
    };
    let Some((client, config_hosts)) = context.client_and_hosts() else {
        return;
    };
    // The hosts served: those of the config file read for the socket (trusted, as the socket
    // is), so no request is made for them; without a config file, the daemon's own list.
    let served = if config_hosts.is_empty() {
        client.served_hosts()
    } else {
        Ok(config_hosts)
    };
    match served {
        Ok(hosts) if hosts.iter().any(|h| check_host(h).is_ok_and(|h| h == host)) => {}
        Ok(_) => {
            note!("erase for {host}, which this daemon does not serve: ignored");
            return;
        }
        Err(e) => {
            note!("cannot tell which hosts the daemon serves ({e}); not reporting the token");
            return;
        }
    }
    match client.invalidate(password) {
        Ok(true) => note!("daemon dropped rejected token {}", password.fingerprint()),
        Ok(false) => note!(
            "daemon did not hold token {}; nothing to drop",
            password.fingerprint()
        ),
        Err(e) => note!(
            "could not tell the daemon about token {}: {e}",
            password.fingerprint()
        ),
    }
}
