#!/usr/bin/env bash
# Benchmarks tapstack against the Linux kernel's own stack, side by side.
#
# One run, one table: tapstack / kernel / ratio. The same client
# (`hostnet bench`) measures both targets from the same network namespace,
# alternating round by round, so a noisy machine slows both alike:
#
#   namespace tsbench-PID        namespace tsbench-PID-k
#   +---------------------+      +----------------------+
#   | hostnet bench       |      |                      |
#   |   tap0 <-> tapstack |      |                      |
#   |   192.168.69.100    |      |                      |
#   |   vk0 10.69.0.1 ----+------+-- vk1 10.69.0.2      |
#   +---------------------+ veth |   hostnet serve      |
#                                +----------------------+
#
# tapstack is reached over its TAP (192.168.69.1), the kernel over a veth
# pair (hostnet serve on 10.69.0.2, the kernel's TCP/IP with the same
# transforms). Nothing leaves the two namespaces, which are deleted on exit.
#
# Usage: sudo scripts/bench.sh [extra hostnet bench options]
# Environment: SIZE (default 100M), COUNT (10000), DURATION (3s),
#              CLIENTS (16), ROUNDS (3), JSON=1 for JSON instead of the table.
# Needs root (namespaces, a TAP) and `ip` (iproute2).
set -euo pipefail

cd "$(dirname "$0")/.."

SIZE=${SIZE:-100M}
COUNT=${COUNT:-10000}
DURATION=${DURATION:-3s}
CLIENTS=${CLIENTS:-16}
ROUNDS=${ROUNDS:-3}

if [[ $(id -u) -ne 0 ]]; then
    echo "bench.sh: needs root for network namespaces and a TAP: sudo $0" >&2
    exit 2
fi
command -v ip >/dev/null || { echo "bench.sh: needs ip: apt-get install iproute2" >&2; exit 2; }

NS=tsbench-$$
KNS=tsbench-$$-k
LOGS=$(mktemp -d)
STACK_PID=
SERVE_PID=

cleanup() {
    # Only the processes this script started, by PID; then the namespaces.
    for pid in $STACK_PID $SERVE_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $STACK_PID $SERVE_PID; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$KNS" 2>/dev/null || true
    rm -rf "$LOGS"
}
trap cleanup EXIT

# Waits (at most 30 s) for a line in a log; fails with the log otherwise.
wait_for() {
    local file=$1 line=$2 pid=$3
    for _ in $(seq 300); do
        grep -q "$line" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench.sh: no '$line' from pid $pid; its output:" >&2
    cat "$file" >&2
    exit 1
}

echo "bench.sh: building release binaries" >&2
cargo build --release --quiet -p tapstack --bin tapstack -p hostnet --bin hostnet
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TAPSTACK=$TARGET_DIR/release/tapstack
HOSTNET=$TARGET_DIR/release/hostnet

ip netns add "$NS"
ip netns add "$KNS"
ip -n "$NS" link set lo up
ip -n "$KNS" link set lo up
ip -n "$NS" link add vk0 type veth peer name vk1 netns "$KNS"
ip -n "$NS" addr add 10.69.0.1/24 dev vk0
ip -n "$KNS" addr add 10.69.0.2/24 dev vk1
ip -n "$NS" link set vk0 up
ip -n "$KNS" link set vk1 up
# The connection-rate test opens thousands of connections a second; the
# client's side keeps each port in TIME-WAIT for 60 s. Widen the port range
# and let the kernel reuse TIME-WAIT ports (per namespace; both are ours).
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1

ip netns exec "$NS" "$TAPSTACK" --create >"$LOGS/tapstack" 2>&1 &
STACK_PID=$!
wait_for "$LOGS/tapstack" "tapstack: ready" "$STACK_PID"
ip netns exec "$KNS" "$HOSTNET" serve --bind 10.69.0.2 >"$LOGS/serve" 2>&1 &
SERVE_PID=$!
wait_for "$LOGS/serve" "hostnet: ready" "$SERVE_PID"

echo "bench.sh: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r)" >&2
echo "bench.sh: size $SIZE, $COUNT datagrams, connect for $DURATION, $CLIENTS clients, $ROUNDS rounds alternating" >&2
FORMAT=()
[[ ${JSON:-0} == 1 ]] && FORMAT=(--json)
status=0
ip netns exec "$NS" "$HOSTNET" bench 192.168.69.1 --vs 10.69.0.2 \
    --label tapstack --vs-label kernel \
    --size "$SIZE" --count "$COUNT" --duration "$DURATION" --clients "$CLIENTS" --rounds "$ROUNDS" \
    "${FORMAT[@]}" "$@" || status=$?
exit "$status"
