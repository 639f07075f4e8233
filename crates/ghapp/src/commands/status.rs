//! `ghapp status`. STUB.

use super::Context;
use crate::cli::StatusArgs;
use anyhow::Result;

/// Runs the command.
pub fn run(_context: &Context, _args: StatusArgs) -> Result<i32> {
    anyhow::bail!("ghapp status: not implemented yet")
}
