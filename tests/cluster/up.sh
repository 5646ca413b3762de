#!/usr/bin/env bash
# tests/cluster/up.sh: start a real Kubernetes control plane on loopback (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) plus kwok, then create simulated robot Nodes and one
# infra Node. Prints `export ...` lines (also written to $STATE/env). All state under $STATE;
# every process is recorded in $STATE/pids and stopped by down.sh.
#
# Knobs: ROBOFLEET_ROBOTS (default 3, up to 10000), ROBOFLEET_CLUSTER_STATE, ROBOFLEET_CLUSTER_PORT_BASE
# (default: a free block probed at run time), ROBOFLEET_CLUSTER_BIN (default: build.sh's output).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${ROBOFLEET_CLUSTER_BIN:-$("$HERE/build.sh")}
STATE=${ROBOFLEET_CLUSTER_STATE:-$REPO/target/cluster}
N=${ROBOFLEET_ROBOTS:-3}
(( N >= 0 && N <= 10000 )) || { echo "ROBOFLEET_ROBOTS must be 0..10000" >&2; exit 2; }
if [[ -f $STATE/pids/kube-apiserver.pid ]] && kill -0 "$(cat "$STATE/pids/kube-apiserver.pid")" 2>/dev/null; then
  echo "a cluster is already running with state in $STATE (tests/cluster/down.sh stops it)" >&2
  exit 1
fi
PKI=$STATE/pki LOGS=$STATE/logs PIDS=$STATE/pids
mkdir -p "$PKI" "$LOGS" "$PIDS"
log() { echo "[up $(date +%H:%M:%S)] $*" >&2; }
trap 'echo "up.sh failed; logs in $LOGS" >&2; KEEP_STATE=1 "$HERE/down.sh" >&2 || true' ERR

# ---- ports: one block of 8, probed free on 127.0.0.1 at run time and recorded
if [[ -n ${ROBOFLEET_CLUSTER_PORT_BASE:-} ]]; then
  PB=$ROBOFLEET_CLUSTER_PORT_BASE
else
  PB=$(python3 - <<'PY'
import random, socket
def free(base):
    socks = []
    try:
        for p in range(base, base + 8):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        return True
    except OSError:
        return False
    finally:
        for s in socks: s.close()
for _ in range(200):
    base = random.randrange(20000, 32000, 8)
    if free(base):
        print(base); break
else:
    raise SystemExit("no free port block found")
PY
)
fi
ETCD_PORT=$PB ETCD_PEER=$((PB + 1)) API_PORT=$((PB + 2)) KCM_PORT=$((PB + 3)) SCHED_PORT=$((PB + 4))
KWOK_PORT=$((PB + 5))
echo "$PB" >"$STATE/port-base"
# ClusterIPs are allocated, never routed (no kube-proxy): nothing may ever connect to them.
# Node heartbeats: kwok renews each robot's Lease every lease/4 seconds and the node lifecycle
# controller marks a robot NotReady after GRACE without renewal. Short for small fleets (offline tests
# finish in seconds); longer for large ones so heartbeats alone do not swamp a 2-core machine.
LEASE=${ROBOFLEET_NODE_LEASE_SECONDS:-$(( N > 500 ? N / 50 : 10 ))}
GRACE=$(( LEASE * 2 ))
SVC_CIDR=${ROBOFLEET_SVC_CIDR:-10.96.0.0/16}
log "state $STATE, ports $PB..$((PB + 7)), $N robots"

start() { # name cmd...: start in the background, record its pid
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}
wait_for() { # name timeout_s cmd...: poll until cmd succeeds; fail early if the process died
  local name=$1 t=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$PIDS/$name.pid")" 2>/dev/null; then
      echo "$name exited early:" >&2; tail -n 40 "$LOGS/$name.log" >&2; return 1
    fi
    if (( SECONDS >= end )); then
      echo "timeout waiting for $name:" >&2; tail -n 40 "$LOGS/$name.log" >&2; return 1
    fi
    sleep 0.5
  done
}

# ---- 1. PKI: CA, apiserver serving cert, admin client cert (system:masters), SA key pair
if [[ ! -f $PKI/admin.crt ]]; then
  log "creating PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=robofleet-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" >server.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile server.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=robofleet-test-admin"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" >client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3650 -extfile client.ext
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$LOGS/pki.log" 2>&1
fi

# ---- 2. admin kubeconfig (data inlined)
KUBECONFIG_FILE=$STATE/kubeconfig
b64() { base64 -w0 <"$1"; }
cat >"$KUBECONFIG_FILE" <<KC
apiVersion: v1
kind: Config
clusters:
- name: robofleet-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: robofleet-test-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: robofleet-test
  context: {cluster: robofleet-test, user: robofleet-test-admin}
current-context: robofleet-test
KC
chmod 600 "$KUBECONFIG_FILE"

