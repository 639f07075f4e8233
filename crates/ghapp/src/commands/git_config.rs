//! `git config` as a subprocess: ghapp never parses or writes git's config files itself, so
//! includes, `GIT_CONFIG_GLOBAL`, `GIT_CONFIG_NOSYSTEM`, `-c` and every git quirk are honoured
//! exactly as git honours them. Values are read with `-z`, so empty values (the helper-list
//! reset) and odd characters survive.

use anyhow::{Context as _, Result, bail};
use std::ffi::OsStr;
use std::process::{Command, Output};

/// Which config file to read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `--global`: `$GIT_CONFIG_GLOBAL`, else `~/.gitconfig` (or the XDG file git prefers).
    Global,
    /// `--system`: `/etc/gitconfig` (git's build-time prefix).
    System,
    /// `--local`: the current repository's `.git/config`.
    Local,
}

impl Scope {
    /// The `git config` flag.
    pub fn flag(self) -> &'static str {
        match self {
            Scope::Global => "--global",
            Scope::System => "--system",
            Scope::Local => "--local",
        }
    }
}

/// One entry of `git config --list --show-scope --show-origin`, in git's reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `system`, `global`, `local`, `worktree`, `command`.
    pub scope: String,
    /// `file:/home/u/.gitconfig`, `command line:` …
    pub origin: String,
    /// The key with section and name lowercased by git, subsection as written
    /// (`credential.https://github.com.helper`).
    pub key: String,
    /// The value; `None` for a bare boolean key (`[x] flag`).
    pub value: Option<String>,
}

/// Runs `git config` in one scope (writes) or across all of them (reads with `scope: None`).
#[derive(Debug, Clone, Copy)]
pub struct GitConfig {
    scope: Option<Scope>,
}

impl GitConfig {
    /// Reads and writes `scope`'s file.
    pub fn scoped(scope: Scope) -> Self {
        GitConfig { scope: Some(scope) }
    }

    /// Reads git's merged view (every scope), as git itself sees it here.
    pub fn merged() -> Self {
        GitConfig { scope: None }
    }

    fn run<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("git");
        command.arg("config");
        if let Some(scope) = self.scope {
            command.arg(scope.flag());
        }
        command.args(args);
        command
            .output()
            .context("cannot run `git config`: is git installed and on PATH?")
    }

    fn describe(&self) -> &'static str {
        self.scope.map(Scope::flag).unwrap_or("")
    }

    fn failed(&self, what: &str, output: &Output) -> anyhow::Error {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::anyhow!(
            "git config {} {what} failed ({}): {}",
            self.describe(),
            output.status,
            stderr.trim()
        )
    }

    /// Every value of `key`, in file order; empty when unset.
    pub fn get_all(&self, key: &str) -> Result<Vec<String>> {
        let output = self.run(["-z", "--get-all", key])?;
        match output.status.code() {
            Some(0) => Ok(split_nul(&output.stdout)),
            Some(1) => Ok(Vec::new()),
            _ => Err(self.failed(&format!("--get-all {key}"), &output)),
        }
    }

    /// `key` read as a boolean the way git reads it (`yes`, `on`, `1`, a bare key …); `None`
    /// when unset; an error when it is not a boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        let output = self.run(["--type=bool", "--get", key])?;
        match output.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&output.stdout).trim() == "true",
            )),
            Some(1) => Ok(None),
            _ => Err(self.failed(&format!("--get {key}"), &output)),
        }
    }

    /// Replaces every value of `key` by `values`, in order (none: the key is removed).
    pub fn set_all(&self, key: &str, values: &[String]) -> Result<()> {
        self.unset_all(key)?;
        for value in values {
            let output = self.run(["--add", key, value])?;
            if !output.status.success() {
                return Err(self.failed(&format!("--add {key}"), &output));
            }
        }
        Ok(())
    }

    /// Sets `key` to exactly one value.
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        let output = self.run(["--replace-all", key, value])?;
        if output.status.success() {
            Ok(())
        } else {
            Err(self.failed(&format!("--replace-all {key}"), &output))
        }
    }

    /// Removes every value of `key`; nothing to remove is fine. git drops a section left empty.
    pub fn unset_all(&self, key: &str) -> Result<()> {
        let output = self.run(["--unset-all", key])?;
        match output.status.code() {
            Some(0) | Some(5) => Ok(()),
            _ => Err(self.failed(&format!("--unset-all {key}"), &output)),
        }
    }

    /// Every entry in git's reading order, with scope and origin.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let output = self.run(["-z", "--list", "--show-scope", "--show-origin"])?;
        if !output.status.success() {
            bail!(self.failed("--list", &output));
        }
        Ok(parse_list(&output.stdout))
    }
}

/// `git config -z` values: each ends with NUL.
fn split_nul(bytes: &[u8]) -> Vec<String> {
    let mut values: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    // The final NUL terminates the last value; what follows it is not a value.
    values.pop();
    values
}

/// `git config -z --list --show-scope --show-origin`: `scope NUL origin NUL key LF value NUL`
/// (a bare boolean key has no LF and no value).
fn parse_list(bytes: &[u8]) -> Vec<Entry> {
    let fields = split_nul(bytes);
    fields
        .chunks(3)
        .filter(|chunk| chunk.len() == 3)
        .map(|chunk| {
            let (key, value) = match chunk[2].split_once('\n') {
                Some((key, value)) => (key.to_string(), Some(value.to_string())),
                None => (chunk[2].clone(), None),
            };
            Entry {
                scope: chunk[0].clone(),
                origin: chunk[1].clone(),
                key,
                value,
            }
        })
        .collect()
}

/// Splits `credential.https://github.com.helper` into (`credential`, `Some("https://github.com")`,
/// `helper`): the subsection is everything between the first and the last dot.
pub fn split_key(key: &str) -> Option<(&str, Option<&str>, &str)> {
    let (section, rest) = key.split_once('.')?;
    match rest.rsplit_once('.') {
        Some((subsection, name)) => Some((section, Some(subsection), name)),
        None => Some((section, None, rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_values_keep_empties() {
        assert_eq!(
            split_nul(b"\0ghapp\0"),
            vec!["".to_string(), "ghapp".to_string()]
        );
        assert_eq!(split_nul(b""), Vec::<String>::new());
    }

    #[test]
    fn list_entries() {
        let raw = b"global\0file:/h/.gitconfig\0credential.https://github.com.helper\n\0global\0file:/h/.gitconfig\0core.bare\0";
        let entries = parse_list(raw);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key, "credential.https://github.com.helper");
        assert_eq!(entries[0].value.as_deref(), Some(""));
        assert_eq!(entries[1].value, None);
    }

    #[test]
    fn keys_split_around_the_subsection() {
        assert_eq!(
            split_key("credential.https://github.com.helper"),
            Some(("credential", Some("https://github.com"), "helper"))
        );
        assert_eq!(
            split_key("credential.helper"),
            Some(("credential", None, "helper"))
        );
        assert_eq!(split_key("nodot"), None);
    }
}
