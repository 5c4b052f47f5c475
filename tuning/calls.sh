#!/usr/bin/env bash
# Call load through a proxy: `sipp -sn uas` plays the gateway on one port, `sipp -sn uac` calls
# through the proxy under test (sipshard or Kamailio) at a fixed rate for a fixed time; then report
# calls attempted/succeeded/failed, unexpected messages, retransmissions (both sipp sides), and the
# server's CPU microseconds per call from /proc/PID/stat (utime+stime, with all descendants).
# Loopback only; bounded in calls (rate x duration) and time; stops both sipp processes by itself.
#
#   tuning/calls.sh [--target 127.0.0.1:5060] [--gateway-port 5090] [--rate 200] [--duration 10]
#                   [--limit N] [--call-ms 0] [--pid PID] [--out DIR] [-- extra uac sipp args]
#
# The last line of output is the summary as space-separated key=value pairs. See tuning/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

target=127.0.0.1:5060
gw_port=5090
rate=200
duration=10
limit=
call_ms=0
service=5551234
pid=
recv_timeout=5
sipp_cpu=
out=
local_port=16000
extra=()

usage() {
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  -t, --target HOST:PORT   the proxy under test (loopback only)              [127.0.0.1:5060]
  -g, --gateway-port P     UDP port of the sipp uas "gateway" on 127.0.0.1; the proxy must
                           route the calls there                              [5090]
  -r, --rate N             new calls per second                               [200]
  -d, --duration S         seconds of load; total calls = rate x duration     [10]
  -l, --limit N            most calls open at once (sipp -l)     [sipp's default: 3 x rate x call length]
      --call-ms MS         talk time between ACK and BYE (sipp -d)            [0]
      --service NUM        called number (Request-URI user, sipp -s)          [5551234]
  -p, --pid PID[,PID...]   server process(es); descendants are counted too
                           (default: pgrep -o -x sipshard)
      --recv-timeout S     a call waiting S seconds for an expected message fails [5]
      --local-port BASE    first local UDP port for the uac (next free one)   [16000]
      --sipp-cpu N         pin both sipp processes to CPU N (taskset)
  -o, --out DIR            sipp's files            [tuning/out/calls-<time>-<pid>]
  -h, --help
EOF
}
die() {
    echo "calls.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    -t | --target) target=$2; shift 2 ;;
    -g | --gateway-port) gw_port=$2; shift 2 ;;
    -r | --rate) rate=$2; shift 2 ;;
    -d | --duration) duration=$2; shift 2 ;;
    -l | --limit) limit=$2; shift 2 ;;
    --call-ms) call_ms=$2; shift 2 ;;
    --service) service=$2; shift 2 ;;
    -p | --pid) pid=$2; shift 2 ;;
    --recv-timeout) recv_timeout=$2; shift 2 ;;
    --local-port) local_port=$2; shift 2 ;;
    --sipp-cpu) sipp_cpu=$2; shift 2 ;;
    -o | --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# --- Checks -------------------------------------------------------------------------------------
command -v sipp >/dev/null || die "sipp not found (Debian/Ubuntu: apt-get install sip-tester)"
for n in "$rate" "$duration" "$recv_timeout" "$gw_port"; do
    [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || die "expected a positive integer, got '$n'"
done
[[ $call_ms =~ ^[0-9]+$ ]] || die "--call-ms must be a whole number of milliseconds"
[ -z "$limit" ] || [[ $limit =~ ^[0-9]+$ && $limit -gt 0 ]] || die "--limit must be a positive integer"
[[ $service =~ ^[0-9A-Za-z.+_-]+$ ]] || die "--service must be a plain number or token"
host=${target%:*}
port=${target##*:}
[[ $port =~ ^[0-9]+$ ]] || die "target must be HOST:PORT, got '$target'"
case $host in
127.*) ;;
localhost) host=127.0.0.1 ;;
*) die "refusing non-loopback target '$host' (this is a lab tool)" ;;
esac
[ "$gw_port" != "$port" ] || die "the gateway port must differ from the target's"
[ -z "$(ss -Hlnu "sport = :$gw_port" 2>/dev/null)" ] || die "UDP port $gw_port (gateway) is already in use"

