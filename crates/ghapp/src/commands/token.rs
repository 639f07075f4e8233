//! `ghapp token`. STUB.

use super::Context;
use crate::cli::TokenArgs;
use anyhow::Result;

/// Runs the command.
pub fn run(_context: &Context, _args: TokenArgs) -> Result<i32> {
    anyhow::bail!("ghapp token: not implemented yet")
}
