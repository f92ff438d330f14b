#!/usr/bin/env bash
# Benchmarks tapstack against the Linux kernel's own stack, side by side,
# over a sweep of MTUs.
#
# The same client (`hostnet bench`) measures both targets from the same
# network namespace, alternating round by round, so a noisy machine slows
# both alike:
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
# pair (hostnet serve on 10.69.0.2: the kernel's TCP/IP with the same
# services). Nothing leaves the two namespaces, which are deleted on exit.
#
# For each MTU the TAP and both veth ends are set to it and tapstack is
# started again (it reads the MTU at start); one run then measures discard
# (host to stack), chargen (stack to host) and TCP echo. At LATENCY_MTU a
# second run measures UDP round trips (every sample kept, for the chart),
# the connection rate and concurrency. Figures are medians of the rounds.
#
# Usage: sudo scripts/bench.sh [extra hostnet bench options]
# Environment:
#   MTUS         MTUs to sweep (default "1500 9000 65000")
#   ROUNDS       rounds per measurement, alternating targets (3)
#   ONEWAY_SIZE  bytes for discard and for chargen, all rounds together (1G)
#   SIZE         bytes for TCP echo and for concurrency (100M)
#   COUNT        UDP datagrams (10000); DURATION connect time (3s); CLIENTS (64,
#                concurrent echo clients, also measured with 1 for the ratio)
#   POOL         tapstack's TCP pool per echo/upper-case service, a build-time
#                setting (TAPSTACK_POOL; 64, so that every client has a slot)
#   STACK_ARGS   extra tapstack flags, e.g. "--busy-poll 50"
#   LATENCY_MTU  MTU of the UDP / connect / concurrency run (1500; "none": skip)
#   OUT          raw results: JSON of every run, RTT samples, logs (target/bench)
#   IMAGES       where the charts go (docs/images); CHARTS=0: no charts
#   JSON=1       print every run's JSON, gathered, instead of the table
#   REPORT_ONLY=1  measure nothing: the table and the charts again from $OUT
# Needs root (namespaces, a TAP), ip (iproute2), jq, and gnuplot for the charts.
set -euo pipefail

cd "$(dirname "$0")/.."

MTUS=${MTUS:-1500 9000 65000}
ROUNDS=${ROUNDS:-3}
ONEWAY_SIZE=${ONEWAY_SIZE:-1G}
SIZE=${SIZE:-100M}
COUNT=${COUNT:-10000}
DURATION=${DURATION:-3s}
CLIENTS=${CLIENTS:-64}
POOL=${POOL:-64}
STACK_ARGS=${STACK_ARGS:-}
LATENCY_MTU=${LATENCY_MTU:-1500}
OUT=${OUT:-target/bench}
IMAGES=${IMAGES:-docs/images}
CHARTS=${CHARTS:-1}
REPORT_ONLY=${REPORT_ONLY:-0}

# The issue's targets for discard and chargen, Gbit/s by MTU.
declare -A TARGET=([1500]=5 [9000]=12)

die() { echo "bench.sh: $*" >&2; exit 2; }
if [[ $REPORT_ONLY == 1 ]]; then
    [[ -r $OUT/settings.env ]] || die "REPORT_ONLY=1: no finished run in $OUT (no settings.env)"
else
    [[ $(id -u) -eq 0 ]] || die "needs root for network namespaces and a TAP: sudo $0"
    command -v ip >/dev/null || die "needs ip: apt-get install iproute2"
fi
command -v jq >/dev/null || die "needs jq: apt-get install jq"
if [[ $CHARTS != 0 ]]; then
    command -v gnuplot >/dev/null || die "needs gnuplot: apt-get install gnuplot-nox (or CHARTS=0)"
fi
for mtu in $MTUS $([[ $LATENCY_MTU == none ]] || echo "$LATENCY_MTU"); do
    [[ $mtu =~ ^[0-9]+$ ]] && ((mtu >= 1280 && mtu <= 65521)) ||
        die "MTU '$mtu': expected a number from 1280 (IPv6's minimum) to 65521 (a TAP's maximum)"
done

# ---------------------------------------------------------------------------
# Measuring: two namespaces, the kernel's server, tapstack at each MTU.
# ---------------------------------------------------------------------------

