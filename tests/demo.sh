#!/usr/bin/env bash
# tests/demo.sh: the robofleet demo (`make demo`). Inside a loopback-only network namespace:
# a local control plane with simulated robots whose pods run the real binaries (pod runner),
# the CRDs, the operator, and an InferenceService taken through a model change, a broken model
# (robots fall back, the operator reports ModelLoadFailed) and the fix. Everything stops at the end.
# Binaries come from `make demo` (release builds); ROBOFLEET_ROBOTS sets the fleet size (default 5).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/release
export ROBOFLEET_ROBOTS=${ROBOFLEET_ROBOTS:-5}
export ROBOFLEET_CLUSTER_STATE=${ROBOFLEET_DEMO_STATE:-$REPO/target/demo}

if [[ ${ROBOFLEET_IN_NETNS:-0} != 1 ]]; then
  BIN=$(tests/cluster/build.sh)
  exec env ROBOFLEET_IN_NETNS=1 ROBOFLEET_CLUSTER_BIN="$BIN" unshare --map-root-user --net "$0" "$@"
fi
ip link set lo up
ip link set lo multicast on

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
wait_phase() { # name phase timeout
  local end=$((SECONDS + $3))
  until [[ $(kubectl -n demo get isvc "$1" -o jsonpath='{.status.phase}' 2>/dev/null) == "$2" ]]; do
    if (( SECONDS >= end )); then echo "timed out waiting for $1 to be $2" >&2; kubectl -n demo get isvc "$1" -o yaml >&2; return 1; fi
    sleep 1
  done
}
trap 'tests/cluster/down.sh' EXIT

say "1. a local Kubernetes control plane with $ROBOFLEET_ROBOTS simulated robots (kwok) and the pod runner"
ROBOFLEET_POD_RUNNER=$TARGET/pod-runner tests/cluster/up.sh >/dev/null
# shellcheck disable=SC1091
source "$ROBOFLEET_CLUSTER_STATE/env"
run kubectl get nodes -L robofleet.io/robot,topology.kubernetes.io/zone,robofleet.io/ros-domain-id

say "2. the robofleet CRDs and the operator"
run kubectl apply --server-side -f deploy/crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
"$TARGET/robofleet-operator" --metrics-addr 127.0.0.1:0 --image default=robofleet/inference-sidecar:demo \
  >"$ROBOFLEET_CLUSTER_STATE/logs/operator.log" 2>&1 &
echo $! >"$ROBOFLEET_CLUSTER_STATE/pids/operator.pid"
run kubectl create namespace demo >/dev/null
run kubectl label namespace demo robofleet.io/robot-workloads=true >/dev/null

MODELS=$REPO/tests/fixtures/models
sha() { sha256sum "$1" | cut -d' ' -f1; }
isvc() { # version file sha
  cat <<YAML
apiVersion: robofleet.io/v1alpha1
kind: InferenceService
metadata: {name: detector, namespace: demo}
spec:
  model: {uri: "file://$MODELS/$2", sha256: "$3", version: "$1"}
  robotSelector:
    matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [zone-a, zone-b]}]
YAML
}

say "3. an InferenceService for the robots in zones a and b: model v1"
isvc v1 add_mul.onnx "$(sha "$MODELS/add_mul.onnx")" | run kubectl apply -f -
wait_phase detector Healthy 120
run kubectl get robofleet -n demo
run kubectl get pods -n demo -o wide
ROBOT_IP=$(kubectl get node robot-000 -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
say "   robot-000 serves the model itself (Open Inference Protocol on its own address $ROBOT_IP):"
run curl -fsS "http://$ROBOT_IP:8000/v2/models/detector"; echo
run curl -fsS -X POST "http://$ROBOT_IP:8000/v2/models/detector/infer" -H 'content-type: application/json' -d \
  '{"inputs":[{"name":"INPUT0","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"INPUT1","shape":[1,4],"datatype":"INT32","data":[10,20,30,40]}]}'
echo

say "4. a model change is a new revision: each selected robot's pod is deleted, then recreated at it"
isvc v2 fixed_batch.onnx "$(sha "$MODELS/fixed_batch.onnx")" | run kubectl apply -f -
wait_phase detector Progressing 30 || true
wait_phase detector Healthy 120
run kubectl get robofleet -n demo
run kubectl get controllerrevisions -n demo

say "5. a broken model (wrong sha256): robots fall back to v2 and keep serving; the operator says why"
isvc v3 fixed_batch.onnx "$(printf '0%.0s' {1..64})" | run kubectl apply -f -
wait_phase detector Degraded 120
run kubectl get robofleet -n demo -o wide
run curl -fsS "http://$ROBOT_IP:8000/v2/health/ready" -o /dev/null -w 'robot-000 still ready: HTTP %{http_code}\n'

say "6. fixed in git: back to a good model"
isvc v2 fixed_batch.onnx "$(sha "$MODELS/fixed_batch.onnx")" | run kubectl apply -f -
wait_phase detector Healthy 120
run kubectl get robofleet -n demo

say "demo done: stopping the cluster, the operator and every robot process"
