#!/usr/bin/env bash
# tests/run-in-netns.sh: the test phase of `make test`. Everything is already built; this starts
# the local cluster and runs all tests (unit, cluster, interop) inside a new network namespace whose
# only interface is loopback, then stops the cluster even on failure. Interface counters of the
# host's non-loopback interfaces are recorded before and after as evidence that nothing left
# loopback. Output: target/test-output.log and a summary on stdout.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"
mkdir -p target
LOG=${ROBOFLEET_TEST_LOG:-$REPO/target/test-output.log}

counters() { # "iface rx_bytes tx_bytes rx_packets tx_packets" for every non-loopback interface
  ip -s -j link | python3 -c '
import json, sys
for i in json.load(sys.stdin):
    if i["ifname"] == "lo": continue
    s = i.get("stats64", {})
    print(i["ifname"], s["rx"]["bytes"], s["tx"]["bytes"], s["rx"]["packets"], s["tx"]["packets"])'
}

if [[ ${ROBOFLEET_IN_NETNS:-0} != 1 ]]; then
  BIN=$(tests/cluster/build.sh)
  before=$(counters)
  start=$SECONDS
  ROBOFLEET_IN_NETNS=1 ROBOFLEET_CLUSTER_BIN=$BIN unshare --map-root-user --net "$0" "$@" 2>&1 | tee "$LOG"
  rc=${PIPESTATUS[0]}
  after=$(counters)
  echo "== test phase took $((SECONDS - start)) s"
  if [[ $before == "$after" ]]; then
    echo "== non-loopback interface counters unchanged across the test phase:"
    sed 's/^/   /' <<<"$after"
  else
    echo "== non-loopback interface counters CHANGED during the test phase (other processes on this"
    echo "   machine also use the network; the tests themselves ran in a namespace with only lo):"
    diff <(echo "$before") <(echo "$after") | sed 's/^/   /'
    if [[ ${ROBOFLEET_NET_CHECK:-report} == strict ]]; then rc=1; fi
  fi
  python3 "$HERE/summarize.py" "$LOG"
  exit "$rc"
fi

# ---- inside the namespace
ip link set lo up
ip link set lo multicast on   # DDS discovery over loopback multicast stays inside this namespace
ifaces=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
if [[ $ifaces != "lo " ]]; then echo "network namespace has more than loopback: $ifaces" >&2; exit 1; fi
echo "== network namespace interfaces: $ifaces"

trap 'tests/cluster/down.sh' EXIT
# The pod runner (built by `make build-tests`) runs robofleet-operator pods' binaries on the robots.
export ROBOFLEET_POD_RUNNER=${ROBOFLEET_POD_RUNNER:-${CARGO_TARGET_DIR:-$REPO/target}/debug/pod-runner}
if ! tests/cluster/up.sh >/dev/null; then echo "cluster did not start" >&2; exit 1; fi
# shellcheck disable=SC1091
source "$ROBOFLEET_CLUSTER_STATE/env"
kubectl get nodes -o wide
cargo test --workspace --offline --no-fail-fast -- --include-ignored
