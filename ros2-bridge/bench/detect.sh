#!/usr/bin/env bash
# Detection-bridge benchmark: 1280x720 rgb8 frames at RATE Hz, publisher -> ros2-bridge detect ->
# the release inference-sidecar serving the camera fixture's detector -> Detection2DArray reader.
# Usage: ros2-bridge/bench/detect.sh [OUT_DIR] [SECONDS] [RATE] [BRIDGE_FLAGS...]
# (builds release first, then re-runs itself in a loopback-only network namespace; the bridge runs
# with its defaults unless flags are given, e.g. --max-in-flight 2). Writes OUT_DIR/detect.json
# (the driver's raw latencies, counts and the bridge's counter deltas), the sidecar's and the
# bridge's final /metrics (sidecar.metrics, bridge.metrics), loadavg.txt and summary.json.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$(realpath -m "${1:-$REPO/target/bench-detect}")
SECONDS_RUN=${2:-60}
RATE=${3:-30}
shift $(($# < 3 ? $# : 3))
PY=${ROBOFLEET_PYTHON:-$HOME/.cache/robofleet/venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/robofleet/target}
if [[ ${IN_NETNS:-0} != 1 ]]; then
  (cd "$REPO" && cargo build --release -p ros2-bridge --bin ros2-bridge --example detect_bench \
    && cargo build --release -p inference-sidecar --bin inference-sidecar)
  exec unshare -rn env IN_NETNS=1 "$0" "$OUT" "$SECONDS_RUN" "$RATE" "$@"
fi
ip link set lo up
ip link set lo multicast on
mkdir -p "$OUT"
rm -f "$OUT"/detect.json "$OUT"/loadavg.txt "$OUT"/*.metrics "$OUT"/summary.json
BIN=$CARGO_TARGET_DIR/release
FIX=$REPO/tests/fixtures/camera
ORT=${ORT_DYLIB_PATH:-$(ls "$(dirname "$PY")"/../lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -1)}
export ROS_LOCALHOST_ONLY=1 RUST_LOG=warn ROS_DOMAIN_ID=$((RANDOM % 200 + 1))
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$WORK"; }
trap cleanup EXIT

model=$FIX/camera_boxes.onnx
mapfile -t SIDECAR_ARGS < <("$PY" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["detector"]["sidecarArgs"]))' "$FIX/expected.json")
"$BIN/inference-sidecar" serve --model "file://$model@$(sha256sum "$model" | cut -d' ' -f1)" \
  --listen 127.0.0.1:18000 --admin-listen 127.0.0.1:18002 --model-cache "$WORK/cache" \
  --ort-library "$ORT" "${SIDECAR_ARGS[@]}" > "$WORK/sidecar.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do curl -sf http://127.0.0.1:18002/v2/health/ready >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:18002/v2/health/ready >/dev/null || { echo "sidecar not ready" >&2; cat "$WORK/sidecar.log" >&2; exit 1; }

"$BIN/ros2-bridge" detect --sidecar-url http://127.0.0.1:18000/v1/detect \
  --metrics-addr 127.0.0.1:19471 "$@" > "$WORK/bridge.log" 2>&1 &
PIDS+=($!)

echo "before $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"
if ! "$BIN/examples/detect_bench" "detect-${RATE}hz" "$OUT/detect.json" "$SECONDS_RUN" "$RATE" 127.0.0.1:19471; then
  tail -n 20 "$WORK/bridge.log" "$WORK/sidecar.log" >&2; exit 1
fi
echo "after $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"
curl -sf http://127.0.0.1:18002/metrics > "$OUT/sidecar.metrics" || true
curl -sf http://127.0.0.1:19471/metrics > "$OUT/bridge.metrics" || true

"$PY" - "$OUT" "$*" <<'PYEOF'
import json, os, pathlib, sys
out = pathlib.Path(sys.argv[1])
r = json.loads((out / "detect.json").read_text())
keep = ("rate_hz", "published_rate_hz", "window_s", "published", "received", "dropped",
        "dropped_fraction", "boxes_match", "outside_window", "p50_ms", "p90_ms", "p99_ms", "max_ms",
        "publish_call_p50_ms", "publish_call_p99_ms", "bridge_counters_delta")
summary = {"nproc": os.cpu_count(), "bridge_flags": sys.argv[2],
           "loadavg": (out / "loadavg.txt").read_text().splitlines(), **{k: r[k] for k in keep}}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
PYEOF
