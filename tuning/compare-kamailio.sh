#!/usr/bin/env bash
# Same workload against Kamailio and against sipshard, in one run, on this machine: server CPU per
# successful registration (REGISTER scenarios) or per call (`calls`: sipp uac -> server -> sipp uas)
# for each, from /proc (Kamailio: all its processes), and the ratio.
# Loopback only; every load run bounded (tuning/load.sh, tuning/calls.sh); each server is started
# here, in the foreground under timeout(1), and stopped after its run, also on error or Ctrl-C.
#
#   tuning/compare-kamailio.sh [--scenario register|register_auth|both|calls|all] [--rate 2000]
#                              [--duration 60] [--procs 2] [--users 10000 | --users-file FILE]
#                              [--servers kamailio,sipshard] [--gw-port 5090]
#
# The last lines of output are, per scenario, one `compare ...` line of key=value pairs; before them
# each server's load.sh summary line, prefixed with `kamailio ` or `sipshard `. See tuning/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

scenarios=both
rate=2000
duration=60
procs=2
nusers=10000
users_file=
servers=kamailio,sipshard
kam_port=5070
ss_port=5080
kam_cfg=$here/kamailio/register.cfg
kam_proxy_cfg=$here/kamailio/proxy.cfg
gw_port=5090
call_ms=0
kam_shm=256
kam_pkg=64
ss_bin=$repo/target/release/sipshard
ss_shards=2
ss_config=
sipp_cpu=
recv_timeout=5
target_ratio=3
out=

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  -s, --scenario S       register, register_auth, both (the two REGISTER ones),
                         calls, or all                                        [both]
  -r, --rate N           registrations (or calls) per second                 [2000]
  -d, --duration S       seconds of load per server and scenario             [60]
  -P, --procs N          sipp processes in parallel                          [2]
      --users N          generate N users (tuning/make-users.sh)             [10000]
      --users-file F     use this sipp injection CSV instead (user;password)
      --servers LIST     kamailio, sipshard or both, comma-separated         [kamailio,sipshard]
      --kam-port P       Kamailio's UDP port on 127.0.0.1                    [5070]
      --kam-cfg F        Kamailio config                  [tuning/kamailio/register.cfg]
      --kam-proxy-cfg F  Kamailio config for calls           [tuning/kamailio/proxy.cfg]
      --gw-port P        calls: UDP port of the sipp uas gateway on 127.0.0.1  [5090]
      --call-ms MS       calls: talk time between ACK and BYE                [0]
      --kam-mem SHM,PKG  Kamailio -m (shared) and -M (per process) MB        [256,64]
      --sipshard-port P  sipshard's UDP port on 127.0.0.1                    [5080]
      --sipshard-bin F   sipshard binary                  [target/release/sipshard]
      --sipshard-shards N  shards (Kamailio runs 2 workers)                  [2]
      --sipshard-config F  use this config instead of the generated one (listen/shards
                         are still overridden on the command line)
      --sipp-cpu N       pin sipp to CPU N (load.sh --sipp-cpu)
      --recv-timeout S   a registration with no reply for S seconds fails    [5]
      --target-ratio X   required Kamailio/sipshard CPU ratio for verdict=pass [3]
  -o, --out DIR          files              [tuning/out/compare-<time>-<pid>]
  -h, --help
EOF
}
die() { echo "compare-kamailio.sh: $*" >&2; exit 2; }
say() { echo "compare-kamailio.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case $1 in
    -s | --scenario) scenarios=$2; shift 2 ;;
    -r | --rate) rate=$2; shift 2 ;;
    -d | --duration) duration=$2; shift 2 ;;
    -P | --procs) procs=$2; shift 2 ;;
    --users) nusers=$2; shift 2 ;;
    --users-file) users_file=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --kam-port) kam_port=$2; shift 2 ;;
    --kam-cfg) kam_cfg=$2; shift 2 ;;
    --kam-proxy-cfg) kam_proxy_cfg=$2; shift 2 ;;
    --gw-port) gw_port=$2; shift 2 ;;
    --call-ms) call_ms=$2; shift 2 ;;
    --kam-mem) kam_shm=${2%,*}; kam_pkg=${2#*,}; shift 2 ;;
    --sipshard-port) ss_port=$2; shift 2 ;;
    --sipshard-bin) ss_bin=$2; shift 2 ;;
    --sipshard-shards) ss_shards=$2; shift 2 ;;
    --sipshard-config) ss_config=$2; shift 2 ;;
    --sipp-cpu) sipp_cpu=$2; shift 2 ;;
    --recv-timeout) recv_timeout=$2; shift 2 ;;
    --target-ratio) target_ratio=$2; shift 2 ;;
    -o | --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case $scenarios in
