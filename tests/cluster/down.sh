#!/usr/bin/env bash
# tests/cluster/down.sh: stop what up.sh started, by recorded PID only, newest first, then delete
# its state (KEEP_STATE=1 keeps logs and PKI for debugging).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STATE=${ROBOFLEET_CLUSTER_STATE:-$REPO/target/cluster}
PIDS=$STATE/pids
left=()
stop() { # pid file
  local f=$1 pid
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; sleep 0.2; fi
  fi
  if kill -0 "$pid" 2>/dev/null; then left+=("$(basename "$f" .pid):$pid"); else rm -f "$f"; fi
}
# Anything else that recorded a pid here (pod runner, operator) goes first.
for f in "$PIDS"/*.pid; do
  [[ -f $f ]] || continue
  case $(basename "$f" .pid) in kwok|kube-scheduler|kube-controller-manager|kube-apiserver|etcd) ;; *) stop "$f" ;; esac
done
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  [[ -f $PIDS/$name.pid ]] && stop "$PIDS/$name.pid"
done
if [[ -f $STATE/etcd-data-dir ]]; then rm -rf "$(cat "$STATE/etcd-data-dir")"; rm -f "$STATE/etcd-data-dir"; fi
if (( ${#left[@]} )); then
  echo "down.sh: still running after SIGKILL: ${left[*]} (pid files kept in $PIDS)" >&2
  exit 1
fi
if [[ ${KEEP_STATE:-0} != 1 ]]; then rm -rf "$STATE"; fi
exit 0
