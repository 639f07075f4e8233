#!/usr/bin/env bash
# build-static-helper.sh — builds git-credential-ghapp statically linked (glibc's static-pie) and
# prints the binary's path on stdout. install.sh installs this build and scripts/bench.sh times
# it: git starts the helper for every fetch and push, and a static helper skips the dynamic
# loader (about 0.3 ms of its ~1 ms; docs/benchmarks.md, section a).
#
# Only on Linux with glibc (`*-linux-gnu`); musl targets link statically already and other
# systems keep the dynamic build. Exits non-zero, with the reason on stderr, when it cannot
# build one (no static libc: Debian's libc6-dev has it) — callers fall back to the dynamic
# helper. Environment: CARGO (cargo command), CARGO_TARGET_DIR.
#
# Why a separate build: +crt-static must not reach proc-macros and build scripts (they are
# loaded as shared objects), and cargo keeps RUSTFLAGS off them only when --target is given.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo="${CARGO:-cargo}"
# rustc sits beside cargo (install.sh may have found cargo in ~/.cargo/bin, off PATH).
rustc="${RUSTC:-rustc}"
if ! command -v "$rustc" >/dev/null 2>&1 && [ "${cargo#*/}" != "$cargo" ]; then
  rustc="$(dirname "$cargo")/rustc"
fi
host="$("$rustc" -vV 2>/dev/null | sed -n 's/^host: //p')" || true
case "$host" in
  *-linux-gnu) ;;
  "") echo "build-static-helper.sh: rustc not found" >&2; exit 1 ;;
  *) echo "build-static-helper.sh: $host is not a glibc Linux target; keeping the dynamic helper" >&2; exit 1 ;;
esac

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  "$cargo" build --release --locked -p git-credential-ghapp --target "$host" >&2
helper="$target_dir/$host/release/git-credential-ghapp"
# A static binary that cannot start is worse than a dynamic one: check it runs.
if ! "$helper" --version >/dev/null 2>&1; then
  echo "build-static-helper.sh: the static $helper does not run" >&2
  exit 1
fi
printf '%s\n' "$helper"