both) scenarios="register register_auth" ;;
all) scenarios="register register_auth calls" ;;
register | register_auth | calls) ;;
*) die "--scenario must be register, register_auth, both, calls or all" ;;
esac
has_reg=0
[[ $scenarios == *register* ]] && has_reg=1
[[ $call_ms =~ ^[0-9]+$ ]] || die "--call-ms must be a whole number of milliseconds"
for n in "$rate" "$duration" "$procs" "$kam_port" "$ss_port" "$recv_timeout" "$kam_shm" "$kam_pkg" "$ss_shards" "$gw_port"; do
    [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || die "expected a positive integer, got '$n'"
done
[ "$kam_port" != "$ss_port" ] || die "Kamailio and sipshard need different ports"
[[ $scenarios != *calls* ]] || { [ "$gw_port" != "$kam_port" ] && [ "$gw_port" != "$ss_port" ]; } ||
    die "the gateway port must differ from the servers' ports"
run_kam=0 run_ss=0
for s in ${servers//,/ }; do
    case $s in kamailio) run_kam=1 ;; sipshard) run_ss=1 ;; *) die "unknown server '$s'" ;; esac
done
for p in "$kam_port" "$ss_port" $([[ $scenarios == *calls* ]] && echo "$gw_port"); do
    [ -z "$(ss -Hlnu "sport = :$p" 2>/dev/null)" ] || die "UDP port $p is already in use on this host"
done
command -v sipp >/dev/null || die "sipp not found (apt-get install sip-tester)"
if [ "$run_kam" = 1 ]; then
    command -v kamailio >/dev/null || die "kamailio not found (apt-get install kamailio)"
    [ -r "$kam_cfg" ] || die "no Kamailio config $kam_cfg"
    kam_cfg=$(cd "$(dirname "$kam_cfg")" && pwd)/$(basename "$kam_cfg")
    [ -r "$kam_proxy_cfg" ] || die "no Kamailio config $kam_proxy_cfg"
    kam_proxy_cfg=$(cd "$(dirname "$kam_proxy_cfg")" && pwd)/$(basename "$kam_proxy_cfg")
fi

[ -n "$out" ] || out=$here/out/compare-$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Every server we start runs under timeout(1) (a guard even if this script is killed hard) and is
# stopped by stop_server; the trap stops whatever is still running.
guard_s=$((duration + recv_timeout + 120 + call_ms / 1000))
guard_pid=
server_pid=
load_pid=
stop_load() {
    [ -n "$load_pid" ] || return 0
    kill -TERM "$load_pid" 2>/dev/null || true # load.sh stops its sipp processes
    wait "$load_pid" 2>/dev/null || true
    load_pid=
}
stop_server() {
    [ -n "$guard_pid" ] || return 0
    local p=$guard_pid i
    guard_pid=
    # timeout(1) passes TERM on to the server; Kamailio's main process then stops its children.
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
        say "server did not stop in 5 s; killing it"
        local victims="$p"
        if [ -n "$server_pid" ]; then
            victims="$victims $server_pid $(pgrep -P "$server_pid" | tr '\n' ' ')"
        fi
        for i in $victims; do kill -KILL "$i" 2>/dev/null || true; done
    fi
    wait "$p" 2>/dev/null || true
}
trap 'stop_load; stop_server' EXIT
trap 'stop_load; stop_server; exit 130' INT TERM

# Start "$@" under the guard; wait until something listens on UDP port $1 (first argument).
# Sets guard_pid and server_pid (the server process itself, child of timeout).
start_server() {
    local port=$1 log=$2 i
    shift 2
    timeout -k 5 "$guard_s" "$@" >"$log" 2>&1 &
    guard_pid=$!
    server_pid=
    for i in $(seq 100); do
        kill -0 "$guard_pid" 2>/dev/null || { tail -20 "$log" >&2; die "server exited at start-up; see $log"; }
        [ -z "$server_pid" ] && server_pid=$(pgrep -P "$guard_pid" | head -1 || true)
        [ -n "$server_pid" ] && [ -n "$(ss -Hlnu "sport = :$port" 2>/dev/null)" ] && break
        sleep 0.1
    done
    [ -n "$server_pid" ] && [ -n "$(ss -Hlnu "sport = :$port" 2>/dev/null)" ] ||
        { tail -20 "$log" >&2; die "server not listening on UDP $port after 10 s; see $log"; }
    sleep 0.5 # let the workers finish their start-up
}

