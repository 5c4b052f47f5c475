#!/usr/bin/env bash
# Drive a running sipshard with sipp at a fixed rate for a fixed time, then report what happened:
# achieved rate, successful/failed calls, retransmissions, unexpected messages, the server's CPU
# microseconds per SIP message (and per registration), and UDP receive-buffer drops. Loopback only;
# bounded in calls (rate x duration) and time; stops by itself. See tuning/README.md.
#
#   tuning/load.sh [--target 127.0.0.1:5060] [--scenario options] [--rate 1000] [--duration 10]
#                  [--users users.csv] [--procs 1] [--pid PID[,PID...]] [--recv-timeout 5]
#                  [--sipp-cpu N] [--out DIR] [-- extra sipp args]
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
users=
procs=1
local_port=16000
extra=()

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  -t, --target HOST:PORT   server address (loopback only)            [127.0.0.1:5060]
  -s, --scenario NAME      options, register, register_auth (call: when its XML exists) [options]
      --scenario-file F    use this sipp XML instead of tuning/NAME.xml
  -r, --rate N             calls per second, all sipp processes together [1000]
  -d, --duration S         seconds of load; total calls = rate x duration [10]
  -u, --users FILE         sipp injection CSV (-inf; tuning/make-users.sh); required by
                           register and register_auth. With --procs N it is dealt out
                           round-robin so every sipp process registers its own users
  -P, --procs N            N sipp processes in parallel, each rate/N and its own
                           local port; results are summed                [1]
      --local-port BASE    first local UDP port for sipp (next free ones after it) [16000]
  -p, --pid PID[,PID...]   server process(es) (default: pgrep -o -x sipshard); their
                           descendants (forked workers, e.g. Kamailio's) are counted too
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
    -u | --users) users=$2; shift 2 ;;
    -P | --procs) procs=$2; shift 2 ;;
    --local-port) local_port=$2; shift 2 ;;
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
[[ $procs =~ ^[0-9]+$ && $procs -ge 1 && $procs -le 64 ]] || die "--procs must be 1..64"
[ "$rate" -ge "$procs" ] || die "--rate must be at least --procs (each sipp process needs >= 1 call/s)"
[[ $local_port =~ ^[0-9]+$ && $local_port -ge 1024 && $local_port -le 65000 ]] || die "--local-port must be 1024..65000"

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
    options | register | register_auth | call) scenario_file=$here/$scenario.xml ;;
    *) die "unknown scenario '$scenario' (options, register, register_auth, call)" ;;
    esac
fi
is_reg=0
[[ $scenario == register* ]] && is_reg=1
if [ -n "$users" ]; then
    [ -r "$users" ] || die "cannot read users file $users"
    users=$(cd "$(dirname "$users")" && pwd)/$(basename "$users")
    head -1 "$users" | grep -Eq '^(SEQUENTIAL|RANDOM|USER)' ||
        die "$users is not a sipp injection file (first line SEQUENTIAL, RANDOM or USER...)"
    nusers=$(awk 'NR > 1 && NF && !/^#/' "$users" | wc -l)
    [ "$nusers" -ge "$procs" ] || die "$users has $nusers users, fewer than --procs $procs"
elif grep -q '\[field[0-9]' "$scenario_file" 2>/dev/null; then
    die "scenario $(basename "$scenario_file") takes users from an injection file: give --users FILE (tuning/make-users.sh N > tuning/out/users.csv)"
fi
[ -f "$scenario_file" ] || die "scenario file $scenario_file not found (scenario '$scenario' not written yet?)"
scenario_file=$(cd "$(dirname "$scenario_file")" && pwd)/$(basename "$scenario_file")

pid=${pid//,/ }
if [ -z "$pid" ]; then
    pids=$(pgrep -x sipshard || true)
    if [ -n "$pids" ]; then
        pid=$(pgrep -o -x sipshard)
        [ "$(wc -w <<<"$pids")" -gt 1 ] && echo "load.sh: several sipshard processes; measuring the oldest, $pid" >&2
    else
        echo "load.sh: no sipshard process found and no --pid: CPU figures will be NA" >&2
    fi
fi
for p in $pid; do
    [[ $p =~ ^[0-9]+$ ]] || die "--pid takes process ids, got '$p'"
    [ -r "/proc/$p/stat" ] || die "no process $p"
done

[ -n "$out" ] || out=$here/out/$scenario-$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- Counters -----------------------------------------------------------------------------------
# utime+stime (fields 14, 15) of all the process's threads, in clock ticks. The command name (field
# 2) may hold spaces, so count fields after its closing parenthesis.
proc_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    awk '{ print $12 + $13 }' <<<"$s"
}

