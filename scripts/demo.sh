#!/usr/bin/env bash
# scripts/demo.sh — ghapp's main job, end to end, on this machine: no GitHub App, no network.
#
# Builds `ghapp`, `git-credential-ghapp` and `github-emulator` if needed and runs `ghapp demo`,
# which starts the local GitHub emulator (the github-emulator binary, with a freshly generated App
# key), the daemon, and real git cloning, committing and pushing through `credential.helper
# ghapp` in a throwaway HOME. Each step is printed; the token's remaining life is shown, never
# the token. Exit status: 0 when every step passed, 1 (with
# the failing step named) otherwise.
#
# Usage: scripts/demo.sh [--release] [--keep]
#   --release  use a release build (slower to build the first time; the default debug build is
#              the one `cargo test --workspace` also uses, so the two README commands share it)
#   --keep     keep the demo's temp directory (config, daemon log, clones) for a look around
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=debug
demo_args=()
for arg in "$@"; do
  case "$arg" in
    --release) profile=release ;;
    -h|--help) sed -n '/^# Usage:/,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) demo_args+=("$arg") ;;
  esac
done

# rustup installs cargo here; a shell started before the install does not have it on PATH yet.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

for tool in cargo git; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      cargo) echo "demo.sh: cargo not found: install Rust 1.88+ with https://rustup.rs" >&2 ;;
      git) echo "demo.sh: git not found: apt-get install git" >&2 ;;
    esac
    exit 1
  fi
done

cd "$repo_dir"
cargo_args=(build -p ghapp -p git-credential-ghapp -p github-emulator)
[ "$profile" = release ] && cargo_args+=(--release)
echo "demo.sh: building ghapp, git-credential-ghapp and github-emulator ($profile; the first build takes a few minutes)" >&2
cargo "${cargo_args[@]}"

target_dir="${CARGO_TARGET_DIR:-$repo_dir/target}"
exec "$target_dir/$profile/ghapp" demo ${demo_args[@]+"${demo_args[@]}"}