NS=tsbench-$$
KNS=tsbench-$$-k
STACK_PID=
SERVE_PID=
status=0      # 1 once a run failed (its results so far are kept)
RAN_LATENCY=0 # the MTU of the UDP / connect / concurrency run, once done

stop_stack() {
    if [[ -n $STACK_PID ]]; then
        kill -TERM "$STACK_PID" 2>/dev/null || true
        wait "$STACK_PID" 2>/dev/null || true
        STACK_PID=
    fi
}

cleanup() {
    # Only the processes this script started, by PID; then the namespaces
    # (which takes the TAP and the veth pair with them).
    stop_stack
    if [[ -n $SERVE_PID ]]; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$KNS" 2>/dev/null || true
}

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

# Two namespaces joined by a veth pair, a TAP in the first, the kernel's
# server in the second.
make_namespaces() {
    ip netns add "$NS"
    ip netns add "$KNS"
    ip -n "$NS" link set lo up
    ip -n "$KNS" link set lo up
    ip -n "$NS" link add vk0 type veth peer name vk1 netns "$KNS"
    ip -n "$NS" addr add 10.69.0.1/24 dev vk0
    ip -n "$KNS" addr add 10.69.0.2/24 dev vk1
    ip -n "$NS" link set vk0 up
    ip -n "$KNS" link set vk1 up
    # The TAP is made here, not by `tapstack --create`, so that it outlives
    # each tapstack and takes a new MTU between them. Addresses as --create
    # gives them.
    ip -n "$NS" tuntap add name tap0 mode tap
    # As --create sets it: room for what the stack's windows take in.
    ip -n "$NS" link set tap0 txqueuelen 10000
    ip -n "$NS" link set tap0 up
    ip -n "$NS" addr add 192.168.69.100/24 dev tap0
    ip -n "$NS" addr add fdaa::100/64 dev tap0 nodad
    # The connection-rate test opens thousands of connections a second; the
    # client's side keeps each port in TIME-WAIT for 60 s. Widen the port
    # range and let the kernel reuse TIME-WAIT ports (per namespace; both are ours).
    ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1

    # The kernel's side: echo 7, upper-case 11111, discard 9, chargen 19.
    ip netns exec "$KNS" "$HOSTNET" serve --bind 10.69.0.2 >"$OUT/serve.log" 2>&1 &
    SERVE_PID=$!
    wait_for "$OUT/serve.log" "hostnet: ready" "$SERVE_PID"
}

# Sets the TAP and both veth ends to MTU $1 and starts tapstack on it.
start_stack_at() {
    local mtu=$1 log=$OUT/tapstack-mtu$1.log
    stop_stack
    ip -n "$NS" link set tap0 mtu "$mtu"
    ip -n "$NS" link set vk0 mtu "$mtu"
    ip -n "$KNS" link set vk1 mtu "$mtu"
    # shellcheck disable=SC2086 # STACK_ARGS is a list of flags
    ip netns exec "$NS" "$TAPSTACK" --tap tap0 $STACK_ARGS >"$log" 2>&1 &
    STACK_PID=$!
    wait_for "$log" "tapstack: ready" "$STACK_PID"
    grep -q "MTU $mtu\$" "$log" || {
        echo "bench.sh: tapstack did not take MTU $mtu:" >&2
        cat "$log" >&2
        exit 1
    }
}

# hostnet bench $@, tapstack against the kernel, alternating, as JSON.
bench() {
    ip netns exec "$NS" "$HOSTNET" bench 192.168.69.1 --vs 10.69.0.2 \
        --label tapstack --vs-label kernel --rounds "$ROUNDS" --json "$@"
}

# The UDP / connect / concurrency run at MTU $1 (tapstack already on it);
# the other arguments go to hostnet bench.
run_latency() {
    local mtu=$1
    shift
    echo "bench.sh: MTU $mtu: udp round trip, connect rate, concurrency" >&2
    bench --only udp,connect,concurrency --count "$COUNT" --duration "$DURATION" \
        --clients "$CLIENTS" --size "$SIZE" --samples "$OUT/udp-rtt.tsv" "$@" \
        >"$OUT/latency-mtu$mtu.json" || status=1
    # The same concurrency measurement with one client: the yardstick for
    # the aggregate of $CLIENTS.
    echo "bench.sh: MTU $mtu: concurrency with 1 client" >&2
    bench --only concurrency --clients 1 --size "$SIZE" "$@" \
        >"$OUT/single-mtu$mtu.json" || status=1
    RAN_LATENCY=$mtu
}

