//! Logs go to stderr through `tracing`: human-readable lines by default, one JSON object per line
//! with `--log-format json`. The level comes from `$GHAPP_LOG` (then `$RUST_LOG`), default `info`.
//! stdout is reserved for the single `ready <socket>` line.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; a second call (tests) keeps the first.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("GHAPP_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: not for files, pipes or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
