#!/usr/bin/env bash
# Drive a running sipshard with sipp at a fixed rate for a fixed time, then report what happened:
# achieved rate, successful/failed calls, retransmissions, unexpected messages, the server's CPU
# microseconds per SIP message, and UDP receive-buffer drops. Loopback only; bounded in calls
# (rate x duration) and time; stops by itself. See tuning/README.md.
#
#   tuning/load.sh [--target 127.0.0.1:5060] [--scenario options] [--rate 1000] [--duration 10]
#                  [--pid PID] [--recv-timeout 5] [--sipp-cpu N] [--out DIR] [-- extra sipp args]
#
# The last line of output is the summary as space-separated key=value pairs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

target=127.0.0.1:5060
scenario=options
rate=1000
duration=10
pid=
recv_timeout=5
sipp_cpu=
out=
extra=()

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  -t, --target HOST:PORT   server address (loopback only)            [127.0.0.1:5060]
  -s, --scenario NAME      options (register, call: when their XML exists) [options]
      --scenario-file F    use this sipp XML instead of tuning/NAME.xml
  -r, --rate N             calls per second                          [1000]
  -d, --duration S         seconds of load; total calls = rate x duration [10]
  -p, --pid PID            server process (default: pgrep -o -x sipshard)
      --recv-timeout S     a call with no expected reply for S seconds fails [5]
      --sipp-cpu N         pin sipp to CPU N (taskset), away from the server
  -o, --out DIR            where sipp writes its files  [tuning/out/<scenario>-<time>]
  -h, --help
EOF
}

die() {
    echo "load.sh: $*" >&2
    exit 2
}

scenario_file=
while [ $# -gt 0 ]; do
    case $1 in
    -t | --target) target=$2; shift 2 ;;
    -s | --scenario) scenario=$2; shift 2 ;;
    --scenario-file) scenario_file=$2; shift 2 ;;
    -r | --rate) rate=$2; shift 2 ;;
    -d | --duration) duration=$2; shift 2 ;;
    -p | --pid) pid=$2; shift 2 ;;
    --recv-timeout) recv_timeout=$2; shift 2 ;;
    --sipp-cpu) sipp_cpu=$2; shift 2 ;;
    -o | --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# --- Checks -------------------------------------------------------------------------------------
command -v sipp >/dev/null || die "sipp not found (Debian/Ubuntu: apt-get install sip-tester)"
[[ $rate =~ ^[0-9]+$ && $rate -gt 0 ]] || die "--rate must be a positive integer"
[[ $duration =~ ^[0-9]+$ && $duration -gt 0 ]] || die "--duration must be a positive integer"
[[ $recv_timeout =~ ^[0-9]+$ && $recv_timeout -gt 0 ]] || die "--recv-timeout must be a positive integer"

host=${target%:*}
port=${target##*:}
host=${host#[}
host=${host%]}
[[ $port =~ ^[0-9]+$ ]] || die "target must be HOST:PORT, got '$target'"
case $host in
127.*) local_ip=$host ;;
localhost) host=127.0.0.1; local_ip=127.0.0.1 ;;
::1) local_ip=::1 ;;
*) die "refusing non-loopback target '$host' (this is a lab tool)" ;;
esac

if [ -z "$scenario_file" ]; then
    case $scenario in
    options | register | call) scenario_file=$here/$scenario.xml ;;
    *) die "unknown scenario '$scenario' (options, register, call)" ;;
    esac
fi
[ -f "$scenario_file" ] || die "scenario file $scenario_file not found (scenario '$scenario' not written yet?)"
scenario_file=$(cd "$(dirname "$scenario_file")" && pwd)/$(basename "$scenario_file")

if [ -z "$pid" ]; then
    pids=$(pgrep -x sipshard || true)
    if [ -n "$pids" ]; then
        pid=$(pgrep -o -x sipshard)
        [ "$(wc -w <<<"$pids")" -gt 1 ] && echo "load.sh: several sipshard processes; measuring the oldest, $pid" >&2
    else
        echo "load.sh: no sipshard process found and no --pid: CPU figures will be NA" >&2
    fi
