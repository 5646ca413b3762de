#!/usr/bin/env bash
# tests/demo.sh: the robofleet demo (`make demo`). Inside a loopback-only network namespace: a
# local control plane with simulated robots whose pods run the real binaries (pod runner), the
# CRDs and the operator; a SafetyPolicy and a sensor-sim obstacle scenario stopping a simulated
# robot (live stop/clear); sensor-sim cameras on the other robots and an InferenceService whose
# detector (v1) turns their frames into detections through the ROS 2 detect bridge; v2 rolled
# out in waves with analysis, a bad v3 stopped in the canary wave and rolled back automatically;
# a summary with the numbers. Everything stops at the end.
#
# Binaries: release builds from `make demo` (ROBOFLEET_DEMO_BIN overrides the directory).
# ROBOFLEET_ROBOTS sets the fleet size (default 12, 5 in FAST mode; at least 4). ROBOFLEET_DEMO_FAST=1 shortens the
# pauses (the demo's test in `make test`). The summary is also written as JSON to
# $ROBOFLEET_DEMO_SUMMARY (default target/demo-summary.json).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"
BIN=${ROBOFLEET_DEMO_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release}
FAST=${ROBOFLEET_DEMO_FAST:-0}
# A dozen robots for the demo; 5 in FAST mode (its test runs debug binaries beside other tests).
export ROBOFLEET_ROBOTS=${ROBOFLEET_ROBOTS:-$([[ $FAST == 1 ]] && echo 5 || echo 12)}
export ROBOFLEET_CLUSTER_STATE=${ROBOFLEET_DEMO_STATE:-$REPO/target/demo}
PY=${ROBOFLEET_PYTHON:-$HOME/.cache/robofleet/venv/bin/python}
[[ -x $PY ]] || PY=python3

if [[ ${ROBOFLEET_IN_NETNS:-0} != 1 ]]; then
  CLUSTER_BIN=$(tests/cluster/build.sh)
  exec env ROBOFLEET_IN_NETNS=1 ROBOFLEET_CLUSTER_BIN="$CLUSTER_BIN" unshare --map-root-user --net "$0" "$@"
