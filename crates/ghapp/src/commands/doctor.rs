//! `ghapp doctor`. STUB.

use super::Context;
use crate::cli::DoctorArgs;
use anyhow::Result;

/// Runs the command.
pub fn run(_context: &Context, _args: DoctorArgs) -> Result<i32> {
    anyhow::bail!("ghapp doctor: not implemented yet")
}
