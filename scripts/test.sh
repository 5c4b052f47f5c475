#!/usr/bin/env bash
# Run every test of sipshard. Installs what the tests need on a fresh Debian machine (sipp, sipsak,
# chromium), then runs the whole cargo test suite (unit, property, black-box, RFC 4475 corpus; benches compile and
# run once in test mode). Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
command -v sipsak >/dev/null 2>&1 || need_pkgs+=(sipsak)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)  # the admin web page test (headless)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing ${need_pkgs[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing ${need_pkgs[*]} (Debian: apt-get install ${need_pkgs[*]});" \
         "tests that need sipp fail when CI=true" >&2
  fi
fi

if [ ! -d ../shared/testdata/rfc4475 ]; then
  echo "scripts/test.sh: ../shared/testdata/rfc4475 is missing; the RFC 4475 tests fail when CI=true" >&2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --profile ci --all-targets "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (benches run once in test mode and print no summary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"
