#!/usr/bin/env bash
# The management API at scale (issue 6, "Done when", last bullet). Starts sipshard (release build,
# require_auth Off) on free loopback ports, loads N distinct bindings with register_blaster.py,
# then, while tuning/load.sh keeps registering at RATE/s, measures
#   (a) GET /api/v1/registrations?limit=100: latency of SAMPLES requests (median and max),
#   (b) GET /api/v1/registrations/export.csv: time and rows (must equal the live count),
# and prints the sipp summary (0 failed registrations required). Bounded in time; stops what it
# started. Exit 0 only when every check passed. See tuning/README.md.
#
#   tuning/admin-bench.sh [--bindings 1000000] [--rate 2000] [--duration 60] [--shards 2]
#                         [--samples 20] [--blasters 2] [--bin PATH] [--out DIR] [--no-build]
#
# The last line of output is the summary as space-separated key=value pairs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

bindings=1000000
rate=2000
duration=60
shards=2
samples=20
blasters=2
bin=
out=
build=1

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() {
    echo "admin-bench.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    -n | --bindings) bindings=$2; shift 2 ;;
    -r | --rate) rate=$2; shift 2 ;;
    -d | --duration) duration=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    --blasters) blasters=$2; shift 2 ;;
    --bin) bin=$2; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    -o | --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

for v in bindings rate duration shards samples blasters; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "--$v must be a positive integer"
done
[ "$bindings" -le 10000000 ] || die "--bindings at most 10000000"
[ "$blasters" -le 16 ] || die "--blasters at most 16"
command -v sipp >/dev/null || die "sipp not found (Debian/Ubuntu: apt-get install sip-tester)"
command -v curl >/dev/null || die "curl not found"
command -v python3 >/dev/null || die "python3 not found"

if [ -z "$bin" ]; then
    bin=$root/target/release/sipshard
    if [ "$build" = 1 ]; then
        (cd "$root" && cargo build --release --bin sipshard) || die "cargo build --release failed"
    fi
fi
[ -x "$bin" ] || die "no sipshard binary at $bin (build with cargo build --release, or --bin PATH)"

[ -n "$out" ] || out=$here/out/admin-bench-$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$out"
out=$(cd "$out" && pwd)

# sipp refreshes the first min(N, rate x duration) users from this local port; the blaster
# gives those users this Contact port, so each refresh updates a binding (same AOR, same
# Contact URI) and the live count stays N: the export can be compared with it exactly.
free_udp_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
sipp_port=$(free_udp_port)
refreshed=$((rate * duration))
[ "$refreshed" -le "$bindings" ] || refreshed=$bindings

cat >"$out/sipshard.toml" <<EOF
[server]
listen = "127.0.0.1:0"
shards = $shards

[registrar]
require_auth = "Off"
rate_limit_per_source = 0
# The blaster's Contact port is not its source port (NAT detected): no keepalives to 1M bindings.
nat_keepalive_interval = 0

[cdr]
enabled = "Off"

[admin]
listen = "127.0.0.1:0"

[log]
level = "warn"
EOF

