#!/usr/bin/env bash
# build-static-helper.sh — builds git-credential-ghapp statically linked and prints the binary's
# absolute path on stdout. install.sh installs this build and scripts/bench.sh times it: git
# starts the helper for every fetch and push, and a static helper skips the dynamic loader
# (docs/benchmarks-findings.md, "Where the helper's time goes").
#
# Which C library: musl when Rust's musl target for this machine is installed (`rustup target
# add x86_64-unknown-linux-musl`): its start-up does next to nothing, where glibc's measures the
# CPU's caches with CPUID instructions, which trap to the hypervisor in a VM. Otherwise glibc's
# static-pie (`-C target-feature=+crt-static`), which needs a static libc (Debian's libc6-dev,
# Fedora's glibc-static). GHAPP_STATIC_LIBC=musl or =glibc insists on one.
#
# Only on Linux (`*-linux-gnu` hosts); other systems keep the dynamic build. Exits non-zero,
# with the reason on stderr, when it cannot build one — callers fall back to the dynamic
# helper. Environment: CARGO (cargo command), RUSTC, CC, CARGO_TARGET_DIR, GHAPP_STATIC_LIBC.
#
# Why a separate build: +crt-static must not reach proc-macros and build scripts (they are
# loaded as shared objects), and cargo keeps RUSTFLAGS off them only when --target is given.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { printf 'build-static-helper.sh: %s\n' "$*" >&2; exit 1; }

cargo="${CARGO:-cargo}"
# rustc sits beside cargo (install.sh may have found cargo in ~/.cargo/bin, off PATH).
rustc="${RUSTC:-rustc}"
if ! command -v "$rustc" >/dev/null 2>&1 && [ "${cargo#*/}" != "$cargo" ]; then
  rustc="$(dirname "$cargo")/rustc"
fi
host="$("$rustc" -vV 2>/dev/null | sed -n 's/^host: //p')" || true
case "$host" in
  *-linux-gnu) ;;
  "") fail "rustc not found" ;;
  *) fail "$host is not a glibc Linux target; keeping the dynamic helper" ;;
esac
musl="${host%-gnu}-musl"
musl_installed() { [ -d "$("$rustc" --print target-libdir --target "$musl" 2>/dev/null)" ]; }
case "${GHAPP_STATIC_LIBC:-}" in
  musl) musl_installed || fail "GHAPP_STATIC_LIBC=musl, but Rust's $musl target is not installed (rustup target add $musl)"
    target="$musl" ;;
  glibc) target="$host" ;;
  "") if musl_installed; then target="$musl"; else target="$host"; fi ;;
  *) fail "GHAPP_STATIC_LIBC must be musl or glibc, not '$GHAPP_STATIC_LIBC'" ;;
esac
if [ "$target" = "$host" ]; then
  # Without a static libc the build would compile every dependency again only to fail at link.
  libc_a="$("${CC:-cc}" -print-file-name=libc.a 2>/dev/null)" || true
  [ -f "$libc_a" ] || fail "no static libc (libc.a: Debian's libc6-dev, Fedora's glibc-static; or rustup target add $musl); keeping the dynamic helper"
fi

# CARGO_ENCODED_RUSTFLAGS would win over RUSTFLAGS and drop +crt-static.
unset CARGO_ENCODED_RUSTFLAGS
# The binary's path as cargo reports it (wherever build.target-dir or CARGO_TARGET_DIR put it).
if ! helper="$(
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "$cargo" build --release --locked -p git-credential-ghapp --target "$target" \
    --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*git-credential-ghapp\)".*/\1/p' | tail -n 1
)"; then
  fail "cargo could not build it (its errors are above); keeping the dynamic helper"
fi
if [ -z "$helper" ] || [ ! -x "$helper" ]; then
  fail "cargo reported no git-credential-ghapp executable"
fi
case "$helper" in
  /*) ;;
  *) helper="$PWD/$helper" ;;
esac
# A dynamically linked result (flags overridden somewhere) must not be reported as static.
if LC_ALL=C readelf -lW "$helper" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  fail "$helper still names a dynamic loader; keeping the dynamic helper"
fi
# A static binary that cannot start is worse than a dynamic one: check it runs.
"$helper" --version >/dev/null 2>&1 || fail "the static $helper does not run"
printf '%s\n' "$helper"
