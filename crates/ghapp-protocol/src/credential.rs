//! git's credential-helper protocol, as git itself reads and writes it (gitcredentials(7),
//! git-credential(1), `credential.c`).
//!
//! Input: `key=value` lines until a blank line or EOF; a line, newline included, is at most
//! 65,535 bytes; keys ending in `[]` are multi-valued; unknown keys (`capability[]`, `wwwauth[]`,
//! `state[]`, anything newer) are ignored, as git asks of helpers. `url=` is parsed into its parts
//! and, like git, replaces what came before it. A line without `=` makes the whole request
//! invalid, as it does in git. Parsing is pure and never panics on any input.
//!
//! Output: `username`, `password` and `password_expiry_utc`, or `quit=1` for fail-closed setups.

use crate::secret::Token;
use std::io::BufRead;

/// The longest line git allows, newline included.
pub const MAX_LINE_BYTES: usize = 65_535;

/// The most a request may hold in all; git sends a few hundred bytes, this bounds a hostile peer.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The username GitHub expects alongside an installation token.
pub const TOKEN_USERNAME: &str = "x-access-token";

/// What git asked about. Only the attributes a minting helper needs are kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CredentialRequest {
    /// `https`, `http`, …
    pub protocol: Option<String>,
    /// The host as git sends it, `host[:port]`.
    pub host: Option<String>,
    /// The path (`owner/repo.git`), present only with `credential.useHttpPath`.
    pub path: Option<String>,
    /// The username, if git knows one.
    pub username: Option<String>,
    /// The password git is reporting (on `erase`: the one the server rejected).
    pub password: Option<Token>,
}

/// Why git's input was not a valid credential request. None of these carries a value that could
/// be a secret: only line numbers and sizes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line (newline included) is longer than git allows.
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: usize },
    /// The whole request is larger than any git would send.
    #[error("request is larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    /// A line is not UTF-8.
    #[error("line {line} is not valid UTF-8")]
    NotUtf8 { line: usize },
    /// A line has no `=` (git rejects the whole request for this too).
    #[error("line {line} has no '='")]
    MissingEquals { line: usize },
    /// A line holds a NUL byte, which git never sends.
    #[error("line {line} contains a NUL byte")]
    Nul { line: usize },
    /// `url=` without a `scheme://`.
    #[error("url on line {line} has no scheme")]
    UrlWithoutScheme { line: usize },
    /// `url=` whose percent-decoded parts hold a newline or NUL (`%0a`, `%00`), which no
    /// credential value may hold (git refuses them too).
    #[error("url on line {line} decodes to a newline or NUL byte")]
    UrlControlCharacter { line: usize },
    /// Reading the input failed.
    #[error("reading the request failed: {0}")]
    Io(String),
}

/// Reads one request from git: lines until a blank line or EOF, within git's limits.
pub fn read_request<R: BufRead>(mut reader: R) -> Result<CredentialRequest, ParseError> {
    let mut request = CredentialRequest::default();
    let mut total = 0usize;
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        // Read at most one byte past the limit, so an endless line cannot exhaust memory.
        let read = <&mut R as std::io::Read>::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| ParseError::Io(e.kind().to_string()))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(ParseError::LineTooLong { line: number });
        }
        total += read;
        if total > MAX_REQUEST_BYTES {
            return Err(ParseError::TooLarge);
        }
        let ends_with_newline = line.last() == Some(&b'\n');
        let content = strip_line_ending(&line);
        if content.is_empty() {
            break;
        }
        apply_line(&mut request, content, number)?;
        if !ends_with_newline {
            break;
        }
    }
    Ok(request)
}

