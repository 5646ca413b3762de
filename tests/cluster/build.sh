#!/usr/bin/env bash
# tests/cluster/build.sh: build etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok and helm from Go modules, cached under ~/.cache keyed by the version set.
# Prints the bin directory on stdout; progress goes to stderr. A second run returns at once.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE=${ROBOFLEET_CLUSTER_CACHE:-$HOME/.cache/robofleet-cluster}
GOV=$(go env GOVERSION)
BIN=$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION-$GOV
if [[ -f $BIN/.complete ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN" "$CACHE/work"
# Wrapper builds must not see a caller's workspace or flags.
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-trimpath
log() { echo "[build $(date +%H:%M:%S)] $*" >&2; }

MINOR=$(cut -d. -f2 <<<"$K8S_VERSION")   # v1.36.3 -> 36
STAGING_V="v0.${K8S_VERSION#v1.}"        # v1.36.3 -> v0.36.3

# Kubernetes: upstream's go.mod maps every staging module to ./staging, which the module zip lacks,
# and `go install` refuses modules with replace directives. A wrapper module replaces each staging
# module with its published v0.N.M twin, generated from upstream's own go.mod.
if [[ ! -x $BIN/kubectl ]]; then
  W=$CACHE/work/k8s-$K8S_VERSION; rm -rf "$W"; mkdir -p "$W"; cd "$W"
  go mod init robofleet-cluster/k8s-bins >/dev/null 2>&1
  log "downloading k8s.io/kubernetes@$K8S_VERSION"
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >kubernetes.json
  UPSTREAM_MOD=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["GoMod"])' kubernetes.json)
  go mod edit -json "$UPSTREAM_MOD" >upstream.json
  python3 - "$STAGING_V" upstream.json >edits.txt <<'PY'
import json, sys
ver, m = sys.argv[1], json.load(open(sys.argv[2]))
for r in m.get("Replace") or []:
    old, new = r["Old"]["Path"], r["New"]
    if new["Path"].startswith("./staging/"):
        print(f"-replace={old}={old}@{ver}")
    elif new.get("Version"):
        print(f"-replace={old}={new['Path']}@{new['Version']}")
    else:
        sys.exit(f"unexpected local replace: {old} => {new['Path']}")
if m.get("Go"):
    print(f"-go={m['Go']}")
for g in m.get("Godebug") or []:
    print(f"-godebug={g['Key']}={g['Value']}")
PY
  log "$(grep -c -- -replace= edits.txt) replace directives generated"
  xargs go mod edit <edits.txt
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    go mod edit -tool="k8s.io/kubernetes/cmd/$c"
  done
  go mod tidy
  COMMIT=$(python3 -c 'import json,sys; print((json.load(open(sys.argv[1])).get("Origin") or {}).get("Hash",""))' kubernetes.json)
  LD="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LD+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR"
    LD+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if [[ -n $COMMIT ]]; then LD+=" -X $p.gitCommit=$COMMIT"; fi
  done
  log "compiling kube-apiserver, kube-controller-manager, kube-scheduler, kubectl"
  go build -ldflags "$LD" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
fi

# etcd: server/v3 is a main package, but its go.mod has replace directives: own wrapper module.
if [[ ! -x $BIN/etcd ]]; then
  W=$CACHE/work/etcd-$ETCD_VERSION; rm -rf "$W"; mkdir -p "$W"; cd "$W"
  go mod init robofleet-cluster/etcd-bin >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  log "compiling etcd"
  go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi

# kwok: no replace directives, plain go install.
if [[ ! -x $BIN/kwok ]]; then
  log "installing kwok"
  GOBIN=$BIN go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi
# kwok >= v0.8.0 has no built-in stages: take upstream's from the module cache (nothing committed).
S=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
mkdir -p "$BIN/kwok-stages"
cp "$S/node/fast/node-initialize.yaml" "$S/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
  "$S/pod/fast/pod-ready.yaml" "$S/pod/fast/pod-complete.yaml" "$S/pod/fast/pod-delete.yaml" "$BIN/kwok-stages/"
chmod u+w "$BIN"/kwok-stages/*.yaml

# helm v3: stamp its version and default KubeVersion (unstamped, `helm template` assumes 1.20).
if [[ ! -x $BIN/helm ]]; then
  H=helm.sh/helm/v3
  log "installing helm"
  GOBIN=$BIN go install -ldflags "-s -w -X $H/internal/version.version=$HELM_VERSION \
    -X $H/pkg/chartutil.k8sVersionMajor=1 -X $H/pkg/chartutil.k8sVersionMinor=$MINOR \
    -X $H/pkg/lint/rules.k8sVersionMajor=1 -X $H/pkg/lint/rules.k8sVersionMinor=$MINOR" \
    "$H/cmd/helm@$HELM_VERSION"
fi

"$BIN/kube-apiserver" --version >&2
"$BIN/etcd" --version | head -1 >&2
touch "$BIN/.complete"
log "done"
echo "$BIN"