fi
if [ -n "$pid" ] && [ ! -r "/proc/$pid/stat" ]; then
    die "no process $pid"
fi

[ -n "$out" ] || out=$here/out/$scenario-$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- Counters -----------------------------------------------------------------------------------
# utime+stime (fields 14, 15) of all the process's threads, in clock ticks. The command name (field
# 2) may hold spaces, so count fields after its closing parenthesis.
cpu_ticks() {
    [ -n "$pid" ] || { echo NA; return; }
    local s
    s=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo NA; return; }
    s=${s##*) }
    awk '{ print $12 + $13 }' <<<"$s"
}

# A column of the "Udp:" lines of /proc/net/snmp (namespace-wide).
udp_snmp() {
    awk -v col="$1" '$1 == "Udp:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == col) c = i; n = 1 } else print $c }' /proc/net/snmp
}

# Drops counted on the sockets bound to the target port (all SO_REUSEPORT shards), /proc/net/udp*.
sock_drops() {
    local hexport
    hexport=$(printf '%04X' "$port")
    cat /proc/net/udp /proc/net/udp6 2>/dev/null |
        awk -v p=":$hexport" 'NR > 0 && $2 ~ p"$" { d += $NF } END { print d + 0 }'
}

total=$((rate * duration))
# Every call ends within recv_timeout (it fails then); allow that plus a little after the last one.
global_timeout=$((duration + recv_timeout + 5))

remote=$host:$port
[[ $host == *:* ]] && remote="[$host]:$port"
sipp_cmd=(sipp "$remote" -sf "$scenario_file" -i "$local_ip" -t u1
    -r "$rate" -m "$total" -timeout "${global_timeout}s" -recv_timeout "$((recv_timeout * 1000))"
    -buff_size 4194304 -nostdin
    -trace_stat -stf "$out/stat.csv" -fd 1
    -trace_counts -trace_screen -screen_file "$out/screen.log" -trace_err)