/// Parses a complete request held in memory (tests, fuzzing).
pub fn parse_request(input: &[u8]) -> Result<CredentialRequest, ParseError> {
    read_request(input)
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    // git's strbuf_getline drops a CR before the LF too.
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn apply_line(
    request: &mut CredentialRequest,
    content: &[u8],
    line: usize,
) -> Result<(), ParseError> {
    if content.contains(&0) {
        return Err(ParseError::Nul { line });
    }
    let text = std::str::from_utf8(content).map_err(|_| ParseError::NotUtf8 { line })?;
    let (key, value) = text
        .split_once('=')
        .ok_or(ParseError::MissingEquals { line })?;
    match key {
        "protocol" => request.protocol = Some(value.to_string()),
        "host" => request.host = Some(value.to_string()),
        "path" => request.path = Some(value.to_string()),
        "username" => request.username = Some(value.to_string()),
        "password" => request.password = Some(Token::new(value)),
        "url" => {
            let parsed = parse_url(value).ok_or(ParseError::UrlWithoutScheme { line })?;
            let control = |v: &str| v.contains(['\n', '\0']);
            let values = [
                &parsed.protocol,
                &parsed.host,
                &parsed.path,
                &parsed.username,
            ];
            if values.into_iter().flatten().any(|v| control(v))
                || parsed
                    .password
                    .as_ref()
                    .is_some_and(|p| control(p.expose()))
            {
                return Err(ParseError::UrlControlCharacter { line });
            }
            *request = parsed;
        }
        // Everything else — capability[], wwwauth[], state[], password_expiry_utc, … — is
        // git's or another helper's business.
        _ => {}
    }
    Ok(())
}

/// Splits `scheme://[user[:pass]@]host[:port][/path]` as git's `credential_from_url` does:
/// the components are percent-decoded, a missing host is an empty host, the path loses its
/// leading slash.
fn parse_url(url: &str) -> Option<CredentialRequest> {
    let (protocol, rest) = url.split_once("://")?;
    if protocol.is_empty() {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
        None => (rest, None),
    };
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, pass)) => (Some(decode(user)), Some(Token::new(decode(pass)))),
            None => (Some(decode(info)), None),
        },
        None => (None, None),
    };
    Some(CredentialRequest {
        protocol: Some(protocol.to_string()),
        host: Some(decode(host)),
        path: path.filter(|p| !p.is_empty()).map(decode),
        username,
        password,
    })
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The repository a credential path names: `owner/repo`, `owner/repo.git`, `/owner/repo.git/`,
/// or `owner/repo.git/info/lfs` (git-lfs) → (`owner`, Some(`repo`)); a lone `owner` →
/// (`owner`, None). `None` for an empty path.
pub fn repository_from_path(path: &str) -> Option<(String, Option<String>)> {
    let mut parts = path.trim_matches('/').split('/').filter(|p| !p.is_empty());
    let owner = parts.next()?.to_string();
    let repo = parts
        .next()
        .map(|r| r.strip_suffix(".git").unwrap_or(r).to_string())
        .filter(|r| !r.is_empty());
    Some((owner, repo))
}

/// ghapp's answer to `get`.
#[derive(Debug, Clone)]
pub struct CredentialResponse {
    /// Always [`TOKEN_USERNAME`] for installation tokens.
    pub username: String,
    /// The installation token.
    pub password: Token,
    /// When git (and any cache in front of us) must stop using it, Unix seconds UTC.
    pub password_expiry_utc: Option<i64>,
}

