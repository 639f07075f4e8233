#!/usr/bin/env bash
# Runs every benchmark against a release build and rewrites docs/benchmarks.md.
#   scripts/bench.sh            full run (a few minutes on 2 cores), writes docs/benchmarks.md
#   scripts/bench.sh --quick    smoke run: every measurement with few iterations, writes nothing
# Extra arguments go to ghapp-bench (e.g. --note "after: LTO on").
set -euo pipefail
cd "$(dirname "$0")/.."
echo "bench: building release binaries" >&2
cargo build --release --locked -p ghapp -p git-credential-ghapp -p github-emulator -p ghapp-bench >&2
exec target/release/ghapp-bench "$@"
