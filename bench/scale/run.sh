#!/usr/bin/env bash
# bench/scale/run.sh: the fleet-scale benchmark (docs/benchmarks.md, "Scale").
#
# Starts a local cluster with ROBOTS kwok robots and no pod runner (tests/cluster/up.sh) in a
# loopback-only network namespace, runs the release operator against 20 InferenceServices (5% of
# the robots each) and one SafetyPolicy on all robots, watches a steady window, then does the same
# placement with 21 plain DaemonSets handled by kube-controller-manager. Results: one JSON file.
#
# Knobs (environment):
#   ROBOTS    robots (default 1000, up to 10000)
#   STEADY    seconds watched after convergence (default 330: the longest requeue, 300 s, plus 30 s)
#   TIMEOUT   seconds allowed for each convergence wait (default 1200)
#   DEADLINE  seconds for the whole run inside the namespace, cluster start included (default 3600)
#   OUT       result file (default bench/scale/results/robots-$ROBOTS.json)
#   BENCH_STATE  cluster state directory (default: a new /tmp/robofleet-bench-scale.*)
#   KEEP_STATE=1 keeps the cluster state directory (logs, audit log) for inspection
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROBOTS=${ROBOTS:-1000}
STEADY=${STEADY:-330}
TIMEOUT=${TIMEOUT:-1200}
DEADLINE=${DEADLINE:-3600}
OUT=${OUT:-$REPO/bench/scale/results/robots-$ROBOTS.json}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/robofleet/target}

if [[ -z ${ROBOFLEET_BENCH_IN_NETNS:-} ]]; then
  # Build outside the namespace (cargo may need its lock and caches), then re-enter in a new one.
  cargo build --offline --release -p robofleet-operator --bin robofleet-operator >&2
  "$REPO/tests/cluster/build.sh" >/dev/null
  mkdir -p "$(dirname "$OUT")"
  exec unshare --map-root-user --net env ROBOFLEET_BENCH_IN_NETNS=1 OUT="$OUT" bash "$0" "$@"
fi

ip link set lo up
STATE=${BENCH_STATE:-$(mktemp -d /tmp/robofleet-bench-scale.XXXXXX)}
export ROBOFLEET_CLUSTER_STATE=$STATE
unset ROBOFLEET_POD_RUNNER   # operator pods stay Running and not Ready (kwok stage robofleet-pod-run)
cleanup() { KEEP_STATE=${KEEP_STATE:-0} "$REPO/tests/cluster/down.sh" >&2 || true; }
trap cleanup EXIT
echo "[run] load average before: $(cat /proc/loadavg)" >&2
# up.sh waits for the robots with `kubectl wait --for=condition=Ready node -l type=kwok
# --timeout=10s`, which checks node after node and cannot get through 1,000 of them in 10 s on
# this machine, so it retries until its 300 s limit and fails. The cluster binaries are used
# through a shim directory whose kubectl answers that one call with a single list.
REAL_BIN=$("$REPO/tests/cluster/build.sh")
SHIM=$STATE/bin
mkdir -p "$SHIM"
for f in "$REAL_BIN"/*; do ln -sfn "$f" "$SHIM/$(basename "$f")"; done
rm -f "$SHIM/kubectl"
cat >"$SHIM/kubectl" <<SH
#!/usr/bin/env bash
if [[ "\$*" == *"wait --for=condition=Ready node -l type=kwok"* ]]; then
  BENCH_REAL_KUBECTL="$REAL_BIN/kubectl" exec python3 "$HERE/nodes_ready.py" "\$@"
fi
exec "$REAL_BIN/kubectl" "\$@"
SH
chmod +x "$SHIM/kubectl"
export ROBOFLEET_CLUSTER_BIN=$SHIM
start=$SECONDS
ROBOFLEET_ROBOTS=$ROBOTS timeout "$DEADLINE" "$REPO/tests/cluster/up.sh" >/dev/null
up_s=$((SECONDS - start))
echo "[run] cluster with $ROBOTS robots up in ${up_s} s (state $STATE)" >&2
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
left=$((DEADLINE - (SECONDS - start)))
(( left > 60 )) || { echo "[run] no time left after the cluster start" >&2; exit 1; }
timeout "$left" python3 "$HERE/bench.py" --state "$STATE" --repo "$REPO" \
  --operator-bin "$CARGO_TARGET_DIR/release/robofleet-operator" --metrics-port "$port" \
  --steady "$STEADY" --timeout "$TIMEOUT" --cluster-up-s "$up_s" --out "$OUT" \
  --source "$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- operator crds || echo '+uncommitted operator/crds changes')"