# ---- 3. etcd on tmpfs when there is room (test data only: no fsync)
if [[ -z ${ROBOFLEET_ETCD_DATA:-} ]]; then
  SHM_FREE_MB=$(df -Pm /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
  if [[ ${SHM_FREE_MB:-0} -gt 3000 ]]; then ETCD_DATA=$(mktemp -d /dev/shm/robofleet-etcd.XXXXXX)
  else ETCD_DATA=$(mktemp -d "$STATE/etcd.XXXXXX"); fi
else
  ETCD_DATA=$ROBOFLEET_ETCD_DATA; mkdir -p "$ETCD_DATA"
fi
chmod 700 "$ETCD_DATA"; echo "$ETCD_DATA" >"$STATE/etcd-data-dir"
log "starting etcd"
start etcd "$BIN/etcd" --name=node0 --data-dir="$ETCD_DATA" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster="node0=http://127.0.0.1:$ETCD_PEER" \
  --unsafe-no-fsync=true --auto-compaction-retention=1 --quota-backend-bytes=$((4 * 1024 * 1024 * 1024)) \
  --log-level=warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# ---- 4. kube-apiserver: TLS, RBAC, audit log of writes, short default tolerations for offline tests
cat >"$STATE/audit-policy.yaml" <<'AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [get, list, watch]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
AUDIT
log "starting kube-apiserver"
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --endpoint-reconciler-type=none \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SVC_CIDR" \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --default-not-ready-toleration-seconds=10 --default-unreachable-toleration-seconds=10 \
  --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
  --audit-log-format=json --audit-log-maxsize=200 --audit-log-maxbackup=2 \
  --cert-dir="$STATE/apiserver-generated" \
  --profiling=false --v=1
CURL_ADMIN=(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
wait_for kube-apiserver 180 "${CURL_ADMIN[@]}" "https://127.0.0.1:$API_PORT/readyz"

# ---- 5. kube-controller-manager and kube-scheduler (admin kubeconfig, no leader election)
log "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=false \
  --node-monitor-period=2s --node-monitor-grace-period=${GRACE}s \
  --kube-api-qps=200 --kube-api-burst=400 \
  --v=1
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --kube-api-qps=200 --kube-api-burst=400 \
  --v=1
wait_for kube-controller-manager 90 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for kube-scheduler 90 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"

# ---- 6. kwok with upstream's stages; manages only annotated nodes; pod IPs stay in 127/8
{
  # kwok applies its built-in option defaults only when it has no config file, so spell them out.
  cat <<KWOK
kind: KwokConfiguration
apiVersion: config.kwok.x-k8s.io/v1alpha1
options:
  podPlayStageParallelism: 8
  nodePlayStageParallelism: 8
  nodeLeaseParallelism: 8
  podsOnNodeSyncParallelism: 2
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  enableDebuggingHandlers: false
  enableProfilingHandler: false
  enableContentionProfiling: false
KWOK
  # Upstream pod stages leave robofleet-operator pods alone (one NotIn added to each selector);
  # stages/robofleet-*.yaml make those Running, and the pod runner does the rest.
  for f in "$BIN"/kwok-stages/*.yaml; do
    echo '---'
    case $(basename "$f") in
      pod-*) sed "/^    matchExpressions:\$/r $HERE/stages/upstream-pod-exclude.fragment" "$f" ;;
      *) cat "$f" ;;
    esac
  done
  for f in "$HERE"/stages/*.yaml; do echo '---'; cat "$f"; done
} >"$STATE/kwok.yaml"
n_pod_stages=$(ls "$BIN"/kwok-stages/pod-*.yaml | wc -l)
if [[ $(grep -c "operator: 'NotIn'" "$STATE/kwok.yaml") -lt $n_pod_stages ]]; then
  echo "kwok stages: could not exclude robofleet-operator pods from the upstream pod stages" >&2; exit 1
fi
log "starting kwok"
start kwok "$BIN/kwok" --kubeconfig="$KUBECONFIG_FILE" --config="$STATE/kwok.yaml" \
  --manage-all-nodes=false --manage-nodes-with-label-selector=kwok.x-k8s.io/node=fake \
  --cidr=127.250.0.0/16 --node-ip=127.0.0.1 --node-lease-duration-seconds=$LEASE \
  --server-address="127.0.0.1:$KWOK_PORT"

# ---- 7. robot Nodes and one infra Node
# robot i: host IP 127.(100 + i/250).0.(i%250 + 1), pod CIDR 127.(10 + i/250).(i%250).0/24
# infra:   host IP 127.99.0.1, pod CIDR 127.9.0.0/24
KC=("$BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE")
python3 "$HERE/nodes.py" --robots "$N" >"$STATE/nodes.yaml"
log "creating $N robot nodes and 1 infra node"
"${KC[@]}" apply --server-side --field-manager=robofleet-test-cluster -f "$STATE/nodes.yaml" >/dev/null
wait_for kwok 300 "${KC[@]}" wait --for=condition=Ready node -l type=kwok --timeout=10s
# Pods need the namespace's default ServiceAccount, which the controller manager creates.
wait_for kube-controller-manager 60 "${KC[@]}" -n default get serviceaccount default

# ---- 8. the pod runner, when asked: runs robofleet-operator pods' real binaries on the robots
RUNNER_ENV=
if [[ -n ${ROBOFLEET_POD_RUNNER:-} ]]; then
  log "starting the pod runner"
  TARGET_BIN=$(dirname "$ROBOFLEET_POD_RUNNER")
  start pod-runner env KUBECONFIG="$KUBECONFIG_FILE" ROBOFLEET_POD_RUNNER_STATE="$STATE/pod-runner" \
    ROBOFLEET_POD_RUNNER_IMAGES="${ROBOFLEET_POD_RUNNER_IMAGES:-inference-sidecar=$TARGET_BIN/inference-sidecar,ros2-bridge=$TARGET_BIN/ros2-bridge,busybox=/bin/sh}" \
    "$ROBOFLEET_POD_RUNNER"
  wait_for pod-runner 60 grep -q "pod runner watching" "$LOGS/pod-runner.log"
  RUNNER_ENV="export ROBOFLEET_POD_RUNNER_STATE=$STATE/pod-runner"
fi

trap - ERR
cat >"$STATE/env" <<ENV
export KUBECONFIG=$KUBECONFIG_FILE
export ROBOFLEET_CLUSTER_STATE=$STATE
export ROBOFLEET_CLUSTER_BIN=$BIN
export PATH=$BIN:\$PATH
$RUNNER_ENV
ENV
log "ready"
cat "$STATE/env"
