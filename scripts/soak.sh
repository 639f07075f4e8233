#!/usr/bin/env bash
# Soak ghapp: mixed load (API clients on the socket, git-credential-ghapp processes, `ghapp
# token`, git ls-remote through the helper) against a real daemon and the GitHub emulator, with
# 10-second tokens so hundreds of refresh cycles happen. Fails unless zero requests failed, zero
# expired tokens were served, and the daemon's RSS and open files stayed flat.
#
#   scripts/soak.sh [DURATION]      DURATION like 60s (default), 10m, 2h
#
# The report (JSON) is printed and written to target/soak/soak-<DURATION>.json.
# The driver is crates/ghapp-reliability/src/soak.rs; `cargo test --workspace` runs it for 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60s}"
cargo build --quiet --bin ghapp --bin git-credential-ghapp --bin github-emulator --bin ghapp-soak
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
mkdir -p "$target_dir/soak"
exec "$target_dir/debug/ghapp-soak" "$duration" --figures "$target_dir/soak/soak-$duration.json"