# The measured processes: the given pids and all their descendants (Kamailio forks its workers;
# sipshard is one process with threads).
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

# Snapshot "pid ticks" lines for the measured processes.
snapshot() {
    local p t
    for p in $(server_tree); do
        t=$(proc_ticks "$p") && echo "$p $t"
    done
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

# A free local UDP port at or after $1 for each sipp process (never the target's).
port_in_use() { [ "$1" = "$port" ] || [ -n "$(ss -Hlnu "sport = :$1" 2>/dev/null)" ]; }
next_port=$local_port

# One directory per sipp process: $out itself for one, $out/p<i> for several.
dirs=()
for ((i = 0; i < procs; i++)); do
    if [ "$procs" -eq 1 ]; then d=$out; else d=$out/p$i; fi
    mkdir -p "$d"
    dirs+=("$d")
done

# Deal the users out round-robin, one injection file per process, same first line.
inf=()
if [ -n "$users" ]; then
    if [ "$procs" -eq 1 ]; then
        inf=("$users")
    else
        awk -v n="$procs" -v out="$out" 'NR == 1 { for (i = 0; i < n; i++) print > (out "/p" i "/users.csv"); next }
            !NF || /^#/ { next } { print > (out "/p" (k++ % n) "/users.csv") }' "$users"
        for ((i = 0; i < procs; i++)); do inf+=("$out/p$i/users.csv"); done
    fi
fi

cmds=()
for ((i = 0; i < procs; i++)); do
    d=${dirs[$i]}
    r_i=$((rate / procs + (i < rate % procs ? 1 : 0)))
    m_i=$((total / procs + (i < total % procs ? 1 : 0)))
    while port_in_use "$next_port"; do next_port=$((next_port + 1)); done
    lp=$next_port
    next_port=$((next_port + 1))
    cmd=(sipp "$remote" -sf "$scenario_file" -i "$local_ip" -p "$lp" -t u1
        -r "$r_i" -m "$m_i" -timeout "${global_timeout}s" -recv_timeout "$((recv_timeout * 1000))"
        -buff_size 4194304 -nostdin
        -trace_stat -stf "$d/stat.csv" -fd 1
        -trace_counts -trace_screen -screen_file "$d/screen.log" -trace_err)
    [ -n "$users" ] && cmd+=(-inf "${inf[$i]}")
    # A registration that gets an unexpected reply just fails: no BYE into a call that never was.
    [ "$is_reg" = 1 ] && cmd+=(-default_behaviors all,-bye)
    [ ${#extra[@]} -gt 0 ] && cmd+=("${extra[@]}")
    [ -n "$sipp_cpu" ] && cmd=(taskset -c "$sipp_cpu" "${cmd[@]}")
    printf '%q ' "${cmd[@]}" >"$d/command.txt"
    echo >>"$d/command.txt"
    cmds+=("$(cat "$d/command.txt")")
done
[ "$procs" -gt 1 ] && printf '%s\n' "${cmds[@]}" >"$out/command.txt"

echo "load.sh: $scenario at $rate/s for ${duration}s ($total calls, $procs sipp process(es)) -> $host:$port; server pid ${pid:-NA}; files in $out" >&2

# Stop our sipp processes if we are interrupted (each also has its own timeout(1) guard).
sipp_pids=()
cleanup() {
    local p
    for p in "${sipp_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

snap0=$(snapshot)
rcvbuf0=$(udp_snmp RcvbufErrors)
inerr0=$(udp_snmp InErrors)
drops0=$(sock_drops)
t0=$(date +%s.%N)

for ((i = 0; i < procs; i++)); do
    d=${dirs[$i]}
    eval "cmd=(${cmds[$i]})"
    (cd "$d" && exec timeout -k 5 $((global_timeout + 10)) "${cmd[@]}" >"$d/sipp.out" 2>&1) &
    sipp_pids+=($!)
done
rcs=()
for p in "${sipp_pids[@]}"; do
    set +e
    wait "$p"
    rcs+=($?)
    set -e
done
sipp_pids=()

t1=$(date +%s.%N)
snap1=$(snapshot)
rcvbuf1=$(udp_snmp RcvbufErrors)
inerr1=$(udp_snmp InErrors)
drops1=$(sock_drops)

# sipp exit code: 0 when every process had 0, else the largest.
sipp_rc=0
for rc in "${rcs[@]}"; do [ "$rc" -gt "$sipp_rc" ] && sipp_rc=$rc; done

for ((i = 0; i < procs; i++)); do
    d=${dirs[$i]}
    counts=$(ls "$d"/*_counts.csv 2>/dev/null | head -1 || true)
    if [ ! -s "$d/stat.csv" ] || [ -z "$counts" ]; then
        tail -5 "$d/sipp.out" >&2 || true
        die "sipp process $i wrote no statistics (rc=${rcs[$i]}); see $d/sipp.out"
    fi
done

# Server CPU: per process, end minus start (a process that ended counts up to its last reading,
# i.e. nothing after the start snapshot; one that appeared counts whole).
cpu_delta=NA
if [ -n "$pid" ]; then
    cpu_delta=$(awk 'FNR == NR { a[$1] = $2; next } { b[$1] = $2 }
        END { for (p in b) d += b[p] - ((p in a) ? a[p] : 0); print d + 0 }' <(echo "$snap0") <(echo "$snap1"))
fi
server_procs=$(awk 'NF' <<<"$snap1" | wc -l)
# Per process: pid, CPU ticks during the run, command name (server_cpu.txt in the out directory).
if [ -n "$pid" ]; then
    awk 'FNR == NR { a[$1] = $2; next } { print $1, $2 - (($1 in a) ? a[$1] : 0) }' \
        <(echo "$snap0") <(echo "$snap1") | while read -r p t; do
        echo "$p $t $(cat "/proc/$p/comm" 2>/dev/null || echo '?') $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60)"
    done >"$out/server_cpu.txt"
fi

# Last line of a ;-separated sipp CSV as name=value lines.
csv_last() {
    awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next } { last = $0 }
        END { n = split(last, v, ";"); for (i = 1; i <= n; i++) if (h[i] != "") print h[i] "=" v[i] }' "$1"
}
get() { awk -F= -v k="$1" '$1 == k { print $2; exit }' <<<"$stats"; }
# ResponseTime1(C) is HH:MM:SS:microseconds; as microseconds.
rtt_us() { awk -F: 'NF == 4 { printf "%.0f", ($1 * 3600 + $2 * 60 + $3) * 1e6 + $4; exit } { print 0 }' <<<"$1"; }

# Sum the sipp processes' counters (the response time is averaged, weighted by successful calls).
success=0 failed=0 created=0 achieved=0 retrans=0 out_of_call=0 msgs_in=0 msgs_out=0 unexpected=0
rtt_sum=0
for ((i = 0; i < procs; i++)); do
    d=${dirs[$i]}
    stats=$(csv_last "$d/stat.csv")
    s_i=$(get 'SuccessfulCall(C)')
    success=$((success + ${s_i:-0}))
    f_i=$(get 'FailedCall(C)')
    failed=$((failed + ${f_i:-0}))
    c_i=$(get 'OutgoingCall(C)')
    created=$((created + ${c_i:-0}))
    achieved=$(awk -v a="$achieved" -v b="$(get 'CallRate(C)')" 'BEGIN { s = a + b; print (s == int(s)) ? s : sprintf("%.3f", s) }')
    r_i=$(get 'Retransmissions(C)')
    retrans=$((retrans + ${r_i:-0}))
    ooc=$(get 'OutOfCallMsgs(C)')
    dead=$(get 'DeadCallMsgs(C)')
    out_of_call=$((out_of_call + ${ooc:-0} + ${dead:-0}))
    rtt_sum=$(awk -v a="$rtt_sum" -v n="${s_i:-0}" -v t="$(rtt_us "$(get 'ResponseTime1(C)')")" 'BEGIN { printf "%.0f", a + n * t }')

    # Per-message counts: <n>_<msg>_Sent/_Retrans (send rows: messages the server received) and
    # <n>_<msg>_Recv/_Retrans/_Unexp (recv rows: messages the server sent).
    counts=$(ls "$d"/*_counts.csv | head -1)
    read -r in_i out_i unexp_i < <(csv_last "$counts" | awk -F= '
        $1 ~ /_Sent$/ { kind = "send"; to_server += $2 }
        $1 ~ /_Recv$/ { kind = "recv"; from_server += $2 }
        $1 ~ /_Retrans$/ { if (kind == "send") to_server += $2; else from_server += $2 }
        $1 ~ /_Unexp$/ { unexp += $2 }
        END { print to_server + 0, from_server + unexp, unexp + 0 }')
    msgs_in=$((msgs_in + in_i))
    msgs_out=$((msgs_out + out_i))
    unexpected=$((unexpected + unexp_i))
done
msgs_out=$((msgs_out + out_of_call))
# Requests the kernel dropped on the server's sockets never reached it: not handled.
sdrops=$((drops1 - drops0))
msgs=$((msgs_in - sdrops + msgs_out))
[ "$msgs" -ge 0 ] || msgs=0

tck=$(getconf CLK_TCK)
read -r wall cpu_us per_msg per_call per_reg <<<"$(awk -v t0="$t0" -v t1="$t1" -v dt="$cpu_delta" \
    -v tck="$tck" -v msgs="$msgs" -v calls="$((success + failed))" -v ok="$success" -v reg="$is_reg" 'BEGIN {
        wall = t1 - t0
        if (dt == "NA") { printf "%.3f NA NA NA NA\n", wall; exit }
        us = dt * 1e6 / tck
        printf "%.3f %d %s %s %s\n", wall, us, (msgs ? sprintf("%.2f", us / msgs) : "NA"),
            (calls ? sprintf("%.2f", us / calls) : "NA"), (reg && ok ? sprintf("%.2f", us / ok) : "NA") }')"

if [ "$success" -gt 0 ]; then
    rtt_ms=$(awk -v s="$rtt_sum" -v n="$success" 'BEGIN { printf "%.3f", s / n / 1000 }')
else
    rtt_ms=none
fi

cat >&2 <<EOF
--- load.sh result ($out)
calls: $created created of $total, $success successful, $failed failed, $((total - success - failed)) not completed
rate: target $rate/s, achieved $achieved/s (sipp), wall ${wall}s
messages: $msgs_in to server, $msgs_out from server, $msgs handled by it; retransmissions $retrans; unexpected $unexpected; out-of-call/dead $out_of_call
server cpu: ${cpu_us} us total over $server_procs process(es), ${per_msg} us/message, ${per_call} us/call, ${per_reg} us/successful registration (clock tick $((1000000 / tck)) us)
udp drops: RcvbufErrors +$((rcvbuf1 - rcvbuf0)) (whole host), InErrors +$((inerr1 - inerr0)), server socket drops +$sdrops
response time: avg ${rtt_ms} ms; sipp exit code $sipp_rc (per process: ${rcs[*]})
EOF
echo "scenario=$scenario target=$remote rate=$rate duration=$duration procs=$procs calls=$total created=$created" \
    "success=$success failed=$failed incomplete=$((total - success - failed)) achieved_cps=$achieved" \
    "retrans=$retrans unexpected=$unexpected out_of_call=$out_of_call msgs_in=$msgs_in msgs_out=$msgs_out msgs=$msgs" \
    "server_pid=$(tr ' ' ',' <<<"${pid:-NA}") server_procs=$server_procs cpu_us=$cpu_us cpu_us_per_msg=$per_msg" \
    "cpu_us_per_call=$per_call cpu_us_per_reg=$per_reg" \
    "rcvbuf_errors=$((rcvbuf1 - rcvbuf0)) udp_in_errors=$((inerr1 - inerr0)) server_sock_drops=$sdrops" \
    "rtt_avg_ms=$rtt_ms wall_s=$wall sipp_rc=$sipp_rc out=$out"
