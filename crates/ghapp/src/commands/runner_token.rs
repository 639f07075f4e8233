//! `ghapp runner-token`. STUB.

use super::Context;
use crate::cli::RunnerTokenArgs;
use anyhow::Result;

/// Runs the command.
pub fn run(_context: &Context, _args: RunnerTokenArgs) -> Result<i32> {
    anyhow::bail!("ghapp runner-token: not implemented yet")
}