[ ${#extra[@]} -gt 0 ] && sipp_cmd+=("${extra[@]}")
[ -n "$sipp_cpu" ] && sipp_cmd=(taskset -c "$sipp_cpu" "${sipp_cmd[@]}")
printf '%q ' "${sipp_cmd[@]}" >"$out/command.txt"
echo >>"$out/command.txt"

echo "load.sh: $scenario at $rate/s for ${duration}s ($total calls) -> $host:$port; server pid ${pid:-NA}; files in $out" >&2

cpu0=$(cpu_ticks)
rcvbuf0=$(udp_snmp RcvbufErrors)
inerr0=$(udp_snmp InErrors)
drops0=$(sock_drops)
t0=$(date +%s.%N)

set +e
(cd "$out" && timeout -k 5 $((global_timeout + 10)) "${sipp_cmd[@]}" >"$out/sipp.out" 2>&1)
sipp_rc=$?
set -e

t1=$(date +%s.%N)
cpu1=$(cpu_ticks)
rcvbuf1=$(udp_snmp RcvbufErrors)
inerr1=$(udp_snmp InErrors)
drops1=$(sock_drops)

stat=$out/stat.csv
counts=$(ls "$out"/*_counts.csv 2>/dev/null | head -1 || true)
if [ ! -s "$stat" ] || [ -z "$counts" ]; then
    tail -5 "$out/sipp.out" >&2 || true
    die "sipp wrote no statistics (rc=$sipp_rc); see $out/sipp.out"
fi

# Last line of a ;-separated sipp CSV as name=value lines.
csv_last() {
    awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next } { last = $0 }
        END { n = split(last, v, ";"); for (i = 1; i <= n; i++) if (h[i] != "") print h[i] "=" v[i] }' "$1"
}
get() { awk -F= -v k="$1" '$1 == k { print $2; exit }' <<<"$stats"; }
stats=$(csv_last "$stat")

success=$(get 'SuccessfulCall(C)')
failed=$(get 'FailedCall(C)')
created=$(get 'OutgoingCall(C)')
achieved=$(get 'CallRate(C)')
retrans=$(get 'Retransmissions(C)')
ooc=$(get 'OutOfCallMsgs(C)')
dead=$(get 'DeadCallMsgs(C)')
out_of_call=$((${ooc:-0} + ${dead:-0}))
rtt=$(get 'ResponseTime1(C)')

# Per-message counts: <n>_<msg>_Sent/_Retrans (send rows: messages the server received) and
# <n>_<msg>_Recv/_Retrans/_Unexp (recv rows: messages the server sent).
read -r msgs_in msgs_out unexpected < <(csv_last "$counts" | awk -F= '
    $1 ~ /_Sent$/ { kind = "send"; to_server += $2 }
    $1 ~ /_Recv$/ { kind = "recv"; from_server += $2 }
    $1 ~ /_Retrans$/ { if (kind == "send") to_server += $2; else from_server += $2 }
    $1 ~ /_Unexp$/ { unexp += $2 }
    END { print to_server + 0, from_server + unexp, unexp + 0 }')
msgs_out=$((msgs_out + out_of_call))
# Requests the kernel dropped on the server's sockets never reached it: not handled.
sdrops=$((drops1 - drops0))
msgs=$((msgs_in - sdrops + msgs_out))
[ "$msgs" -ge 0 ] || msgs=0

tck=$(getconf CLK_TCK)
read -r wall cpu_us per_msg per_call <<<"$(awk -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" \
    -v tck="$tck" -v msgs="$msgs" -v calls="$((success + failed))" 'BEGIN {
        wall = t1 - t0
        if (c0 == "NA" || c1 == "NA") { print wall, "NA", "NA", "NA"; exit }
        us = (c1 - c0) * 1e6 / tck
        printf "%.3f %d %s %s\n", wall, us, (msgs ? sprintf("%.2f", us / msgs) : "NA"),
            (calls ? sprintf("%.2f", us / calls) : "NA") }')"

# ResponseTime1(C) is HH:MM:SS:microseconds.
[ "$success" -gt 0 ] || rtt="none"
rtt_ms=$(awk -F: 'NF == 4 { printf "%.3f", ($1 * 3600 + $2 * 60 + $3) * 1000 + $4 / 1000; exit } { print "NA" }' <<<"$rtt")

cat >&2 <<EOF
--- load.sh result ($out)
calls: $created created of $total, $success successful, $failed failed, $((total - success - failed)) not completed
rate: target $rate/s, achieved $achieved/s (sipp), wall ${wall}s
messages: $msgs_in to server, $msgs_out from server, $msgs handled by it; retransmissions $retrans; unexpected $unexpected; out-of-call/dead $out_of_call
server cpu: ${cpu_us} us total, ${per_msg} us/message, ${per_call} us/call (clock tick $((1000000 / tck)) us)
udp drops: RcvbufErrors +$((rcvbuf1 - rcvbuf0)) (whole host), InErrors +$((inerr1 - inerr0)), server socket drops +$sdrops
response time: avg ${rtt_ms} ms; sipp exit code $sipp_rc
EOF
echo "scenario=$scenario target=$remote rate=$rate duration=$duration calls=$total created=$created" \
    "success=$success failed=$failed incomplete=$((total - success - failed)) achieved_cps=$achieved" \
    "retrans=$retrans unexpected=$unexpected out_of_call=$out_of_call msgs_in=$msgs_in msgs_out=$msgs_out msgs=$msgs" \
    "server_pid=${pid:-NA} cpu_us=$cpu_us cpu_us_per_msg=$per_msg cpu_us_per_call=$per_call" \
    "rcvbuf_errors=$((rcvbuf1 - rcvbuf0)) udp_in_errors=$((inerr1 - inerr0)) server_sock_drops=$sdrops" \
    "rtt_avg_ms=$rtt_ms wall_s=$wall sipp_rc=$sipp_rc out=$out"