# What the figures were taken on, for the docs.
describe_machine() {
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "memory: $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: Linux $(uname -r)"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "rustc: $(rustc --version)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings: MTUs $MTUS; $ROUNDS rounds; discard/chargen $ONEWAY_SIZE; echo $SIZE; $COUNT datagrams; connect $DURATION; $CLIENTS clients; tapstack pool $POOL${STACK_ARGS:+; tapstack $STACK_ARGS}"
}

if [[ $REPORT_ONLY != 1 ]]; then
    trap cleanup EXIT
    echo "bench.sh: building release binaries" >&2
    cargo build --release --quiet -p hostnet --bin hostnet
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    HOSTNET=$TARGET_DIR/release/hostnet
    # tapstack with a pool of $POOL connections per echo/upper-case service
    # (a build-time setting), so the concurrency run has a slot per client;
    # in a target directory of its own, the default build untouched.
    TAPSTACK_POOL=$POOL CARGO_TARGET_DIR=$TARGET_DIR/pool$POOL \
        cargo build --release --quiet -p tapstack --bin tapstack
    TAPSTACK=$TARGET_DIR/pool$POOL/release/tapstack

    mkdir -p "$OUT"
    rm -f "$OUT"/mtu-*.json "$OUT"/latency-*.json "$OUT"/tapstack-mtu*.log "$OUT"/udp-rtt.tsv \
        "$OUT"/single-*.json "$OUT"/throughput.tsv "$OUT"/summary.txt "$OUT"/serve.log "$OUT"/machine.txt "$OUT"/settings.env
    describe_machine >"$OUT/machine.txt"
    sed 's/^/bench.sh: /' "$OUT/machine.txt" >&2
    make_namespaces

    for mtu in $MTUS; do
        start_stack_at "$mtu"
        echo "bench.sh: MTU $mtu: discard, chargen, tcp echo; $ROUNDS rounds each, alternating" >&2
        bench --only tcp,discard,chargen --oneway-size "$ONEWAY_SIZE" --size "$SIZE" "$@" \
            >"$OUT/mtu-$mtu.json" || status=1
        if [[ $mtu == "$LATENCY_MTU" ]]; then
            run_latency "$mtu" "$@"
        fi
    done
    if [[ $LATENCY_MTU != none && $RAN_LATENCY == 0 ]]; then
        start_stack_at "$LATENCY_MTU"
        run_latency "$LATENCY_MTU" "$@"
    fi
    stop_stack
    # What REPORT_ONLY=1 needs to draw this run again.
    printf 'MTUS="%s"\nROUNDS=%s\nCOUNT=%s\nRAN_LATENCY=%s\nstatus=%s\n' \
        "$MTUS" "$ROUNDS" "$COUNT" "$RAN_LATENCY" "$status" >"$OUT/settings.env"
else
    # shellcheck source=/dev/null
    . "$OUT/settings.env" # MTUS, ROUNDS, COUNT, RAN_LATENCY, status of that run
fi

# ---------------------------------------------------------------------------
# The summary: one row per MTU and measurement, medians in Gbit/s.
# ---------------------------------------------------------------------------

# The median Gbit/s of measurement $2 ("discard", "chargen", "tcp") for
# target $3 (0 tapstack, 1 kernel) in file $1; "-" when not measured.
gbits() {
    jq -r --arg m "$2" --argjson t "$3" \
        '.targets[$t][$m].bits_per_second_median // empty | . / 1e9' "$1" 2>/dev/null |
        awk 'NF { printf "%.2f\n", $1; found = 1 } END { if (!found) print "-" }'
}

