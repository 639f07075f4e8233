//! `ghapp configure` / `ghapp unconfigure`. STUB.

use super::Context;
use crate::cli::ConfigureArgs;
use anyhow::Result;

/// Writes git's config.
pub fn configure(_context: &Context, _args: ConfigureArgs) -> Result<i32> {
    anyhow::bail!("ghapp configure: not implemented yet")
}

/// Removes exactly what configure wrote.
pub fn unconfigure(_context: &Context, _args: ConfigureArgs) -> Result<i32> {
    anyhow::bail!("ghapp unconfigure: not implemented yet")
}
