//! `ghapp demo`. STUB.

use super::Context;
use crate::cli::DemoArgs;
use anyhow::Result;

/// Runs the command.
pub fn run(_context: &Context, _args: DemoArgs) -> Result<i32> {
    anyhow::bail!("ghapp demo: not implemented yet")
}
