#!/usr/bin/env bash
# Installs what tapstack needs to build and test, only what is missing:
# Debian/Ubuntu packages (iproute2, nc, telnet, socat, ping, tshark, ...) and,
# if cargo is absent, Rust through rustup. Run as root. Safe to run again.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages): sudo $0" >&2
  exit 1
fi

# command -> Debian package (jq and gnuplot: scripts/bench.sh's summary and charts)
declare -A PACKAGES=(
  [ip]=iproute2 [nc]=netcat-openbsd [telnet]=telnet [socat]=socat [ping]=iputils-ping
  [tshark]=tshark [setpriv]=util-linux [unshare]=util-linux [cc]=build-essential
  [curl]=curl [git]=git [chromium]=chromium [jq]=jq [gnuplot]=gnuplot-nox
)
missing=()
for cmd in "${!PACKAGES[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi

# The tests need OpenBSD's nc (it has -N), not the traditional one. Some nc
# builds exit non-zero on -h, hence `|| true`.
is_openbsd_nc() { [[ "$(nc -h 2>&1 || true)" == *OpenBSD* ]]; }
if ! is_openbsd_nc; then
  if ! dpkg -s netcat-openbsd >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q netcat-openbsd
  fi
  # netcat-traditional may still own the `nc` alternative.
  update-alternatives --set nc /bin/nc.openbsd
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: installing Rust with rustup (https://rustup.rs)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi
echo "setup.sh: ready ($(cargo --version))"