/// Why an answer could not be written: a value git's protocol cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential attribute {0} contains a newline or NUL byte")]
pub struct UnencodableValue(pub &'static str);

impl CredentialResponse {
    /// The lines git reads back, each `key=value\n`.
    pub fn encode(&self) -> Result<Vec<u8>, UnencodableValue> {
        let mut out = Vec::with_capacity(64 + self.password.expose().len());
        push_attribute(&mut out, "username", &self.username)?;
        push_attribute(&mut out, "password", self.password.expose())?;
        if let Some(expiry) = self.password_expiry_utc {
            push_attribute(&mut out, "password_expiry_utc", &expiry.to_string())?;
        }
        Ok(out)
    }
}

fn push_attribute(
    out: &mut Vec<u8>,
    key: &'static str,
    value: &str,
) -> Result<(), UnencodableValue> {
    if value.contains(['\n', '\0']) {
        return Err(UnencodableValue(key));
    }
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
    Ok(())
}

/// The answer that tells git to stop asking helpers and not to prompt (`--require`).
pub const QUIT: &[u8] = b"quit=1\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_request_until_blank_line() {
        let req = parse_request(
            b"capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=github.com\npath=acme/widgets.git\nwwwauth[]=Basic realm=\"GitHub\"\n\nprotocol=ignored\n",
        )
        .unwrap();
        assert_eq!(req.protocol.as_deref(), Some("https"));
        assert_eq!(req.host.as_deref(), Some("github.com"));
        assert_eq!(req.path.as_deref(), Some("acme/widgets.git"));
    }

    #[test]
    fn eof_without_blank_line_and_crlf() {
        let req = parse_request(b"protocol=https\r\nhost=example.com:8443").unwrap();
        assert_eq!(req.protocol.as_deref(), Some("https"));
        assert_eq!(req.host.as_deref(), Some("example.com:8443"));
        assert_eq!(parse_request(b"").unwrap(), CredentialRequest::default());
    }

    #[test]
    fn url_replaces_earlier_attributes() {
        let req = parse_request(
            b"host=old\nurl=https://x-access-token:s%65cret@ghe.example.com:8443/acme/w%20x.git\n",
        )
        .unwrap();
        assert_eq!(req.protocol.as_deref(), Some("https"));
        assert_eq!(req.host.as_deref(), Some("ghe.example.com:8443"));
        assert_eq!(req.path.as_deref(), Some("acme/w x.git"));
        assert_eq!(req.username.as_deref(), Some("x-access-token"));
        assert_eq!(req.password.as_ref().map(Token::expose), Some("secret"));
        assert_eq!(
            parse_request(b"url=https://\n").unwrap().host.as_deref(),
            Some("")
        );
        assert_eq!(
            parse_request(b"url=github.com/acme\n").unwrap_err(),
            ParseError::UrlWithoutScheme { line: 1 }
        );
    }

    #[test]
    fn refuses_what_git_refuses() {
        assert_eq!(
            parse_request(b"protocol=https\nnonsense\n").unwrap_err(),
            ParseError::MissingEquals { line: 2 }
        );
        assert_eq!(
            parse_request(b"host=\xff\n").unwrap_err(),
            ParseError::NotUtf8 { line: 1 }
        );
        assert_eq!(
            parse_request(b"host=a\0b\n").unwrap_err(),
            ParseError::Nul { line: 1 }
        );
        let mut long = b"host=".to_vec();
        long.resize(MAX_LINE_BYTES, b'a');
        long.push(b'\n');
        assert_eq!(
            parse_request(&long).unwrap_err(),
            ParseError::LineTooLong { line: 1 }
        );
        long.truncate(MAX_LINE_BYTES - 1);
        long.push(b'\n');
        assert!(
            parse_request(&long).is_ok(),
            "a line of exactly the limit is allowed"
        );
    }

    #[test]
    fn repository_from_path_forms() {
        let pair = |o: &str, r: Option<&str>| Some((o.to_string(), r.map(str::to_string)));
        assert_eq!(
            repository_from_path("acme/widgets.git"),
            pair("acme", Some("widgets"))
        );
        assert_eq!(
            repository_from_path("/acme/widgets/"),
            pair("acme", Some("widgets"))
        );
        assert_eq!(
            repository_from_path("acme/widgets.git/info/lfs"),
            pair("acme", Some("widgets"))
        );
        assert_eq!(repository_from_path("acme"), pair("acme", None));
        assert_eq!(repository_from_path("//"), None);
    }

    #[test]
    fn encodes_answer_and_refuses_newlines() {
        let response = CredentialResponse {
            username: TOKEN_USERNAME.into(),
            password: Token::new("ghs_abc"),
            password_expiry_utc: Some(1_700_000_000),
        };
        assert_eq!(
            response.encode().unwrap(),
            b"username=x-access-token\npassword=ghs_abc\npassword_expiry_utc=1700000000\n"
        );
        let bad = CredentialResponse {
            password: Token::new("a\nb"),
            ..response
        };
        assert_eq!(bad.encode().unwrap_err(), UnencodableValue("password"));
    }
}
