//! `ghapp man`: one complete man page, ghapp(1), generated from the clap definitions in
//! `crate::cli` — so `man ghapp` documents every subcommand and flag, never drifts from
//! `--help`, and install.sh installs a single file.
//!
//! clap_mangen renders the title, NAME, SYNOPSIS, DESCRIPTION, global OPTIONS and VERSION; the
//! per-subcommand section (COMMANDS, one `.SS` each with usage, description and options) and
//! EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO are written here, because clap_mangen's own
//! subcommand list points at ghapp-<command>(1) pages that a single-page install would not have.

use super::exit;
use super::output;
use crate::cli::Cli;
use anyhow::Result;
use clap::{Arg, Command};
use std::io::Write;

/// Prints the page.
pub fn run() -> Result<i32> {
    output::print(&page()?)?;
    Ok(0)
}

/// The page as text. clap_mangen starts every separately rendered section with the same
/// two-line quote-string preamble; only the first copy is kept.
pub fn page() -> std::io::Result<String> {
    let mut raw = Vec::new();
    render(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let mut seen_preamble = false;
    let mut out = String::with_capacity(raw.len());
    let mut lines = raw.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with(".ie \\n(.g .ds Aq")
            && lines
                .peek()
                .is_some_and(|next| next.starts_with(".el .ds Aq"))
        {
            let next = lines.next().unwrap_or_default();
            if seen_preamble {
                continue;
            }
            seen_preamble = true;
            out.push_str(line);
            out.push('\n');
            out.push_str(next);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// The exit codes, documented in the man page (and, as text, in `ghapp --help`).
pub const EXIT_CODES: &[(i32, &str)] = &[
    (exit::OK, "Success."),
    (
        exit::FAILURE,
        "Failure; for ghapp doctor: at least one check FAILed.",
    ),
    (
        exit::USAGE,
        "The command line is wrong (unknown flag, bad OWNER/REPO, permission or duration).",
    ),
    (
        exit::DAEMON_UNREACHABLE,
        "No ghapp daemon answered on the socket (not running, another socket, timed out).",
    ),
    (
        exit::REFUSED,
        "The daemon refused: App not installed, no App for the host, permission beyond the ceiling, policy, ambiguous owner.",
    ),
    (
        exit::UNAVAILABLE,
        "GitHub is unreachable or failing and nothing usable is cached; try again later.",
    ),
    (
        exit::CANNOT_EXECUTE,
        "ghapp exec: the command could not be run. Otherwise exec exits with the command's own status.",
    ),
    (exit::NOT_FOUND, "ghapp exec: the command was not found."),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "GHAPP_SOCKET",
        "The daemon's socket, unless --socket is given.",
    ),
    ("GHAPP_CONFIG", "The config file, unless --config is given."),
    (
        "GHAPP_ID_TOKEN_FILE",
        "A file holding an ID token (a projected service-account token), read on every call and sent as Authorization: Bearer by ghapp token, ghapp exec and git-credential-ghapp, so the daemon's [[policy]] can tell callers sharing a uid apart.",
    ),
    (
        "XDG_RUNTIME_DIR",
        "A user daemon's socket lives in $XDG_RUNTIME_DIR/ghapp/ghapp.sock.",
    ),
    (
        "GH_TOKEN, GH_ENTERPRISE_TOKEN, GH_HOST, GH_REPO",
        "Set by ghapp exec for the command it runs (GITHUB_TOKEN and GITHUB_ENTERPRISE_TOKEN are removed).",
    ),
    (
        "GIT_CONFIG_GLOBAL",
        "Honoured by ghapp configure --global through git itself.",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "~/.config/ghapp/config.toml, /etc/ghapp/config.toml",
        "The config file ([daemon] and [[app]]).",
    ),
    (
        "$XDG_RUNTIME_DIR/ghapp/ghapp.sock, /run/ghapp/ghapp.sock",
        "The daemon's socket (user, system).",
    ),
    (
        "~/.gitconfig",
        "Where ghapp configure --global writes credential.https://HOST.helper and useHttpPath.",
    ),
];

/// Writes the whole page as roff.
pub fn render(w: &mut dyn Write) -> std::io::Result<()> {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;

    writeln!(w, ".SH COMMANDS")?;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        render_subcommand(w, sub, "ghapp")?;
    }

    writeln!(w, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in EXIT_CODES {
        writeln!(w, ".TP\n\\fB{code}\\fR\n{}", escape(meaning))?;
    }
    writeln!(w, ".SH ENVIRONMENT")?;
    for (name, meaning) in ENVIRONMENT {
        writeln!(w, ".TP\n\\fB{}\\fR\n{}", escape(name), escape(meaning))?;
    }
    writeln!(w, ".SH FILES")?;
    for (name, meaning) in FILES {
        writeln!(w, ".TP\n\\fI{}\\fR\n{}", escape(name), escape(meaning))?;
    }
    writeln!(w, ".SH \"SEE ALSO\"")?;
    writeln!(
        w,
        "{}",
        escape(
            "git-credential-ghapp(1), gitcredentials(7), git-config(1), gh(1). docs/ in the source tree."
        )
    )?;
    man.render_version_section(w)?;
    Ok(())
}

/// One subcommand's section under `parent` (`ghapp`), then its own subcommands' (`ghapp
/// runners audit verify`).
fn render_subcommand(w: &mut dyn Write, sub: &Command, parent: &str) -> std::io::Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    writeln!(w, ".SS \"{}\"", escape(&name))?;
    let usage = sub.clone().render_usage().to_string();
    let usage = usage
        .strip_prefix("Usage: ")
        .unwrap_or(&usage)
        .trim()
        .to_string();
    writeln!(w, ".PP\n\\fB{}\\fR", escape(&usage))?;
    if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
        for paragraph in about.to_string().split("\n\n") {
            writeln!(w, ".PP\n{}", escape(paragraph.trim()))?;
        }
    }
    let args: Vec<&Arg> = sub
        .get_arguments()
        .filter(|a| {
            !a.is_hide_set()
                && !a.is_global_set()
                && !matches!(a.get_id().as_str(), "help" | "version")
        })
        .collect();
    for arg in args {
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        let help = if values.is_empty() {
            help
        } else {
            format!("{help} [possible values: {}]", values.join(", "))
        };
        writeln!(
            w,
            ".TP\n\\fB{}\\fR\n{}",
            escape(&arg_label(arg)),
            escape(&help)
        )?;
    }
    // The exit-status table `--help` repeats per subcommand has its own section here.
    let after = sub
        .get_after_long_help()
        .or_else(|| sub.get_after_help())
        .map(|a| a.to_string());
    if let Some(after) = after.filter(|a| a != crate::cli::EXIT_STATUS_HELP) {
        for paragraph in after.split("\n\n") {
            writeln!(w, ".PP\n{}", escape(paragraph.trim()))?;
        }
    }
    for nested in sub
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        render_subcommand(w, nested, &name)?;
    }
    Ok(())
}

