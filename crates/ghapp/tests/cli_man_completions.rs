//! `ghapp man` and `ghapp completions SHELL`: generated from the clap definitions, complete,
//! and accepted by the tools that consume them (man/groff, bash) where installed.

mod common;

use common::Sandbox;
use ghapp_testkit::system::run_with_input;
use std::process::Command;

const SUBCOMMANDS: [&str; 9] = [
    "token",
    "exec",
    "configure",
    "unconfigure",
    "doctor",
    "status",
    "runner-token",
    "demo",
    "completions",
];

/// Whether `name` is installed; says SKIPPED (what went unchecked) when it is not.
fn tool(name: &str, unchecked: &str) -> bool {
    let found = ghapp_testkit::system::on_path(name).is_some();
    if !found {
        eprintln!("SKIPPED: {name} is not installed; {unchecked} was not checked");
    }
    found
}

#[test]
fn man_page_documents_everything_and_renders() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["man"]);
    out.expect_code(0);
    let page = &out.stdout;
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "roff: {}",
        &page[..80.min(page.len())]
    );
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!(".SS \"ghapp {}\"", sub.replace('-', "\\-"))),
            "no section for {sub}"
        );
    }
    for section in [
        ".SH COMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    if tool("man", "rendering the page") {
        // man renders it; groff's warnings (if groff is what man runs) go to stderr.
        let rendered = run_with_input(
            Command::new("man")
                .args(["-l", "-"])
                .env("MANWIDTH", "100")
                .env("MAN_KEEP_FORMATTING", "0")
                .env("PAGER", "cat"),
            page.as_bytes(),
        );
        assert!(
            rendered.status.success(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        // Undo man's overstriking (bold is `X\bX`), as `col -b` would.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&rendered.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(
            text.contains("ghapp runner-token") && text.contains("--print-config-command"),
            "{text}"
        );
        assert!(
            !String::from_utf8_lossy(&rendered.stderr).contains("warning"),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
    }
}

#[test]
fn completions_for_each_shell() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = sandbox.run(&["completions", shell]);
        out.expect_code(0);
        for sub in SUBCOMMANDS {
            assert!(out.stdout.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(
            out.stdout.contains("print-config-command"),
            "{shell}: subcommand flags"
        );
        if tool(shell, &format!("{shell} -n on the script")) {
            let check = run_with_input(Command::new(shell).arg("-n"), out.stdout.as_bytes());
            assert!(
                check.status.success(),
                "{shell} -n rejects the script: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let bad = sandbox.run(&["completions", "tcsh"]);
    bad.expect_code(2);
}

#[test]
fn help_documents_exit_codes() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["--help"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("Exit status") && out.stdout.contains("3 daemon not reachable"),
        "{}",
        out.stdout
    );
    let token = sandbox.run(&["token", "--help"]);
    assert!(
        token.stdout.contains("4 refused by the daemon"),
        "{}",
        token.stdout
    );
}
