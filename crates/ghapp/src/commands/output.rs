//! Writing to stdout without panicking when the reader has gone away (`ghapp token | head -c0`,
//! a closed pipe): Rust ignores SIGPIPE, so `println!` would panic on EPIPE.

use anyhow::{Context as _, Result};
use std::io::Write;

/// Writes `text` to stdout and flushes; a closed pipe is not an error worth a message
/// (the reader chose to stop), anything else is.
pub fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(error).context("writing to stdout"),
    }
}

/// Pretty JSON followed by a newline.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    text.push('\n');
    print(&text)
}