/// `-p, --permission <NAME=LEVEL>`, `--json`, `<OWNER[/REPO]>`.
fn arg_label(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    if arg.is_positional() {
        return if arg.is_last_set() {
            format!("-- {value}...")
        } else {
            value
        };
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    let mut label = names.join(", ");
    if arg.get_action().takes_values() {
        label.push(' ');
        label.push_str(&value);
    }
    label
}

/// Escapes text for roff: backslashes, hyphens as minus signs (so options copy-paste right), and
/// lines that would otherwise start a request.
fn escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let escaped = line.replace('\\', "\\e").replace('-', "\\-");
            if escaped.starts_with('.') || escaped.starts_with('\'') {
                format!("\\&{escaped}")
            } else {
                escaped
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_documents_every_subcommand_and_exit_code() {
        let page = page().unwrap();
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble");
        for sub in [
            "token",
            "exec",
            "configure",
            "unconfigure",
            "doctor",
            "status",
            "runner\\-token",
            "completions",
        ] {
            assert!(
                page.contains(&format!(".SS \"ghapp {sub}\"")),
                "no section for {sub}"
            );
        }
        assert!(page.contains("\\-\\-permission"), "options are listed");
        assert!(page.contains(".SH \"EXIT STATUS\""));
        assert!(
            !page.contains("ghapp\\-token(1)"),
            "no references to pages that are not installed"
        );
    }

    #[test]
    fn help_text_lists_the_same_exit_codes() {
        for (code, _) in EXIT_CODES {
            assert!(
                crate::cli::EXIT_STATUS_HELP.contains(&format!("  {code} ")),
                "exit code {code} missing from --help"
            );
        }
    }

    #[test]
    fn escapes_roff() {
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("a-b\\c"), "a\\-b\\ec");
    }
}