# --- Users: one injection CSV, and the same users for both servers -------------------------------
if [ "$has_reg" = 0 ]; then
    nusers=0
    say "calls only: no users; Kamailio $(kamailio -v 2>/dev/null | awk '/^version:/ { print $3; exit }' || echo '?'); files in $out"
elif [ -n "$users_file" ]; then
    [ -r "$users_file" ] || die "cannot read $users_file"
    cp "$users_file" "$out/users.csv"
else
    [[ $nusers =~ ^[0-9]+$ && $nusers -gt 0 ]] || die "--users must be a positive integer"
    "$here/make-users.sh" "$nusers" >"$out/users.csv"
fi
if [ "$has_reg" = 1 ]; then
    "$here/make-users.sh" --from "$out/users.csv" --format accounts >"$out/accounts.csv"
    mkdir -p "$out/kamdb"
    "$here/make-users.sh" --from "$out/users.csv" --format kamailio-htable >"$out/kamdb/htable"
    nusers=$(grep -vc '^#' "$out/accounts.csv")
    say "$nusers users in $out/users.csv; Kamailio $(kamailio -v 2>/dev/null | awk '/^version:/ { print $3; exit }' || echo '?'); files in $out"
fi

kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print substr($0, length(k) + 2); exit }'; }

# Run load.sh in the background and wait for it (a signal to this script is then handled at
# once, not after the run); print its summary line.
load() { # server scenario port pid
    if [ "$2" = calls ]; then
        load_calls "$@"
        return
    fi
    local args=(-t "127.0.0.1:$3" -s "$2" -r "$rate" -d "$duration" -P "$procs" -p "$4"
        -u "$out/users.csv" --recv-timeout "$recv_timeout" -o "$out/$1-$2")
    [ -n "$sipp_cpu" ] && args+=(--sipp-cpu "$sipp_cpu")
    echo "tuning/load.sh ${args[*]}" >"$out/$1-$2.command"
    "$here/load.sh" "${args[@]}" >"$out/$1-$2.result" 2>"$out/$1-$2.stderr" &
    load_pid=$!
    wait "$load_pid" || true
    load_pid=
    tail -1 "$out/$1-$2.result"
}

# Calls: tuning/calls.sh starts the sipp uas gateway on $gw_port and the uac against the server.
load_calls() { # server scenario port pid
    local args=(-t "127.0.0.1:$3" -g "$gw_port" -r "$rate" -d "$duration" -p "$4"
        --call-ms "$call_ms" --recv-timeout "$recv_timeout" -o "$out/$1-calls")
    [ -n "$sipp_cpu" ] && args+=(--sipp-cpu "$sipp_cpu")
    echo "tuning/calls.sh ${args[*]}" >"$out/$1-calls.command"
    "$here/calls.sh" "${args[@]}" >"$out/$1-calls.result" 2>"$out/$1-calls.stderr" &
    load_pid=$!
    wait "$load_pid" || true
    load_pid=
    tail -1 "$out/$1-calls.result"
}

# --- sipshard config -----------------------------------------------------------------------------
# One config per scenario: the accounts, MD5 challenges (sipp answers MD5 only), no per-source
# rate limit (all the load comes from 127.0.0.1); for the no-auth scenario `require_auth = "Off"`,
# the same work as Kamailio's `save("location")` without auth.
ss_note=
calls_note=
if [ "$run_ss" = 1 ]; then
    if [ ! -x "$ss_bin" ]; then
        say "no sipshard binary at $ss_bin (cargo build --release): skipping sipshard"
        run_ss=0
        ss_note=no_binary
    else
        for scen in $scenarios; do
            cfg_file="$out/sipshard-$scen.toml"
            if [ "$scen" = calls ] && [ -z "$ss_config" ]; then
                # Every call from 127.0.0.1 is a trusted peer's, routed to the one gateway; the
                # CDR writer runs, as it would in production.
                printf '%s\n' "[log]" "level = \"warn\"" "" "[cdr]" "path = \"$out/sipshard-cdr.csv\"" "" \
                    "[[gateways]]" "name = \"gw1\"" "address = \"127.0.0.1:$gw_port\"" "" \
                    "[[routes]]" "prefix = \"\"" "gateways = [\"gw1\"]" "" \
                    "[[peers]]" "name = \"loadgen\"" "address = \"127.0.0.1\"" >"$cfg_file"
                if ! "$ss_bin" check-config "$cfg_file" >"$out/sipshard-check-calls.txt" 2>&1; then
                    say "sipshard rejects $cfg_file ($(head -1 "$out/sipshard-check-calls.txt")): no proxy core in this build? no sipshard call figure"
                    calls_note=no_proxy_core
                fi
                continue
            elif [ -n "$ss_config" ]; then
                [ -r "$ss_config" ] || die "cannot read $ss_config"
                cp "$ss_config" "$cfg_file"
            else
                require_auth=On
                [ "$scen" = register ] && require_auth=Off
                printf '%s\n' "[log]" "level = \"warn\"" "" "[registrar]" \
                    "accounts_file = \"$out/accounts.csv\"" "digest_algorithms = [\"MD5\"]" \
                    "rate_limit_per_source = 0" "trusted_sources = [\"127.0.0.0/8\"]" \
                    "require_auth = \"$require_auth\"" >"$cfg_file"
            fi
            "$ss_bin" check-config "$cfg_file" >"$out/sipshard-check.txt" 2>&1 ||
                die "sipshard rejects $cfg_file: $(head -1 "$out/sipshard-check.txt")"
        done
    fi