server_pid=
load_pid=
blaster_pids=()
cleanup() {
    local p
    for p in "${blaster_pids[@]}" $load_pid; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# The whole run is bounded: the server dies with this guard even if the script is killed hard.
guard=$((bindings / 2000 + duration * 3 + 600))
echo "admin-bench.sh: $bindings bindings, load $rate/s for ${duration}s, $shards shards; files in $out" >&2
timeout -k 5 "$guard" "$bin" run --config "$out/sipshard.toml" >"$out/server.out" 2>"$out/server.err" &
server_pid=$!
sip_addr= admin_addr=
for _ in $(seq 1 200); do
    admin_addr=$(sed -n 's/^sipshard admin listening on http \([^ ]*\).*/\1/p' "$out/server.out" | head -1)
    sip_addr=$(sed -n 's/^sipshard listening on udp \([^ ]*\).*/\1/p' "$out/server.out" | head -1)
    [ -n "$sip_addr" ] && [ -n "$admin_addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.err" >&2; die "sipshard did not start"; }
    sleep 0.1
done
[ -n "$sip_addr" ] || die "no ready line from sipshard in 20 s (see $out/server.err)"
api=http://$admin_addr

live() { curl -sf --max-time 30 "$api/api/v1/status" | python3 -c 'import json, sys; print(json.load(sys.stdin)["bindings_live"])'; }

# --- 1. Load the bindings --------------------------------------------------------------------
t0=$(date +%s.%N)
per=$(((bindings + blasters - 1) / blasters))
for ((i = 0; i < blasters; i++)); do
    first=$((i * per))
    count=$per
    [ $((first + count)) -le "$bindings" ] || count=$((bindings - first))
    [ "$count" -gt 0 ] || break
    # Users below $refreshed get sipp's port as their Contact port.
    cp=0
    (
        if [ "$first" -lt "$refreshed" ]; then
            n1=$((refreshed - first))
            [ "$n1" -le "$count" ] || n1=$count
            python3 "$here/register_blaster.py" --target "$sip_addr" --first "$first" --count "$n1" \
                --contact-port "$sipp_port" --max-seconds "$((bindings / 1000 + 120))" || exit 1
            first=$((first + n1))
            count=$((count - n1))
        fi
        if [ "$count" -gt 0 ]; then
            python3 "$here/register_blaster.py" --target "$sip_addr" --first "$first" --count "$count" \
                --contact-port "$cp" --max-seconds "$((bindings / 1000 + 120))" || exit 1
        fi
    ) >"$out/blaster$i.out" 2>&1 &
    blaster_pids+=($!)
done
blast_ok=1
for p in "${blaster_pids[@]}"; do wait "$p" || blast_ok=0; done
blaster_pids=()
t1=$(date +%s.%N)
cat "$out"/blaster*.out >&2
load_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
n_live=$(live)
echo "loaded: $n_live live bindings in ${load_s}s (blasters ok: $blast_ok)" >&2
[ "$blast_ok" = 1 ] && [ "$n_live" = "$bindings" ] || die "loading failed: $n_live of $bindings bindings live"

# --- 2. Keep registering with sipp ------------------------------------------------------------
users=$out/users.csv
awk -v n="$refreshed" 'BEGIN { print "SEQUENTIAL"; for (i = 0; i < n; i++) printf "b%07d;x\n", i }' >"$users"
"$here/load.sh" -t "$sip_addr" -s register -u "$users" -r "$rate" -d "$duration" \
    --local-port "$sipp_port" -p "$server_pid" -o "$out/sipp" >"$out/load.out" 2>"$out/load.err" &
load_pid=$!
# Let sipp get going (its first registrations answered) before measuring.
for _ in $(seq 1 100); do
    [ -n "$(ls "$out"/sipp/*_counts.csv 2>/dev/null)" ] && break
    kill -0 "$load_pid" 2>/dev/null || break
    sleep 0.1
done
sleep 1

# --- 3. (a) page latency, (b) export ------------------------------------------------------------
lat=()
for ((i = 0; i < samples; i++)); do
    t=$(curl -sf --max-time 30 -o "$out/page.json" -w '%{time_total}' "$api/api/v1/registrations?limit=100") ||
        die "GET /api/v1/registrations failed"
    lat+=("$t")
    sleep 0.25
done
rows_page=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["rows"]))' "$out/page.json")
read -r lat_median lat_max <<<"$(printf '%s\n' "${lat[@]}" | sort -g | awk '{ v[NR] = $1 * 1000 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.1f\n", m, v[NR] }')"
echo "page (limit=100, $rows_page rows): median ${lat_median} ms, max ${lat_max} ms over $samples samples" >&2

live_before=$(live)
export_s=$(curl -sf --max-time 600 -o "$out/export.csv" -w '%{time_total}' "$api/api/v1/registrations/export.csv") ||
    die "export failed"
live_after=$(live)
export_rows=$(($(wc -l <"$out/export.csv") - 1))
export_mb=$(awk -v b="$(stat -c %s "$out/export.csv")" 'BEGIN { printf "%.1f", b / 1048576 }')
load_running=0
kill -0 "$load_pid" 2>/dev/null && load_running=1
echo "export: $export_rows rows, ${export_mb} MiB in ${export_s}s; live $live_before before, $live_after after; sipp still running: $load_running" >&2
rm -f "$out/export.csv"

# --- 4. The sipp summary -----------------------------------------------------------------------
set +e
wait "$load_pid"
load_rc=$?
set -e
load_pid=
cat "$out/load.err" >&2
summary=$(tail -1 "$out/load.out")
kv() { tr ' ' '\n' <<<"$summary" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
sipp_success=$(kv success)
sipp_failed=$(kv failed)
sipp_calls=$(kv calls)

ok=1
[ "$export_rows" = "$live_before" ] && [ "$live_before" = "$live_after" ] && [ "$live_after" = "$bindings" ] || ok=0
[ "$load_rc" = 0 ] && [ "${sipp_failed:-1}" = 0 ] && [ "${sipp_success:-0}" = "${sipp_calls:-x}" ] || ok=0
[ "$load_running" = 1 ] || echo "admin-bench.sh: note: sipp ended before the export did (use a longer --duration)" >&2
result=$([ "$ok" = 1 ] && echo pass || echo FAIL)

echo "bindings=$bindings shards=$shards load_s=$load_s page_samples=$samples page_median_ms=$lat_median" \
    "page_max_ms=$lat_max export_rows=$export_rows live_before=$live_before live_after=$live_after" \
    "export_s=$export_s export_mib=$export_mb export_during_load=$load_running sipp_rate=$rate" \
    "sipp_duration=$duration sipp_calls=${sipp_calls:-NA} sipp_success=${sipp_success:-NA}" \
    "sipp_failed=${sipp_failed:-NA} sipp_rc=$load_rc result=$result out=$out"
[ "$ok" = 1 ]
