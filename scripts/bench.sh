#!/usr/bin/env bash
# Runs every benchmark against a release build and rewrites docs/benchmarks.md.
#   scripts/bench.sh            full run (a few minutes on 2 cores), writes docs/benchmarks.md
#   scripts/bench.sh --quick    smoke run: every measurement with few iterations, writes nothing
# Extra arguments go to ghapp-bench (e.g. --note "after: LTO on", --only b, --no-oha).
# Section g (signers on the cold path) uses SoftHSM2 and moto's server when present; its rows say
# "not measured: <why>" otherwise.
# Section h (the network listener, TCP and TCP+TLS) needs nothing beyond the build.
# Section p measures the API proxy (docs/proxy.md) against the emulator directly.
# Section s (docs/scale-out.md) runs 50 per-host daemons against 50 key-less daemons chained to a
# broker for ~75 s, counting mints at two emulators; its counts do not depend on the build profile.
#
# Section b2 measures the throughput rows again with oha, a load generator ghapp does not write.
# When oha is absent it is installed here (pinned, --locked, in its own target dir so it does not
# wait on the workspace's build lock); set GHAPP_BENCH_OHA=/path/to/oha to use another copy, or
# GHAPP_BENCH_NO_INSTALL=1 to skip the install (the rows then say SKIPPED).
set -euo pipefail
cd "$(dirname "$0")/.."
OHA_VERSION=1.16.0 # keep in step with crates/ghapp-bench/src/oha.rs PINNED_VERSION

have_oha() {
    [ -n "${GHAPP_BENCH_OHA:-}" ] || command -v oha >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/oha" ]
}
if ! have_oha && [ -z "${GHAPP_BENCH_NO_INSTALL:-}" ]; then
    echo "bench: installing oha $OHA_VERSION (cargo install --locked; takes minutes once)" >&2
    # Default features (rustls): oha 1.16.0 does not build without a TLS feature.
    CARGO_TARGET_DIR="${TMPDIR:-/tmp}/ghapp-bench-oha-build" \
        cargo install oha --version "$OHA_VERSION" --locked >&2 ||
        echo "bench: oha install failed; its rows will say SKIPPED" >&2
fi

echo "bench: building release binaries" >&2
# aws-kms (off by default) so section g can measure the KMS signer; it adds to section f's ghapp size.
cargo build --release --locked -p ghapp --features ghapp/aws-kms -p git-credential-ghapp -p github-emulator -p ghapp-bench >&2
# Section a times the helper install.sh installs (statically linked on glibc Linux), and the
# build's dynamically linked one beside it.
# A --helper of the caller's own wins.
helper_args=()
case " $* " in
*" --helper "* | *" --helper="*) ;;
*)
    if helper="$(scripts/build-static-helper.sh)"; then
        helper_args=(--helper "$helper")
    else
        echo "bench: no static helper (see above); section a times the dynamically linked one" >&2
    fi
    ;;
esac
exec target/release/ghapp-bench ${helper_args[@]+"${helper_args[@]}"} "$@"
