//! `ghapp exec`. STUB.

use super::Context;
use crate::cli::ExecArgs;
use anyhow::Result;

/// Runs the command.
pub fn run(_context: &Context, _args: ExecArgs) -> Result<i32> {
    anyhow::bail!("ghapp exec: not implemented yet")
}