fi
ip link set lo up
ip link set lo multicast on
T0=$SECONDS

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
stamp() { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*"; }
jp() { kubectl -n demo get "$1" "$2" -o jsonpath="$3" 2>/dev/null || true; }
wait_for() { # description timeout command...
  local what=$1 end=$((SECONDS + $2)); shift 2
  until "$@"; do
    if (( SECONDS >= end )); then echo "timed out waiting for: $what" >&2; return 1; fi
    sleep 0.5
  done
}
WATCH_PID=
cleanup() {
  [[ -n $WATCH_PID ]] && kill "$WATCH_PID" 2>/dev/null || true
  tests/cluster/down.sh
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "1. a local Kubernetes control plane with $ROBOFLEET_ROBOTS simulated robots (kwok) and the pod runner"
ROBOFLEET_POD_RUNNER=$BIN/pod-runner tests/cluster/up.sh >/dev/null
# shellcheck disable=SC1091
source "$ROBOFLEET_CLUSTER_STATE/env"
# Every robot here is simulated (sensor-sim may publish only into simulated robots' graphs); the
# last one is the safety test robot, the others run the detector.
LAST=robot-$(printf '%03d' $((ROBOFLEET_ROBOTS - 1)))
kubectl label node -l robofleet.io/robot=true robofleet.io/simulated=true >/dev/null
kubectl label node "$LAST" demo.robofleet.io/role=safety >/dev/null
run kubectl get nodes -L robofleet.io/robot,robofleet.io/simulated,demo.robofleet.io/role,topology.kubernetes.io/zone,robofleet.io/ros-domain-id
export PATH=$BIN:$PATH # kubectl-robofleet is a kubectl plugin found on PATH

say "2. the robofleet CRDs and the operator"
run kubectl apply --server-side -f deploy/crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: robofleet-safety-critical}
value: 1000000000
description: robofleet safety monitors
YAML
OP_METRICS=127.0.0.1:9400
"$BIN/robofleet-operator" --metrics-addr "$OP_METRICS" --image default=robofleet/inference-sidecar:demo \
  --bridge-image bridge=robofleet/ros2-bridge:demo >"$ROBOFLEET_CLUSTER_STATE/logs/operator.log" 2>&1 &
echo $! >"$ROBOFLEET_CLUSTER_STATE/pids/operator.pid"
run kubectl create namespace demo >/dev/null
run kubectl label namespace demo robofleet.io/robot-workloads=true >/dev/null

say "3. a SafetyPolicy on the simulated robot $LAST, and a sensor-sim obstacle driving at it"
kubectl apply -f - <<'YAML'
apiVersion: robofleet.io/v1alpha1
kind: SafetyPolicy
metadata: {name: front-stop, namespace: demo}
spec:
  robotSelector: {matchLabels: {demo.robofleet.io/role: safety}}
  source: {topic: /scan, sourceTimeout: 300ms, frame: laser}
  zones: [{name: front, shape: sector, minAngleDeg: -30, maxAngleDeg: 30, range: 0.35, action: stop}]
  release: {mode: Auto, holdTime: 500ms}
  output: {stopTopic: /safety/stop, heartbeat: 100ms}
YAML
SIM_IP=$(kubectl get node "$LAST" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
monitor_up() { curl -fsS "http://$SIM_IP:9470/metrics" >/dev/null 2>&1; }
wait_for "the safety monitor on $LAST" 120 monitor_up
kubectl apply -f - <<'YAML'
apiVersion: robofleet.io/v1alpha1
kind: SensorSim
metadata: {name: approach, namespace: demo}
spec:
  sensor: {type: lidar2d, topic: /scan, rateHz: 40, lidar: {beams: 360}}
  duration: 4s
  scenario:
    obstacles: [{name: box, bearingDeg: 0, startDistance: 1.2, speed: 1.0, minDistance: 0.15, width: 0.2, disappearAt: 2s}]
  expect:
  - {name: stops, safetyStopWithin: 200ms, whenDistanceBelow: 0.35}
  - {name: releases, safetyReleaseWithin: 1500ms, safetyReleaseNotBefore: 500ms}
  unitsUnderTest: {safetyPolicyRef: {name: front-stop}}
  target: {mode: Robots, robotSelector: {matchLabels: {demo.robofleet.io/role: safety}}}
YAML
STOPS=$ROBOFLEET_CLUSTER_STATE/stops.log
: >"$STOPS"
echo "   the robot's stop lock, live (robofleet_safety_stop_active on $LAST's monitor):"
prev=
end=$((SECONDS + 60))
i=0
while (( SECONDS < end )); do
  page=$(curl -fsS --max-time 1 "http://$SIM_IP:9470/metrics" 2>/dev/null || true)
  active=$(awk '/^robofleet_safety_stop_active\{/ {print $NF; exit}' <<<"$page")
  dist=$(awk '/^robofleet_safety_min_obstacle_distance_meters\{/ {print $NF; exit}' <<<"$page")
  scans=$(awk '/^robofleet_ros_topic_messages_total\{.*direction="in"/ {s += $NF} END {print s + 0}' <<<"$page")
  state=$([[ $active == 1 ]] && echo STOP || echo CLEAR)
  if [[ -n $active && $state != "$prev" ]]; then
    stamp "$state (nearest obstacle ${dist:-?} m, $scans scans received)"
    echo "$((SECONDS - T0)) $state ${dist:-}" >>"$STOPS"
    prev=$state
  fi
  # The sim's phase only now and then (kubectl is slow next to a 10 Hz poll).
  if (( ++i % 20 == 0 )); then
    phase=$(jp sensorsim approach '{.status.phase}')
    [[ $phase == Succeeded || $phase == Failed ]] && break
  fi
  sleep 0.05
done
# The monitor's own count of stops by reason (no poll can miss it).
OBSTACLE_STOPS=$(curl -fsS --max-time 2 "http://$SIM_IP:9470/metrics" 2>/dev/null \
  | awk '/^robofleet_safety_stops_total\{.*reason="Obstacle"/ {s += $NF} END {print s + 0}')
stamp "the monitor counted $OBSTACLE_STOPS stop(s) for an obstacle"
run kubectl get sensorsim -n demo approach -o wide
kubectl -n demo get sensorsim approach -o jsonpath='{range .status.assertions[*]}   {.name}: {.passed} ({.expected}; observed {.observed}){"\n"}{end}'

say "4. cameras on the other robots, and an InferenceService: the detector v1 on their frames"
MODELS=$REPO/tests/fixtures/camera
sha() { sha256sum "$1" | cut -d' ' -f1; }
# FAST (the demo's test, debug binaries on a busy machine): short pauses, a lenient latency
# budget and fewer samples per analysis; the bad v3 is caught by its errors either way.
if [[ $FAST == 1 ]]; then CANARY_PAUSE=8s; WAVE_PAUSE=6s; P99=1s; CAMERA_HZ=10; MIN=10
else CANARY_PAUSE=20s; WAVE_PAUSE=10s; P99=100ms; CAMERA_HZ=15; MIN=20; fi
# sensor-sim draws its obstacles into the camera frames (tests/fixtures/camera/README.md): two
# boxes ahead of each robot, on the robot's own ROS 2 graph (its domain ID label).
kubectl apply -f - <<YAML
apiVersion: robofleet.io/v1alpha1
kind: SensorSim
metadata: {name: cameras, namespace: demo}
spec:
  sensor: {type: camera, topic: /camera/image_raw, frameId: camera_optical, rateHz: $CAMERA_HZ, camera: {width: 160, height: 120, encoding: rgb8}}
  duration: 30m
  scenario:
    obstacles:
    - {name: pallet, bearingDeg: 20, startDistance: 1.5, width: 0.5, speed: 0}
    - {name: cart, bearingDeg: -25, startDistance: 2.5, width: 0.5, speed: 0}
  target: {mode: Robots, robotSelector: {matchExpressions: [{key: demo.robofleet.io/role, operator: DoesNotExist}]}}
YAML
isvc() { # version file
  cat <<YAML
apiVersion: robofleet.io/v1alpha1
kind: InferenceService
metadata: {name: detector, namespace: demo}
spec:
  model:
    uri: "file://$MODELS/$2"
    sha256: "$(sha "$MODELS/$2")"
    version: "$1"
    postprocess: {layout: yolov8, classes: [obstacle], confidence: 0.5}
  ros: {inputTopic: /camera/image_raw, outputTopic: /detections}
  robotSelector:
    matchExpressions: [{key: demo.robofleet.io/role, operator: DoesNotExist}]
  rollout:
    waves:
    - {name: canary, robots: 1, pause: {duration: $CANARY_PAUSE}}
    - {name: half, percent: 50, pause: {duration: $WAVE_PAUSE}}
    - {name: rest, percent: 100, maxUnavailable: 1}
    analysis:
      interval: 2s
      failureLimit: 2
      metrics:
      - {name: errors, builtin: ErrorRatio, maxRatio: 0.05, minSamples: $MIN}
      - {name: p99, builtin: LatencyP99, maxLatency: $P99, minSamples: $MIN}
YAML
}
isvc v1 camera_boxes.onnx | run kubectl apply -f -
healthy_at() { [[ $(jp isvc detector '{.status.phase}') == Healthy && $(jp isvc detector '{.status.stableRevision.model.version}') == "$1" ]]; }
wait_for "v1 Healthy" 180 healthy_at v1
run kubectl get robofleet -n demo
mapfile -t FLEET < <(kubectl get nodes -l 'robofleet.io/robot=true,!demo.robofleet.io/role' -o jsonpath='{range .items[*]}{.metadata.name}={.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
ROBOT_IP=${FLEET[0]#*=}
echo "   ${FLEET[0]%%=*} serves the detector itself (on its own address $ROBOT_IP): a camera fixture frame with two boxes"
run curl -fsS -X POST "http://$ROBOT_IP:8000/v1/detect" -H 'content-type: image/png' --data-binary @tests/fixtures/camera/two_sides.png
echo
echo "   its detect bridge turns the camera topic into vision_msgs/Detection2DArray on /detections:"
curl -fsS "http://$ROBOT_IP:8003/metrics" | grep -E '^robofleet_detect_(frames_total|detections_total)' | sed 's/^/     /'
WATCH=$ROBOFLEET_CLUSTER_STATE/fleet.json
args=()
for r in "${FLEET[@]}"; do args+=(--robot "$r"); done
"$PY" tests/demo_watch.py "${args[@]}" --out "$WATCH" &
WATCH_PID=$!
WATCH_T0=$SECONDS
echo "   cameras: $CAMERA_HZ frames/s per robot; the fleet's detections are counted in $WATCH"

progress() { # until the condition holds, print status changes
  local what=$1 timeout=$2; shift 2
  local last= end=$((SECONDS + timeout))
  until "$@"; do
    local line
    line="$(jp isvc detector '{.status.phase}'): $(jp isvc detector '{.status.message}')"
    [[ $line != "$last" ]] && stamp "$line" && last=$line
    if (( SECONDS >= end )); then echo "timed out waiting for: $what" >&2; return 1; fi
    sleep 1
  done
}
uids() { kubectl -n demo get pods -l robofleet.io/owner=detector -o jsonpath='{range .items[*]}{.spec.nodeName}={.metadata.uid}={.metadata.labels.robofleet\.io/revision}{"\n"}{end}' | sort; }

say "5. model v2, rolled out in waves: canary (1 robot) -> half -> rest, each judged by the robots' own metrics"
V1_UIDS=$(uids)
isvc v2 camera_boxes_v2.onnx | run kubectl apply -f -
progress "v2 stable" 300 healthy_at v2
run kubectl robofleet -n demo status detector
V2_UIDS=$(uids)

say "6. a bad model v3 (its output decodes to nothing: every frame fails): stopped in the canary wave, rolled back automatically"
isvc v3 camera_boxes_broken.onnx | run kubectl apply -f -
aborted() { [[ $(jp isvc detector '{.status.conditions[?(@.type=="Stalled")].reason}') == RolloutAborted ]] \
  && [[ -n $(jp isvc detector '{.status.abortedRevision}') ]] \
  && [[ $(jp isvc detector '{.status.abortedRevision}') != "$(jp isvc detector '{.status.stableRevision.hash}')" ]]; }
progress "v3 aborted" 240 aborted
back() { [[ $(uids | awk -F= '{print $3}' | sort -u) == "$(jp isvc detector '{.status.stableRevision.hash}')" ]] \
  && [[ $(uids | wc -l) == "${#FLEET[@]}" ]]; }
wait_for "robots back on v2" 120 back
run kubectl robofleet -n demo status detector
run kubectl get events -n demo --field-selector involvedObject.name=detector --sort-by=.lastTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message | tail -n 12
V3_UIDS=$(uids)
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
WATCH_PID=
WATCH_SECONDS=$((SECONDS - WATCH_T0))

say "summary"
SUMMARY=${ROBOFLEET_DEMO_SUMMARY:-$REPO/target/demo-summary.json}
mkdir -p "$(dirname "$SUMMARY")"
V1_UIDS=$V1_UIDS V2_UIDS=$V2_UIDS V3_UIDS=$V3_UIDS WATCH_SECONDS=$WATCH_SECONDS ELAPSED=$((SECONDS - T0)) \
  STATUS="$(kubectl -n demo get isvc detector -o json)" SIM="$(kubectl -n demo get sensorsim approach -o json)" \
  EVENTS="$(kubectl -n demo get events -o json)" STOPS="$(cat "$STOPS")" WATCHFILE=$WATCH OBSTACLE_STOPS=$OBSTACLE_STOPS \
  "$PY" - "$SUMMARY" <<'PY'
import json, os, sys
def pods(v):
    out = {}
    for line in v.split():
        node, uid, rev = line.split("=")
        out[node] = {"uid": uid, "revision": rev}
    return out
isvc = json.loads(os.environ["STATUS"]); sim = json.loads(os.environ["SIM"])
events = [e for e in json.loads(os.environ["EVENTS"])["items"] if e["involvedObject"]["name"] == "detector"]
fleet = json.load(open(os.environ["WATCHFILE"]))
tot = lambda k: int(sum(c.get(k, 0) for c in fleet.values()))
seconds = max(1, int(os.environ["WATCH_SECONDS"]))
st = isvc["status"]
s = {
    "elapsed_seconds": int(os.environ["ELAPSED"]),
    "robots": len(fleet),
    "stable": st.get("stableRevision", {}),
    "aborted_revision": st.get("abortedRevision"),
    "stalled_reason": next((c["reason"] for c in st["conditions"] if c["type"] == "Stalled"), None),
    "waves": [w["name"] for w in st.get("waves", [])],
    "pods_v1": pods(os.environ["V1_UIDS"]), "pods_v2": pods(os.environ["V2_UIDS"]), "pods_after_v3": pods(os.environ["V3_UIDS"]),
    "analysis_events": [{"reason": e["reason"], "message": e.get("message", "")} for e in events
                        if e["reason"] in ("AnalysisPassed", "AnalysisFailed", "AnalysisInconclusive")],
    "rollout_events": sorted({e["reason"] for e in events}),
    "requests": {"ok": tot("requests_ok"), "failed": tot("requests_failed"), "seconds": seconds},
    "detections": {"frames_ok": tot("frames_ok"), "frames_failed": tot("frames_failed"),
                   "objects": tot("detections"), "frames_per_second": round(tot("frames_ok") / seconds, 1),
                   "mean_latency_ms": round(1000 * sum(c.get("latency_sum", 0) for c in fleet.values())
                                            / max(1, tot("latency_count")), 1)},
    "safety": {"sim_phase": sim["status"].get("phase"),
               "assertions": sim["status"].get("assertions", []),
               "obstacle_stops": int(float(os.environ["OBSTACLE_STOPS"] or 0)),
               "transitions": [l.split()[1] for l in os.environ["STOPS"].splitlines() if l.strip()]},
}
json.dump(s, open(sys.argv[1], "w"), indent=1)
changed = [r for r, p in s["pods_after_v3"].items() if s["pods_v2"].get(r, {}).get("uid") != p["uid"]]
print(f"  robots: {s['robots']} serving the model, 1 simulated robot under a SafetyPolicy")
print(f"  v2: rolled out in waves {', '.join(s['waves']) or '-'}; stable = {s['stable'].get('model', {}).get('version')} ({s['stable'].get('hash')})")
print(f"  v3: {s['stalled_reason']} (revision {s['aborted_revision']}); pods replaced by v3 and back: {', '.join(changed) or 'none'}")
for e in s["analysis_events"]:
    print(f"  analysis: {e['reason']}: {e['message'][:150]}")
d = s["detections"]
print(f"  detections: {d['frames_ok']} camera frames detected ({d['frames_per_second']}/s across the fleet, "
      f"{d['objects']} objects, image to detections {d['mean_latency_ms']} ms on average); "
      f"{d['frames_failed']} frames failed (the bad v3 canary)")
print(f"  inference: {s['requests']['ok']} requests served, {s['requests']['failed']} failed")
for a in s["safety"]["assertions"]:
    print(f"  safety: {a['name']}: {'held' if a['passed'] else 'FAILED'} ({a['observed']})")
print(f"  stop lock seen: {' -> '.join(s['safety']['transitions']) or '-'}; obstacle stops counted by the monitor: {s['safety']['obstacle_stops']}")
PY
echo "  demo time: $((SECONDS - T0)) s (summary: $SUMMARY)"

say "where to look next"
cat <<EOF
  while a cluster runs (make cluster-up; source \$ROBOFLEET_CLUSTER_STATE/env):
    kubectl get robofleet -A                          # every InferenceService, SafetyPolicy, SensorSim
    kubectl robofleet status <name> --watch           # a rollout, live (target/release/kubectl-robofleet on PATH)
    kubectl robofleet pause|resume|promote|abort|retry <name>
    curl http://$OP_METRICS/metrics                  # the operator's own metrics (robofleet_operator_*)
  docs: docs/user-guide.md, docs/rollouts.md, docs/safety-policy.md, docs/architecture.md
EOF
say "demo done: stopping the cluster, the operator and every robot process"
