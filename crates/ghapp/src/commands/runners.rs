//! `ghapp runners …`: the self-hosted runner service (docs/runners.md).
//!
//! `provision`, `list`, `status`, `deprovision`, `cleanup` and `sync` go through the daemon's
//! socket (`/api/v1/runners…`): the daemon holds the App key and the database, and scopes every
//! runner to the identity that provisioned it. `audit verify`, `audit export` and `backup` open
//! the database file itself, read-only: they work while the daemon is stopped (after an
//! incident), they expose the whole trail only to whoever can read the file (the daemon's user,
//! root), and SQLite's online backup copies a consistent snapshot while the daemon writes.

use super::Context;
use super::exit::{self, Failure};
use super::{output, table};
use anyhow::Result;
use clap::{Args, Subcommand};
use ghapp_protocol::runners::{ProvisionMode, ProvisionRequest, RunnerRecord};
use ghapp_protocol::time::Timestamp;
use ghapp_runners::Store;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Provisioning asks GitHub (an installation token first, with retries): as long as `ghapp
/// token` may take.
const RUNNER_TIMEOUT: Duration = super::token::TOKEN_TIMEOUT;

/// `ghapp runners …`.
#[derive(Debug, Subcommand)]
pub enum RunnersCommand {
    /// Provision a runner: just-in-time by default (prints `./run.sh --jitconfig …`), or with
    /// --registration-token the `./config.sh` line with a one-hour registration token.
    Provision(ProvisionArgs),
    /// List your runners (--all: everyone's, for callers no policy restricts).
    List(ListArgs),
    /// Show one of your runners.
    Status(NameArgs),
    /// Delete one of your runners on GitHub and mark it deleted.
    Deprovision(NameArgs),
    /// Delete runners offline longer than --offline-for, on GitHub and in the records.
    Cleanup(CleanupArgs),
    /// Reconcile the records with GitHub's runner lists now.
    Sync(JsonArgs),
    /// The audit trail in the database: verify its hash chain, export it.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Copy the database to FILE with SQLite's online backup (safe while the daemon runs).
    Backup(BackupArgs),
}

/// `ghapp runners audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain: exit 1 and name every edited, inserted or deleted row.
    Verify(DatabaseArgs),
    /// Write the rows since DATE as JSON lines.
    Export(ExportArgs),
}

/// `provision`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("runner_scope").args(["org", "repo"]))]
pub struct ProvisionArgs {
    /// The runner's name (letters, digits, '-', '_', '.').
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Labels, comma-separated (default: self-hosted).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Takes one job, then GitHub removes it.
    #[arg(long)]
    pub ephemeral: bool,
    /// The runner group id (default 1, GitHub's "Default").
    #[arg(long, value_name = "ID")]
    pub group: Option<u64>,
    /// The organization (default: [runners] owner).
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// A repository's runner instead of an organization's.
    #[arg(long, value_name = "OWNER/REPO")]
    pub repo: Option<String>,
    /// A registration token for ./config.sh instead of a just-in-time configuration.
    #[arg(long)]
    pub registration_token: bool,
    /// The runner's work folder (just-in-time runners; default _work).
    #[arg(long, value_name = "DIR")]
    pub work_folder: Option<String>,
    /// Print the whole answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Every caller's runners.
    #[arg(long)]
    pub all: bool,
    /// Deleted runners too.
    #[arg(long)]
    pub deleted: bool,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A runner's name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The runner's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Delete runners offline longer than this (e.g. 1h, 30m, 0s).
    #[arg(long, value_name = "DURATION")]
    pub offline_for: String,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the database is, for the commands that open it.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// The database (default: [runners] database of the config, else runners.sqlite3 in the
    /// daemon's state directory).
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
}

/// `audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Rows at or after this date (2026-01-01, or an RFC 3339 time).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// The file to write (must not exist); default stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to create (must not exist).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Runs a `ghapp runners` command.
pub fn run(context: &Context, command: RunnersCommand) -> Result<i32> {
    match command {
        RunnersCommand::Provision(args) => provision(context, args),
        RunnersCommand::List(args) => {
            let list = call(context, |c| async move {
                c.list_runners(args.deleted, args.all).await
            })?;
            if args.json {
                output::print_json(&list)?;
            } else {
                output::print(&render(&list.runners))?;
            }
            Ok(exit::OK)
        }
        RunnersCommand::Status(args) => {
            let name = args.name.clone();
            let record = call(context, |c| async move { c.runner(&name).await })?;
            if args.json {
                output::print_json(&record)?;
            } else {
                output::print(&render(std::slice::from_ref(&record)))?;
            }
            Ok(exit::OK)
        }
        RunnersCommand::Deprovision(args) => {
            let name = args.name.clone();
            let record = call(
                context,
                |c| async move { c.deprovision_runner(&name).await },
            )?;
            if args.json {
                output::print_json(&record)?;
            } else {
                output::print(&format!("{}: {}\n", record.name, record.state))?;
            }
            Ok(exit::OK)
        }
        RunnersCommand::Cleanup(args) => {
            let offline_for = ghapp_protocol::duration::parse_duration(&args.offline_for)
                .map_err(|e| Failure::usage(format!("--offline-for: {e}")))?;
            let report = call(
                context,
                |c| async move { c.cleanup_runners(offline_for).await },
            )?;
            print_report(&report, args.json)
        }
        RunnersCommand::Sync(args) => {
            let report = call(context, |c| async move { c.sync_runners().await })?;
            print_report(&report, args.json)
        }
        RunnersCommand::Audit(AuditCommand::Verify(args)) => {
            let store = open(context, &args)?;
            let verified = store
                .verify_audit()
                .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
            let head = verified
                .head
                .as_ref()
                .map_or("empty".to_string(), |(seq, hash)| {
                    format!("row {seq} {hash}")
                });
            if verified.ok() {
                output::print(&format!(
                    "audit trail of {}: {} rows, chain intact; head {head}\n",
                    store.path().display(),
                    verified.rows
                ))?;
                Ok(exit::OK)
            } else {
                for problem in &verified.problems {
                    eprintln!("ghapp: {problem}");
                }
                Err(Failure::new(
                    exit::FAILURE,
                    format!(
                        "the audit trail of {} is broken: {} problem(s) in {} rows",
                        store.path().display(),
                        verified.problems.len(),
                        verified.rows
                    ),
                )
                .into())
            }
        }
        RunnersCommand::Audit(AuditCommand::Export(args)) => export(context, args),
        RunnersCommand::Backup(args) => {
            let store = open(context, &args.database)?;
            store
                .backup(&args.file)
                .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
            output::print(&format!(
                "backed up {} to {}\n",
                store.path().display(),
                args.file.display()
            ))?;
            Ok(exit::OK)
        }
    }
}

