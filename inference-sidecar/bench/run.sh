#!/usr/bin/env bash
# inference-sidecar/bench/run.sh: the serving-overhead benchmark, for real.
# Builds the release test binary, runs tests/bench.rs pinned to CORES with ROBOFLEET_BENCH_OUT
# set (raw JSON: commit, CPU model, CPU set, command, p50/p90/p99, RSS), then regenerates
# bench/RESULTS.md from every JSON in bench/results/. Needs ORT_DYLIB_PATH (make venv).
#   CORES=1 ROBOFLEET_BENCH_ROUNDS=20 ROBOFLEET_BENCH_PER_ROUND=25 inference-sidecar/bench/run.sh
#   ROBOFLEET_BENCH_MODEL=/path/model.onnx NAME=yolox inference-sidecar/bench/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../.."
: "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to libonnxruntime.so.* from the onnxruntime wheel (make venv)}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/robofleet/target}
CORES=${CORES:-$(( $(nproc --all) - 1 ))}
NAME=${NAME:-$(basename "${ROBOFLEET_BENCH_MODEL:-slow.onnx}" .onnx)}
OUT=$HERE/results/serve_overhead-$NAME.json
cargo test --release -p inference-sidecar --test bench --no-run
CMD="CORES=$CORES inference-sidecar/bench/run.sh  (taskset -c $CORES cargo test --release -p inference-sidecar --test bench)"
ROBOFLEET_BENCH_OUT=$OUT ROBOFLEET_BENCH_COMMAND=$CMD \
  taskset -c "$CORES" cargo test --release -p inference-sidecar --test bench -- --nocapture
python3 "$HERE/report.py" "$HERE"/results/*.json > "$HERE/RESULTS.md"
echo "wrote $OUT and $HERE/RESULTS.md"
