#!/usr/bin/env bash
# A bounded cargo-fuzz run of the parsers that face untrusted input (crates/ghapp-protocol/fuzz):
# git's credential request, the socket API's query string, its JSON bodies and lists.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 20 (or $FUZZ_SECONDS)
#
# cargo-fuzz needs nightly; the stable compiler accepts its -Z flags with RUSTC_BOOTSTRAP=1.
# AddressSanitizer is tried first, then no sanitizer (`-s none`) if that build fails.
# Exit status: 1 when a target crashes (the input is saved under fuzz/artifacts/), else 0 —
# also when cargo-fuzz cannot be installed or the targets cannot be built here, which is
# reported loudly instead of failing the caller (CI).
set -uo pipefail
cd "$(dirname "$0")/../crates/ghapp-protocol/fuzz" || exit 1
seconds="${1:-${FUZZ_SECONDS:-20}}"
targets=(credential_request token_query socket_bodies)

notice() {
  echo "################################################################################"
  echo "### FUZZING SKIPPED: $*"
  echo "################################################################################"
  exit 0
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io (cargo install cargo-fuzz --locked)"
  timeout 1200 cargo install --quiet cargo-fuzz --locked ||
    notice "cargo-fuzz could not be installed (no network or no compiler?)"
fi
export RUSTC_BOOTSTRAP=1
sanitizer=()
echo "fuzz: building the targets (AddressSanitizer)"
if ! cargo fuzz build >/tmp/ghapp-fuzz-build.log 2>&1; then
  tail -5 /tmp/ghapp-fuzz-build.log
  echo "fuzz: the AddressSanitizer build failed; trying without a sanitizer"
  sanitizer=(-s none)
  cargo fuzz build "${sanitizer[@]}" >/tmp/ghapp-fuzz-build.log 2>&1 ||
    { tail -20 /tmp/ghapp-fuzz-build.log; notice "the fuzz targets do not build with this toolchain"; }
fi

failed=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${seconds}s ${sanitizer[*]}"
  if cargo fuzz run "${sanitizer[@]}" "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 >"/tmp/ghapp-fuzz-$target.log" 2>&1; then
    grep -E '^Done|stat::number_of_executed_units' "/tmp/ghapp-fuzz-$target.log" | head -2
  else
    echo "fuzz: $target FAILED — input saved under $(pwd)/artifacts/$target/"
    grep -v '^\s*#[0-9]' "/tmp/ghapp-fuzz-$target.log" | tail -30
    failed=1
  fi
done
exit "$failed"