fi

# --- Runs ----------------------------------------------------------------------------------------
declare -A res=()
for scen in $scenarios; do
    if [ "$run_kam" = 1 ]; then
        kargs=(kamailio -f "$kam_cfg" -DD -E -x tlsf -X tlsf -m "$kam_shm" -M "$kam_pkg" -A "KAM_PORT=$kam_port")
        [ "$scen" = register_auth ] && kargs+=(-A WITH_AUTH -A "KAM_USERS_DB=\"text://$out/kamdb\"")
        [ "$scen" = calls ] && kargs=(kamailio -f "$kam_proxy_cfg" -DD -E -x tlsf -X tlsf -m "$kam_shm"
            -M "$kam_pkg" -A "KAM_PORT=$kam_port" -A "KAM_GW=\"sip:127.0.0.1:$gw_port\"")
        printf '%q ' "${kargs[@]}" >"$out/kamailio-$scen.command"
        echo >>"$out/kamailio-$scen.command"
        say "$scen: starting Kamailio on 127.0.0.1:$kam_port"
        start_server "$kam_port" "$out/kamailio-$scen.log" "${kargs[@]}"
        say "$scen: Kamailio pid $server_pid ($(pgrep -P "$server_pid" | wc -l) children); load $rate/s for ${duration}s"
        load kamailio "$scen" "$kam_port" "$server_pid" >"$out/line"
        line=$(cat "$out/line")
        stop_server
        [ -n "$line" ] || { tail -5 "$out/kamailio-$scen.stderr" >&2; die "load.sh failed against Kamailio; see $out/kamailio-$scen.stderr"; }
        echo "kamailio $line"
        res[kamailio-$scen]=$line
    fi
    if [ "$run_ss" = 1 ] && ! { [ "$scen" = calls ] && [ -n "$calls_note" ]; }; then
        sargs=("$ss_bin" run --config "$out/sipshard-$scen.toml" --listen "127.0.0.1:$ss_port" --shards "$ss_shards")
        printf '%q ' "${sargs[@]}" >"$out/sipshard-$scen.command"
        echo >>"$out/sipshard-$scen.command"
        say "$scen: starting sipshard on 127.0.0.1:$ss_port"
        start_server "$ss_port" "$out/sipshard-$scen.log" "${sargs[@]}"
        say "$scen: sipshard pid $server_pid; load $rate/s for ${duration}s"
        load sipshard "$scen" "$ss_port" "$server_pid" >"$out/line"
        line=$(cat "$out/line")
        stop_server
        [ -n "$line" ] || { tail -5 "$out/sipshard-$scen.stderr" >&2; die "load.sh failed against sipshard; see $out/sipshard-$scen.stderr"; }
        echo "sipshard $line"
        res[sipshard-$scen]=$line
    fi
done