/// One daemon call, with the CLI's exit codes for its failures.
fn call<T, F, Fut>(context: &Context, ask: F) -> Result<T>
where
    F: FnOnce(ghapp_client::DaemonClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, ghapp_client::ClientError>>,
{
    let client = context.client(RUNNER_TIMEOUT);
    ghapp_client::block_on(ask(client))
        .map_err(|e| Failure::from_client(e, &context.socket()).into())
}

fn provision(context: &Context, args: ProvisionArgs) -> Result<i32> {
    let request = ProvisionRequest {
        runner_name: args.name,
        labels: args.labels,
        runner_group_id: args.group,
        ephemeral: args.ephemeral,
        mode: Some(if args.registration_token {
            ProvisionMode::RegistrationToken
        } else {
            ProvisionMode::Jit
        }),
        org: args.org,
        repo: args.repo,
        work_folder: args.work_folder,
    };
    let response = call(
        context,
        |c| async move { c.provision_runner(&request).await },
    )?;
    if args.json {
        output::print_json(&response)?;
    } else {
        output::print(&format!("{}\n", response.configuration_command.expose()))?;
    }
    Ok(exit::OK)
}

fn print_report(report: &ghapp_protocol::runners::SyncReport, json: bool) -> Result<i32> {
    if json {
        output::print_json(report)?;
    } else {
        let mut text = String::new();
        for t in &report.transitions {
            text.push_str(&format!(
                "{}: {} -> {} ({})\n",
                t.runner_name, t.from, t.to, t.reason
            ));
        }
        if report.transitions.is_empty() {
            text.push_str("no runner changed state\n");
        }
        output::print(&text)?;
    }
    for failure in &report.failures {
        eprintln!("ghapp: {failure}");
    }
    Ok(if report.failures.is_empty() {
        exit::OK
    } else {
        exit::UNAVAILABLE
    })
}

fn render(runners: &[RunnerRecord]) -> String {
    let rows: Vec<Vec<String>> = runners
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.state.to_string(),
                r.github_id.map_or("-".into(), |id| id.to_string()),
                r.scope(),
                r.labels.join(","),
                if r.ephemeral { "yes" } else { "no" }.into(),
                r.owner_identity.clone(),
            ]
        })
        .collect();
    table::render(
        &[
            "NAME",
            "STATE",
            "ID",
            "SCOPE",
            "LABELS",
            "EPHEMERAL",
            "OWNER",
        ],
        &rows,
    )
}

/// The database file: `--database`, else `[runners] database` of the config file, else the
/// default in the state directory.
fn database_path(context: &Context, args: &DatabaseArgs) -> PathBuf {
    if let Some(path) = &args.database {
        return path.clone();
    }
    let config = context.config_file().path;
    if let Ok(loaded) = ghapp_protocol::config::Config::load(&config)
        && let Some(path) = loaded.runners.and_then(|r| r.database)
    {
        return path;
    }
    ghapp_protocol::paths::daemon_state_dir().join("runners.sqlite3")
}

fn open(context: &Context, args: &DatabaseArgs) -> Result<Store> {
    let path = database_path(context, args);
    Store::open_read_only(&path).map_err(|e| Failure::new(exit::FAILURE, e.to_string()).into())
}

/// `2026-01-01` (midnight UTC) or an RFC 3339 time.
fn parse_since(text: &str) -> Result<Timestamp, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    Timestamp::parse(&full).map_err(|e| e.to_string())
}

fn export(context: &Context, args: ExportArgs) -> Result<i32> {
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(|e| Failure::usage(format!("--since: {e}")))?;
    let store = open(context, &args.database)?;
    let written = match &args.output {
        Some(path) => {
            let mut file = create_new(path)?;
            let written = store
                .export_audit(since, &mut file)
                .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
            file.sync_all()
                .map_err(|e| Failure::new(exit::FAILURE, format!("{}: {e}", path.display())))?;
            written
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            store
                .export_audit(since, &mut stdout)
                .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?
        }
    };
    if args.output.is_some() {
        eprintln!("ghapp: exported {written} audit rows");
    }
    Ok(exit::OK)
}

/// A new file (0600: the trail names identities and addresses).
fn create_new(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot create {} (it must not exist): {e}", path.display()),
            )
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_date_or_a_time() {
        assert_eq!(
            parse_since("2026-01-01").unwrap().to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert!(parse_since("2026-01-01T05:00:00Z").is_ok());
        assert!(parse_since("yesterday").is_err());
    }
}
