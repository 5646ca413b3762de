#!/usr/bin/env python3
"""Stands in for `kubectl --kubeconfig=K wait --for=condition=Ready node -l type=kwok` (see
run.sh): one list of the nodes, exit 0 when every one is Ready, 1 otherwise."""
import json
import os
import subprocess
import sys

kubeconfig = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--kubeconfig="))
out = subprocess.run([os.environ.get("BENCH_REAL_KUBECTL", "kubectl"), f"--kubeconfig={kubeconfig}",
                      "get", "nodes", "-l", "type=kwok", "-o", "json"], capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(1)
nodes = json.loads(out.stdout)["items"]
ready = sum(1 for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in n.get("status", {}).get("conditions", [])))
print(f"{ready}/{len(nodes)} nodes Ready", file=sys.stderr)
sys.exit(0 if nodes and ready == len(nodes) else 1)