# --- Comparison ----------------------------------------------------------------------------------
# A run is clean when every registration (call) succeeded with no retransmission (and, for calls,
# no unexpected message).
clean() {
    [ "$(kv "$1" success)" = "$(kv "$1" calls)" ] && [ "$(kv "$1" failed)" = 0 ] && [ "$(kv "$1" retrans)" = 0 ] &&
        { [ "$(kv "$1" unexpected)" = "" ] || [ "$(kv "$1" unexpected)" = 0 ]; }
}
for scen in $scenarios; do
    k=${res[kamailio-$scen]:-} s=${res[sipshard-$scen]:-}
    note=${ss_note:-none}
    if [ "$scen" = calls ]; then
        [ -n "$calls_note" ] && note=$calls_note
        ratio=NA verdict=NA
        kus=$( [ -n "$k" ] && kv "$k" cpu_us_per_call || echo NA)
        sus=$( [ -n "$s" ] && kv "$s" cpu_us_per_call || echo NA)
        if [[ $kus =~ ^[0-9.]+$ && $sus =~ ^[0-9.]+$ ]] && awk -v s="$sus" 'BEGIN { exit !(s > 0) }'; then
            ratio=$(awk -v k="$kus" -v s="$sus" 'BEGIN { printf "%.2f", k / s }')
            if clean "$k" && clean "$s"; then
                verdict=$(awk -v r="$ratio" -v t="$target_ratio" 'BEGIN { print (r >= t) ? "pass" : "fail" }')
            else
                verdict=unclean_run
            fi
        fi
        g() { [ -n "$1" ] && kv "$1" "$2" || echo NA; }
        echo "compare scenario=calls rate=$rate duration=$duration call_ms=$call_ms" \
            "kamailio_success=$(g "$k" success) kamailio_failed=$(g "$k" failed) kamailio_unexpected=$(g "$k" unexpected)" \
            "kamailio_retrans=$(g "$k" retrans) kamailio_procs=$(g "$k" server_procs) kamailio_cpu_us=$(g "$k" cpu_us)" \
            "kamailio_us_per_call=$kus sipshard_success=$(g "$s" success) sipshard_failed=$(g "$s" failed)" \
            "sipshard_unexpected=$(g "$s" unexpected) sipshard_retrans=$(g "$s" retrans) sipshard_cpu_us=$(g "$s" cpu_us)" \
            "sipshard_us_per_call=$sus ratio=$ratio target_ratio=$target_ratio verdict=$verdict note=$note out=$out"
        continue
    fi
    if [ -n "$s" ] && [ "$(kv "$s" success)" = 0 ] &&
        grep -qs 'SIP/2.0 405' "$out/sipshard-$scen"/*errors.log "$out/sipshard-$scen"/p*/*errors.log; then
        note=sipshard_answers_405
        say "$scen: sipshard answered 405 Method Not Allowed: no registrar in this build yet, so no sipshard figure"
    elif [ "$scen" = register ] && [ -n "$s" ] && [ "$(kv "$s" success)" = 0 ] &&
        grep -qs 'SIP/2.0 401' "$out/sipshard-$scen"/*errors.log "$out/sipshard-$scen"/p*/*errors.log; then
        # Digest accounts are always challenged; sipshard's ip/ip_port accounts each need their own
        # source address (or address:port), so N users from one sipp address cannot register
        # without credentials.
        note=sipshard_challenges_noauth
        say "$scen: sipshard answered 401: its accounts (digest) always need credentials; no sipshard figure without auth"
    fi
    ratio=NA verdict=NA
    kus=$( [ -n "$k" ] && kv "$k" cpu_us_per_reg || echo NA)
    sus=$( [ -n "$s" ] && kv "$s" cpu_us_per_reg || echo NA)
    if [[ $kus =~ ^[0-9.]+$ && $sus =~ ^[0-9.]+$ ]] && awk -v s="$sus" 'BEGIN { exit !(s > 0) }'; then
        ratio=$(awk -v k="$kus" -v s="$sus" 'BEGIN { printf "%.2f", k / s }')
        if clean "$k" && clean "$s"; then
            verdict=$(awk -v r="$ratio" -v t="$target_ratio" 'BEGIN { print (r >= t) ? "pass" : "fail" }')
        else
            verdict=unclean_run
        fi
    fi
    f() { [ -n "$1" ] && kv "$1" "$2" || echo NA; }
    echo "compare scenario=$scen rate=$rate duration=$duration procs=$procs users=$nusers" \
        "kamailio_success=$(f "$k" success) kamailio_failed=$(f "$k" failed) kamailio_retrans=$(f "$k" retrans)" \
        "kamailio_procs=$(f "$k" server_procs) kamailio_cpu_us=$(f "$k" cpu_us) kamailio_us_per_reg=$kus" \
        "sipshard_success=$(f "$s" success) sipshard_failed=$(f "$s" failed) sipshard_retrans=$(f "$s" retrans)" \
        "sipshard_cpu_us=$(f "$s" cpu_us) sipshard_us_per_reg=$sus" \
        "ratio=$ratio target_ratio=$target_ratio verdict=$verdict note=$note out=$out"
done
