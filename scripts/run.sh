#!/usr/bin/env bash
# Quick start: install what is missing, build tapstack in release mode, and
# run it on a TAP it creates (tap0; the host side gets 192.168.69.100/24 and
# fdaa::100/64). Ctrl-C stops it and removes the TAP. Run as root.
# Extra arguments go to tapstack, e.g. `scripts/run.sh --tap tap1`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin tapstack >&2
exec target/release/tapstack --create "$@"