pid=${pid//,/ }
if [ -z "$pid" ]; then
    pid=$(pgrep -o -x sipshard || true)
    [ -n "$pid" ] || echo "calls.sh: no sipshard process found and no --pid: CPU figures will be NA" >&2
fi
for p in $pid; do
    [[ $p =~ ^[0-9]+$ ]] || die "--pid takes process ids, got '$p'"
    [ -r "/proc/$p/stat" ] || die "no process $p"
done

[ -n "$out" ] || out=$here/out/calls-$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$out/uac" "$out/uas"
out=$(cd "$out" && pwd)

# --- Counters (as load.sh) ----------------------------------------------------------------------
proc_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    awk '{ print $12 + $13 }' <<<"$s"
}
server_tree() {
    [ -n "$pid" ] || return 0
    awk -v roots="$pid" 'BEGIN {
        n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1
        while (("ls /proc" | getline d) > 0) {
            if (d !~ /^[0-9]+$/) continue
            if ((getline line < ("/proc/" d "/stat")) > 0) {
                sub(/.*\) /, "", line); split(line, f, " "); parent[d] = f[2]
            }
            close("/proc/" d "/stat")
        }
        do { changed = 0; for (c in parent) if (!(c in keep) && (parent[c] in keep)) { keep[c] = 1; changed = 1 } } while (changed)
        for (k in keep) print k }'
}
snapshot() {
    local p t
    for p in $(server_tree); do
        t=$(proc_ticks "$p") && echo "$p $t"
    done
}
sock_drops() {
    local hexport
    hexport=$(printf '%04X' "$1")
    cat /proc/net/udp /proc/net/udp6 2>/dev/null |
        awk -v p=":$hexport" '$2 ~ p"$" { d += $NF } END { print d + 0 }'
}
csv_last() {
    awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next } { last = $0 }
        END { n = split(last, v, ";"); for (i = 1; i <= n; i++) if (h[i] != "") print h[i] "=" v[i] }' "$1"
}
get() { awk -F= -v k="$1" '$1 == k { print $2; exit }' <<<"$2"; }

total=$((rate * duration))
global_timeout=$((duration + recv_timeout + 10 + call_ms / 1000))
guard=$((global_timeout + 20))

port_in_use() { [ "$1" = "$port" ] || [ "$1" = "$gw_port" ] || [ -n "$(ss -Hlnu "sport = :$1" 2>/dev/null)" ]; }
lp=$local_port
while port_in_use "$lp"; do lp=$((lp + 1)); done

pin=()
[ -n "$sipp_cpu" ] && pin=(taskset -c "$sipp_cpu")
uas_cmd=("${pin[@]}" sipp -sn uas -i 127.0.0.1 -p "$gw_port" -t u1 -nostdin -buff_size 4194304
    -timeout "$((guard))s" -trace_stat -stf "$out/uas/stat.csv" -fd 1 -trace_counts -trace_err
    -trace_screen -screen_file "$out/uas/screen.log")
uac_cmd=("${pin[@]}" sipp "$host:$port" -sn uac -s "$service" -i 127.0.0.1 -p "$lp" -t u1
    -r "$rate" -m "$total" -d "$call_ms" -timeout "${global_timeout}s" -recv_timeout "$((recv_timeout * 1000))"
    -nostdin -buff_size 4194304 -trace_stat -stf "$out/uac/stat.csv" -fd 1 -trace_counts -trace_err
    -trace_screen -screen_file "$out/uac/screen.log")
