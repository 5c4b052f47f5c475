#!/usr/bin/env bash
# Generate N SIP users with passwords for the REGISTER load scenarios.
#
#   tuning/make-users.sh N [PREFIX] [--order SEQUENTIAL|RANDOM] [--seed S] [--accounts FILE] > users.csv
#   tuning/make-users.sh --from users.csv --format accounts|sipp|kamailio-htable > FILE
#
# Default output (stdout): a sipp injection file (`-inf`): first line SEQUENTIAL (or RANDOM), then
# one `user;password` line per user (field0 = user, field1 = password). Users are PREFIX followed by
# a zero-padded number (PREFIX default `u`: u000001 ...), passwords 16 hex digits drawn from a
# seeded generator (--seed, default 1), so the same arguments always give the same file.
#
# --accounts FILE also writes the matching sipshard accounts CSV (`user,password`, the format of
# `[registrar] accounts_file`). --from converts an existing injection file instead of generating:
# `accounts` (sipshard CSV), `sipp` (copy, with --order applied), `kamailio-htable` (a db_text table
# `htable` for Kamailio's htable module: key_name = user, key_value = password).
# Generated files belong in tuning/out/ (git-ignored).
set -euo pipefail

die() { echo "make-users.sh: $*" >&2; exit 2; }
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

n= prefix=u order=SEQUENTIAL seed=1 accounts= from= format=sipp
pos=()
while [ $# -gt 0 ]; do
    case $1 in
    --order) order=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --accounts) accounts=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --format) format=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) pos+=("$1"); shift ;;
    esac
done
case $order in SEQUENTIAL | RANDOM) ;; *) die "--order must be SEQUENTIAL or RANDOM" ;; esac
case $format in sipp | accounts | kamailio-htable) ;; *) die "--format must be sipp, accounts or kamailio-htable" ;; esac
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer"

# `user;password` lines on stdout, from the arguments or from --from.
pairs() {
    if [ -n "$from" ]; then
        [ -r "$from" ] || die "cannot read $from"
        # Skip the SEQUENTIAL/RANDOM/USER line and comments; keep the first two fields.
        awk -F';' 'NR == 1 && $0 ~ /^(SEQUENTIAL|RANDOM|USER)/ { next } /^#/ || NF < 2 { next }
            { print $1 ";" $2 }' "$from"
    else
        awk -v n="$n" -v prefix="$prefix" -v seed="$seed" 'BEGIN {
            srand(seed)
            w = length(n "") < 6 ? 6 : length(n "")
            for (i = 1; i <= n; i++)
                printf "%s%0*d;%08x%08x\n", prefix, w, i, int(rand() * 4294967296), int(rand() * 4294967296)
        }'
    fi
}

if [ -z "$from" ]; then
    [ ${#pos[@]} -ge 1 ] || { usage >&2; die "N is required"; }
    n=${pos[0]}
    [ ${#pos[@]} -ge 2 ] && prefix=${pos[1]}
    [[ $n =~ ^[0-9]+$ && $n -gt 0 && $n -le 10000000 ]] || die "N must be 1..10000000"
    [[ $prefix =~ ^[A-Za-z0-9._+-]*$ ]] || die "PREFIX may hold letters, digits and . _ + - only"
else
    [ ${#pos[@]} -eq 0 ] || die "--from takes no N/PREFIX"
fi

# Read (or generate) the users once: --from may be a pipe.
data=$(pairs)
[ -n "$data" ] || die "no users${from:+ in $from}"
emit() {
    case $1 in
    sipp) echo "$order"; echo "$data" ;;
    accounts) echo "# user,password (sipshard [registrar] accounts_file)"; echo "$data" | tr ';' ',' ;;
    kamailio-htable)
        # db_text: a header line of typed columns, then `:`-separated rows (user and password
        # hold no `:`). key_type 0 = single key, value_type 0 = string value, expires 0 = never.
        echo "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)"
        echo "$data" | awk -F';' '{ printf "%d:%s:0:0:%s:0\n", NR, $1, $2 }' ;;
    esac
}

if [ -n "$accounts" ]; then
    emit accounts >"$accounts"
fi
emit "$format"
