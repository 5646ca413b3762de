#!/usr/bin/env bash
# inference-sidecar/bench/detect.sh: the /v1/detect benchmark (issue 5), for real.
# Creates the bench venv (FastAPI/uvicorn/Pillow/numpy/onnxruntime from bench/requirements-detect.txt,
# not the test venv), fetches the YOLOX detector from the ddddocr wheel into $DDDDOCR_DIR (never
# committed), writes the benchmark JPEG, builds the release test binary and runs
# tests/detect_bench.rs pinned to CORES for each benchmark named in BENCHES, writing
# bench/results/detect-<name>.json, then regenerates bench/RESULTS.md. Needs ORT_DYLIB_PATH (make venv).
#   inference-sidecar/bench/detect.sh               # yolox, yolox-raw, tiny-160, tiny-hd, micro-160
#   BENCHES=yolox SECONDS_PER=10 TP_ROUNDS=2 inference-sidecar/bench/detect.sh
# Knobs: CORES (default all CPUs), BENCHES, SECONDS_PER (per throughput measurement and round),
# TP_ROUNDS, ROUNDS/PER_ROUND (latency), VENV, DDDDOCR_DIR, RESULTS_DIR (default bench/results).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../.."
: "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to libonnxruntime.so.* from the onnxruntime wheel (make venv)}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/robofleet/target}
CORES=${CORES:-0-$(( $(nproc --all) - 1 ))}
BENCHES=${BENCHES:-yolox yolox-raw tiny-160 tiny-hd micro-160}
VENV=${VENV:-$HOME/.cache/robofleet/detect-bench-venv}
DDDDOCR_DIR=${DDDDOCR_DIR:-/tmp/robofleet-ddddocr}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# the bench venv, rebuilt when the pins change
REQ=$HERE/requirements-detect.txt
STAMP=$VENV/.requirements.sha256
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$(sha256sum < "$REQ")" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  sha256sum < "$REQ" > "$STAMP"
fi

# the YOLOX detector from the PyPI wheel ddddocr 1.6.1 (MIT), input 1x3x416x416
YOLOX=$DDDDOCR_DIR/ddddocr/common_det.onnx
if [ ! -f "$YOLOX" ]; then
  mkdir -p "$DDDDOCR_DIR"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps ddddocr==1.6.1 -d "$DDDDOCR_DIR"
  (cd "$DDDDOCR_DIR" && "$VENV/bin/python" -m zipfile -e ddddocr-1.6.1-py3-none-any.whl .)
fi
"$VENV/bin/python" "$HERE/make_detect_image.py" "$WORK/frame.jpg" 640 480
CAMERA=$PWD/tests/fixtures/camera
TINY_FLAGS="--detect-size 128x128 --detect-classes obstacle --detect-confidence 0.5"

cargo test --offline --release -p inference-sidecar --test detect_bench --no-run
for name in $BENCHES; do
  raw=0
  case $name in
    # ddddocr's own processing (as tests/ddddocr.rs): BGR 0-255, top-left letterbox padded with 114,
    # sides rounded down, score threshold 0.1
    yolox) model=$YOLOX image=$WORK/frame.jpg rounds=${ROUNDS:-20} per_round=${PER_ROUND:-10}
      flags="--detect-size 416x416 --detect-layout yolox --detect-strides 8,16,32 --detect-color-order bgr --detect-scale 1 --detect-letterbox topLeft --detect-pad-value 114 --detect-resize-rounding floor --detect-confidence 0.1 --detect-iou 0.45 --detect-classes text" ;;
    # the same picture as a raw rgb8 frame: the ROS 2 bridge's path, nothing to decode
    yolox-raw) model=$YOLOX image=$WORK/frame.jpg rounds=${ROUNDS:-20} per_round=${PER_ROUND:-10} raw=1
      flags="--detect-size 416x416 --detect-layout yolox --detect-strides 8,16,32 --detect-color-order bgr --detect-scale 1 --detect-letterbox topLeft --detect-pad-value 114 --detect-resize-rounding floor --detect-confidence 0.1 --detect-iou 0.45 --detect-classes text" ;;
    tiny-160) model=$CAMERA/camera_boxes.onnx image=$CAMERA/two_sides.png flags=$TINY_FLAGS
      rounds=${ROUNDS:-10} per_round=${PER_ROUND:-50} ;;
    # a model whose inference is well under the serving cost (a ReduceMean and a Concat, 32x32 input:
    # microseconds): the request path itself is what is measured
    micro-160) model=$PWD/tests/fixtures/models/yolov8_tiny.onnx image=$CAMERA/two_sides.png
      flags="--detect-size 32x32 --detect-classes red,green --detect-confidence 0.25 --detect-iou 0.5"
      rounds=${ROUNDS:-10} per_round=${PER_ROUND:-50} ;;
    tiny-hd) model=$CAMERA/camera_boxes.onnx image=$CAMERA/three_hd.png flags=$TINY_FLAGS
      rounds=${ROUNDS:-10} per_round=${PER_ROUND:-50} ;;
    *) echo "unknown benchmark $name (yolox, yolox-raw, tiny-160, tiny-hd, micro-160)" >&2; exit 2 ;;
  esac
  OUT=${RESULTS_DIR:-$HERE/results}/detect-$name.json
  CMD="CORES=$CORES BENCHES=$name inference-sidecar/bench/detect.sh  (taskset -c $CORES cargo test --release -p inference-sidecar --test detect_bench)"
  ROBOFLEET_DETECT_BENCH_OUT=$OUT ROBOFLEET_BENCH_COMMAND=$CMD ROBOFLEET_DETECT_BENCH_NAME=$name \
  ROBOFLEET_DETECT_BENCH_MODEL=$model ROBOFLEET_DETECT_BENCH_IMAGE=$image ROBOFLEET_DETECT_BENCH_FLAGS=$flags \
  ROBOFLEET_DETECT_BENCH_PYTHON=$VENV/bin/python ROBOFLEET_DETECT_BENCH_RAW=$raw \
  ROBOFLEET_DETECT_BENCH_SECONDS=${SECONDS_PER:-10} ROBOFLEET_DETECT_BENCH_TP_ROUNDS=${TP_ROUNDS:-2} \
  ROBOFLEET_DETECT_BENCH_ROUNDS=$rounds ROBOFLEET_DETECT_BENCH_PER_ROUND=$per_round \
    taskset -c "$CORES" cargo test --offline --release -p inference-sidecar --test detect_bench -- --nocapture
  echo "wrote $OUT"
done
python3 "$HERE/report.py" "$HERE"/results/*.json > "$HERE/RESULTS.md"
echo "wrote $HERE/RESULTS.md"