[ -n "$limit" ] && uac_cmd+=(-l "$limit")
[ ${#extra[@]} -gt 0 ] && uac_cmd+=("${extra[@]}")
{
    printf '%q ' "${uas_cmd[@]}"; echo
    printf '%q ' "${uac_cmd[@]}"; echo
} >"$out/command.txt"

echo "calls.sh: $total calls at $rate/s for ${duration}s -> $host:$port -> uas 127.0.0.1:$gw_port; server pid ${pid:-NA}; files in $out" >&2

uas_pid=
uac_pid=
cleanup() {
    [ -n "$uac_pid" ] && kill -TERM "$uac_pid" 2>/dev/null || true
    [ -n "$uas_pid" ] && kill -TERM "$uas_pid" 2>/dev/null || true
    [ -n "$uac_pid" ] && wait "$uac_pid" 2>/dev/null || true
    [ -n "$uas_pid" ] && wait "$uas_pid" 2>/dev/null || true
    uac_pid= uas_pid=
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# The gateway first; wait (bounded) until it listens.
(cd "$out/uas" && exec timeout -k 5 "$guard" "${uas_cmd[@]}" >"$out/uas/sipp.out" 2>&1) &
uas_pid=$!
for _ in $(seq 100); do
    [ -n "$(ss -Hlnu "sport = :$gw_port" 2>/dev/null)" ] && break
    kill -0 "$uas_pid" 2>/dev/null || { tail -5 "$out/uas/sipp.out" >&2; die "the uas exited at start-up"; }
    sleep 0.05
done
[ -n "$(ss -Hlnu "sport = :$gw_port" 2>/dev/null)" ] || die "the uas is not listening on $gw_port after 5 s"

snap0=$(snapshot)
drops0=$(sock_drops "$port")
t0=$(date +%s.%N)
(cd "$out/uac" && exec timeout -k 5 "$guard" "${uac_cmd[@]}" >"$out/uac/sipp.out" 2>&1) &
uac_pid=$!
set +e
wait "$uac_pid"
uac_rc=$?
set -e
uac_pid=
t1=$(date +%s.%N)
snap1=$(snapshot)
drops1=$(sock_drops "$port")
# The uas has nothing more to do once the uac is done (all calls ended or timed out).
kill -TERM "$uas_pid" 2>/dev/null || true
set +e
wait "$uas_pid"
set -e
uas_pid=

for side in uac uas; do
    [ -s "$out/$side/stat.csv" ] || { tail -5 "$out/$side/sipp.out" >&2; die "the $side wrote no statistics; see $out/$side/sipp.out"; }
done

cpu_delta=NA
if [ -n "$pid" ]; then
    cpu_delta=$(awk 'FNR == NR { a[$1] = $2; next } { b[$1] = $2 }
        END { for (p in b) d += b[p] - ((p in a) ? a[p] : 0); print d + 0 }' <(echo "$snap0") <(echo "$snap1"))
    awk 'FNR == NR { a[$1] = $2; next } { print $1, $2 - (($1 in a) ? a[$1] : 0) }' \
        <(echo "$snap0") <(echo "$snap1") | while read -r p t; do
        echo "$p $t $(cat "/proc/$p/comm" 2>/dev/null || echo '?')"
    done >"$out/server_cpu.txt"
fi
server_procs=$(awk 'NF' <<<"$snap1" | wc -l)

uac=$(csv_last "$out/uac/stat.csv")
uas=$(csv_last "$out/uas/stat.csv")
created=$(get 'OutgoingCall(C)' "$uac")
success=$(get 'SuccessfulCall(C)' "$uac")
failed=$(get 'FailedCall(C)' "$uac")
uas_calls=$(get 'IncomingCall(C)' "$uas")
uas_failed=$(get 'FailedCall(C)' "$uas")
retrans=$(($(get 'Retransmissions(C)' "$uac") + $(get 'Retransmissions(C)' "$uas")))
ooc=$(($(get 'OutOfCallMsgs(C)' "$uac") + $(get 'DeadCallMsgs(C)' "$uac") + $(get 'OutOfCallMsgs(C)' "$uas") + $(get 'DeadCallMsgs(C)' "$uas")))
unexp() {
    local f
    f=$(ls "$1"/*_counts.csv 2>/dev/null | head -1 || true)
    [ -n "$f" ] || { echo 0; return; }
    csv_last "$f" | awk -F= '$1 ~ /_Unexp$/ { u += $2 } END { print u + 0 }'
}
unexpected=$(($(unexp "$out/uac") + $(unexp "$out/uas")))
tck=$(getconf CLK_TCK)
read -r wall cpu_us per_call <<<"$(awk -v t0="$t0" -v t1="$t1" -v dt="$cpu_delta" -v tck="$tck" \
    -v calls="$((success + failed))" 'BEGIN {
        wall = t1 - t0
        if (dt == "NA") { printf "%.3f NA NA\n", wall; exit }
        us = dt * 1e6 / tck
        printf "%.3f %d %s\n", wall, us, (calls ? sprintf("%.2f", us / calls) : "NA") }')"

cat >&2 <<EOF
--- calls.sh result ($out)
calls: $created attempted of $total, $success succeeded, $failed failed, $((total - success - failed)) not completed; the gateway saw $uas_calls ($uas_failed failed there)
messages: unexpected $unexpected, retransmissions $retrans (uac + uas), out-of-call/dead $ooc
server cpu: $cpu_us us over $server_procs process(es), $per_call us per call (clock tick $((1000000 / tck)) us); server socket drops +$((drops1 - drops0))
wall ${wall}s; uac exit code $uac_rc
EOF
echo "scenario=calls target=$host:$port gateway=127.0.0.1:$gw_port rate=$rate duration=$duration calls=$total" \
    "created=$created success=$success failed=$failed incomplete=$((total - success - failed))" \
    "gateway_calls=$uas_calls gateway_failed=$uas_failed unexpected=$unexpected retrans=$retrans out_of_call=$ooc" \
    "server_pid=$(tr ' ' ',' <<<"${pid:-NA}") server_procs=$server_procs cpu_us=$cpu_us cpu_us_per_call=$per_call" \
    "server_sock_drops=$((drops1 - drops0)) wall_s=$wall sipp_rc=$uac_rc out=$out"
