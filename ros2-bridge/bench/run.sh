#!/usr/bin/env bash
# Reaction benchmark, Rust monitor vs Python (cyclonedds + numpy) monitor, same driver, same scans.
# Usage: ros2-bridge/bench/run.sh [OUT_DIR] [SCANS] [ROUNDS]  (builds release first, then re-runs
# itself in a loopback-only network namespace). Rounds alternate Rust and Python so both see the
# same machine load. Writes OUT_DIR/reaction-{rust,python}-N.json and OUT_DIR/summary.json.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$(realpath -m "${1:-$REPO/target/bench}")
SCANS=${2:-400}
ROUNDS=${3:-3}
PY=${ROBOFLEET_PYTHON:-$HOME/.cache/robofleet/venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/robofleet/target}
if [[ ${IN_NETNS:-0} != 1 ]]; then
  (cd "$REPO" && cargo build --release -p ros2-bridge --bin ros2-bridge --example reaction_bench)
  # BENCH_RT=1: run monitors and driver with SCHED_FIFO (needs real root: no user namespace then).
  if [[ ${BENCH_RT:-0} == 1 ]]; then exec unshare -n env IN_NETNS=1 "$0" "$OUT" "$SCANS" "$ROUNDS"; fi
  exec unshare -rn env IN_NETNS=1 "$0" "$OUT" "$SCANS" "$ROUNDS"
fi
ip link set lo up
ip link set lo multicast on
mkdir -p "$OUT"
BIN=$CARGO_TARGET_DIR/release
export ROS_LOCALHOST_ONLY=1 RUST_LOG=warn
RT=()
if [[ ${BENCH_RT:-0} == 1 ]]; then RT=(chrt -f 50); fi
run() { # label, monitor command...
  local label=$1; shift
  echo "$label $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"
  export ROS_DOMAIN_ID=$((RANDOM % 200 + 1))
  "${RT[@]}" "$@" > "$OUT/$label-monitor.log" 2>&1 &
  local pid=$!
  "${RT[@]}" "$BIN/examples/reaction_bench" "$label" "$OUT/reaction-$label.json" "$SCANS"
  kill -TERM "$pid"; wait "$pid" || true
}
rm -f "$OUT"/reaction-*.json "$OUT/loadavg.txt"
for i in $(seq 1 "$ROUNDS"); do
  run "rust-$i" "$BIN/ros2-bridge" safety --config "$HERE/policy.yaml" --metrics-addr 127.0.0.1:0
  run "python-$i" "$PY" "$HERE/py_monitor.py"
done
"$PY" - "$OUT" <<'PYEOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
summary = {"nproc": __import__("os").cpu_count(), "sched_fifo": __import__("os").environ.get("BENCH_RT") == "1", "loadavg": out.joinpath("loadavg.txt").read_text().splitlines(), "runs": {}}
for impl in ("rust", "python"):
    lat = []
    for f in sorted(out.glob(f"reaction-{impl}-*.json")):
        r = json.loads(f.read_text())
        summary["runs"][r["label"]] = {k: r[k] for k in ("measured", "missed", "p50_ms", "p90_ms", "p99_ms", "max_ms")}
        lat += r["latencies_ms"]
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, round((len(lat) - 1) * p))]
    summary[impl] = {"measured": len(lat), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": lat[-1]}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps({k: summary[k] for k in ("rust", "python")}))
PYEOF
