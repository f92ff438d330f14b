#!/usr/bin/env bash
# Coverage-guided fuzzing of tapstack's own parsers, transforms and receive
# path with cargo-fuzz (libFuzzer), a short run per target: what CI runs
# (scripts/check.sh calls it) and what a developer runs for longer.
#
#   scripts/fuzz.sh                 # every target, 30 s each
#   scripts/fuzz.sh 600 stack_rx    # one target, 10 minutes
#
# Targets (fuzz/harness.rs says what each checks): frame_parse, transforms,
# http_request, stack_rx. Needs the nightly toolchain (installed here if
# missing, minimal profile; rust-src is not needed) and cargo-fuzz
# (installed with `cargo install cargo-fuzz` if missing). The committed seed
# corpus in fuzz/corpus/<target>/ is only read; what the fuzzer finds goes
# to fuzz/target/work/<target>/ (not committed).
#
# A crash stops the run with a non-zero exit and leaves the input in
# fuzz/artifacts/<target>/. Make it a regression test: copy it to
# fuzz/regressions/<target>/ (tests/robustness.rs replays that directory
# in every test run), reproduce with
#   cargo +nightly fuzz run -a <target> fuzz/artifacts/<target>/<file>
# and fix the code.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-30}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(frame_parse transforms http_request stack_rx)
fi
case "$secs" in
  ''|*[!0-9]*) echo "fuzz.sh: seconds per target must be a number, not '$secs'" >&2; exit 2 ;;
esac

if ! command -v rustup >/dev/null 2>&1; then
  echo "fuzz.sh: needs rustup to get the nightly toolchain (https://rustup.rs)" >&2
  exit 1
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo +nightly fuzz --version

root="$(pwd)"
for target in "${targets[@]}"; do
  seeds="$root/fuzz/corpus/$target"
  work="$root/fuzz/target/work/$target"
  if [ ! -d "$seeds" ]; then
    echo "fuzz.sh: no target '$target' (no $seeds)" >&2
    exit 2
  fi
  mkdir -p "$work"
  printf '\n==> fuzz %s for %ss\n' "$target" "$secs"
  # -a: debug assertions on, as in the test builds (smoltcp has some).
  # libFuzzer: the first directory receives new inputs, the others are read.
  cargo +nightly fuzz run --fuzz-dir fuzz -a "$target" "$work" "$seeds" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
printf '\nfuzz.sh: %s target(s), %ss each, no crash\n' "${#targets[@]}" "$secs"