{
    grep -E '^(cpu|kernel|commit):' "$OUT/machine.txt"
    echo
    printf '%-6s %-24s %10s %10s %7s  %s\n' MTU measurement tapstack kernel ratio "target (discard, chargen)"
    printf '# mtu\tdiscard_tapstack\tdiscard_kernel\tchargen_tapstack\tchargen_kernel\techo_tapstack\techo_kernel\n' \
        >"$OUT/throughput.tsv"
    for mtu in $MTUS; do
        file=$OUT/mtu-$mtu.json
        row=("$mtu")
        for m in discard chargen tcp; do
            a=$(gbits "$file" "$m" 0)
            b=$(gbits "$file" "$m" 1)
            ratio=-
            [[ $a != - && $b != - ]] && ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')
            goal=
            if [[ $m != tcp ]]; then
                if [[ -n ${TARGET[$mtu]:-} ]]; then
                    goal="at least ${TARGET[$mtu]} Gbit/s: "
                    goal+=$(awk -v a="$a" -v t="${TARGET[$mtu]}" 'BEGIN { print (a != "-" && a + 0 >= t) ? "met" : "NOT MET" }')
                elif ((mtu > 9000)); then
                    goal="no collapse"
                fi
            fi
            case $m in
                discard) name="discard, host to stack" ;;
                chargen) name="chargen, stack to host" ;;
                tcp) name="tcp echo, both ways" ;;
            esac
            printf '%-6s %-24s %10s %10s %7s  %s\n' "$mtu" "$name" "$a" "$b" "$ratio" "$goal"
            row+=("${a/-/NaN}" "${b/-/NaN}")
        done
        (IFS=$'\t'; echo "${row[*]}") >>"$OUT/throughput.tsv"
    done
    echo "Gbit/s = 8 x payload bytes / s; medians of $ROUNDS rounds; ratio = tapstack / kernel"
    if [[ $RAN_LATENCY != 0 ]]; then
        file=$OUT/latency-mtu$RAN_LATENCY.json
        echo
        printf '%-34s %15s %15s %7s\n' "at MTU $RAN_LATENCY" tapstack kernel ratio
        jq -r '
            def us: if . == null then "-" else . end;
            def cell(f): [.targets[0], .targets[1]] | map(f);
            [["udp round trip p50, µs", cell(.udp.p50_us | us), .ratio.udp_p50],
             ["  p90", cell(.udp.p90_us | us), .ratio.udp_p90],
             ["  p99", cell(.udp.p99_us | us), .ratio.udp_p99],
             ["  max", cell(.udp.max_us | us), .ratio.udp_max],
             ["  lost", cell(.udp | "\(.lost) of \(.sent)"), null],
             ["connect rate, /s", cell(.connect.per_second // null | if . == null then "-" else round end), .ratio.connect_rate],
             ["  refused", cell(.connect | "\(.refused) of \(.attempts)"), null],
             ["concurrency, \(.settings.clients) clients, Gbit/s", cell(.concurrency.bytes_per_second // null | if . == null then "-" else . * 8 / 1e9 * 100 | round / 100 end), .ratio.concurrency_throughput]]
            | .[] | [.[0], (.[1][0] | tostring), (.[1][1] | tostring),
                     (if .[2] == null then "" else .[2] * 1000 | round / 1000 | tostring end)]
            | @tsv' "$file" 2>/dev/null |
            while IFS=$'\t' read -r name a b r; do
                # %-*s pads bytes, and µs is one character in two bytes.
                pad=34
                [[ $name == *µs* ]] && pad=35
                printf '%-*s %15s %15s %7s\n' "$pad" "$name" "$a" "$b" "$r"
            done
    fi
    single=$OUT/single-mtu$RAN_LATENCY.json
    if [[ $RAN_LATENCY != 0 && -s $single ]]; then
        # Aggregate of all clients over the one client's throughput, per target.
        jq -r -n --slurpfile many "$OUT/latency-mtu$RAN_LATENCY.json" --slurpfile one "$single" '
            def gb: if . == null then "-" else . * 8 / 1e9 * 100 | round / 100 end;
            [$one[0].targets[0].concurrency.bytes_per_second, $one[0].targets[1].concurrency.bytes_per_second] as $o
            | [$many[0].targets[0].concurrency.bytes_per_second, $many[0].targets[1].concurrency.bytes_per_second] as $m
            | ["concurrency, 1 client, Gbit/s", ($o[0] | gb), ($o[1] | gb)],
              ["  \($many[0].settings.clients) clients / 1 client",
               (if $o[0] and $m[0] then $m[0] / $o[0] * 100 | round / 100 else "-" end),
               (if $o[1] and $m[1] then $m[1] / $o[1] * 100 | round / 100 else "-" end)]
            | @tsv' 2>/dev/null |
            while IFS=$'\t' read -r name a b; do
                printf '%-34s %15s %15s\n' "$name" "$a" "$b"
            done
    fi
    for f in "$OUT"/mtu-*.json "$OUT"/latency-*.json "$OUT"/single-*.json; do
        [[ -e $f ]] || continue
        jq -r --arg f "$(basename "$f" .json)" \
            '.targets[] | .label as $l | .failures[] | "\($f): \($l): \(.measurement): \(.message)"' "$f" 2>/dev/null || true
    done
} >"$OUT/summary.txt"

# ---------------------------------------------------------------------------
# Charts: throughput by MTU (grouped bars), UDP round trips (CDF).
# ---------------------------------------------------------------------------

if [[ $CHARTS != 0 ]]; then
    mkdir -p "$IMAGES"
    # The issue's targets as dashes over the groups they apply to.
    arrows=
    i=0
    for mtu in $MTUS; do
        if [[ -n ${TARGET[$mtu]:-} ]]; then
            arrows+="set arrow from $i-0.45,${TARGET[$mtu]} to $i+0.45,${TARGET[$mtu]} nohead dt 2 lw 1.5 lc rgb '#333333' front;"
            arrows+="set label 'target ${TARGET[$mtu]}' at $i+0.45,${TARGET[$mtu]} left offset 0.3,0.4 font ',10' front;"
        fi
        i=$((i + 1))
    done
    gnuplot <<EOF
set terminal svg size 900,480 dynamic enhanced font 'sans,12' background rgb 'white'
set output '$IMAGES/bench-throughput-by-mtu.svg'
set title 'TCP throughput by MTU: tapstack (solid) and the Linux kernel (light), medians of $ROUNDS rounds'
set datafile separator '\t'
set style data histogram
set style histogram cluster gap 1
set style fill solid 1.0 border rgb '#444444'
set boxwidth 0.9
set ylabel 'Gbit/s (8 x payload bytes / s)'
set xlabel 'MTU, bytes'
set yrange [0:*]
set grid ytics lc rgb '#dddddd'
set key outside right top vertical
set xtics nomirror scale 0
$arrows
plot '$OUT/throughput.tsv' using 2:xtic(1) title 'discard, tapstack' lc rgb '#1f77b4', \
     '' using 3 title 'discard, kernel' lc rgb '#aec7e8', \
     '' using 4 title 'chargen, tapstack' lc rgb '#d62728', \
     '' using 5 title 'chargen, kernel' lc rgb '#ff9896', \
     '' using 6 title 'tcp echo, tapstack' lc rgb '#2ca02c', \
     '' using 7 title 'tcp echo, kernel' lc rgb '#98df8a'
EOF
    if [[ -s $OUT/udp-rtt.tsv ]]; then
        datagram=$(jq -r '.settings.datagram_size' "$OUT/latency-mtu$RAN_LATENCY.json" 2>/dev/null || echo '?')
        gnuplot <<EOF
set terminal svg size 900,480 dynamic enhanced font 'sans,12' background rgb 'white'
set output '$IMAGES/bench-udp-rtt.svg'
set title 'UDP round trips at MTU $RAN_LATENCY, $COUNT datagrams of $datagram bytes one at a time: share answered within a time'
set datafile separator '\t'
set logscale x
set xlabel 'round-trip time, µs (log scale)'
set ylabel 'share of datagrams'
set yrange [0:1]
set ytics 0.1
set grid xtics ytics mxtics lc rgb '#dddddd'
set key right bottom
plot '$OUT/udp-rtt.tsv' using (strcol(1) eq 'tapstack' ? \$2 : NaN):(1) smooth cnormal lw 2 lc rgb '#1f77b4' title 'tapstack', \
     '' using (strcol(1) eq 'kernel' ? \$2 : NaN):(1) smooth cnormal lw 2 lc rgb '#ff7f0e' title 'kernel'
EOF
    fi
    echo "bench.sh: charts in $IMAGES/bench-throughput-by-mtu.svg and $IMAGES/bench-udp-rtt.svg" >&2
fi

echo "bench.sh: raw results in $OUT/" >&2
if [[ ${JSON:-0} == 1 ]]; then
    runs=()
    for f in "$OUT"/mtu-*.json "$OUT"/latency-*.json; do [[ -e $f ]] && runs+=("$f"); done
    jq -n --arg machine "$(cat "$OUT/machine.txt")" \
        '{machine: $machine, runs: [inputs | {file: input_filename} + .]}' "${runs[@]}"
else
    cat "$OUT/summary.txt"
fi
exit "$status"
