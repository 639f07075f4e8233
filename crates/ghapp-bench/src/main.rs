//! `ghapp-bench`: runs every benchmark of docs/benchmarks.md and rewrites it.
//! Use `scripts/bench.sh` (it builds in release mode first); `--quick` is a smoke run.

mod configured;
mod load;
mod network;
mod oha;
mod process;
mod proxy;
mod row;
mod scale;
mod scenario;
mod signers;
mod stats;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let options = scenario::Options::parse();
    scenario::run(options)
}
