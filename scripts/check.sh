#!/usr/bin/env bash
# Every check, run the same way on a laptop and in CI (.ci/run calls this
# script): formatting, lints, the no_std build, all tests (the TAP tests
# included), and the docs. Stops at the first failure with a non-zero exit.
#
# The TAP tests (tests/tap.rs) need root and a few Debian packages
# (docs/testing.md): run as root, e.g. `sudo scripts/check.sh`. Without root
# they fail with "needs root"; they never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Prints a command, then runs it.
run() {
  printf '\n==> %s\n' "$*"
  "$@"
}

if [ "$(id -u)" -ne 0 ]; then
  echo "check.sh: WARNING: not root, so the TAP tests (tests/tap.rs) will fail: sudo $0" >&2
fi

run cargo fmt --all --check
run cargo clippy --workspace --all-targets -- -D warnings
# The library is no_std: build it without the std feature to prove it.
run cargo build --lib --no-default-features
run cargo test --workspace
# The small profile (TAPSTACK_PROFILE=small, the whole stack in 64 KiB) passes
# the same functional suites; built in a target directory of its own so the
# default build is not rebuilt after it.
run env TAPSTACK_PROFILE=small CARGO_TARGET_DIR=target/small cargo test --test memory --test tap
# Coverage-guided fuzzing of the parsers, transforms and receive path: a
# short run per target (scripts/fuzz.sh 600 for a longer one).
run scripts/fuzz.sh 15
run env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

printf '\ncheck.sh: all checks passed\n'
