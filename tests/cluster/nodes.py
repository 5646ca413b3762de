#!/usr/bin/env python3
"""Print the Node objects for the test cluster: N simulated robots and one infra node.

Robot i gets host IP 127.(100 + i//250).0.(i%250 + 1) and pod CIDR 127.(10 + i//250).(i%250).0/24,
so up to 10,000 robots stay inside 127.0.0.0/8 and never overlap.
"""
import argparse
import json

ZONES = ["zone-a", "zone-b", "zone-c"]


def node(name, labels, host_ip, pod_cidr):
    capacity = {"cpu": "8", "memory": "16Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                # kwok simulates (heartbeats) exactly the nodes with this label; removing it takes
                # the robot "offline" as a robot that lost its network would be.
                "kwok.x-k8s.io/node": "fake",
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **labels,
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": host_ip},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": capacity,
            "capacity": capacity,
        },
    }


def robot(i):
    hi, lo = divmod(i, 250)
    labels = {
        "robofleet.io/robot": "true",
        "robofleet.io/ros-domain-id": str(i % 100 + 1),
        "robofleet.io/state": "idle",
        "topology.kubernetes.io/zone": ZONES[i % len(ZONES)],
    }
    return node(f"robot-{i:03d}", labels,
                f"127.{100 + hi}.0.{lo + 1}", f"127.{10 + hi}.{lo}.0/24")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--robots", type=int, default=3)
    a = p.parse_args()
    if not 0 <= a.robots <= 10000:
        raise SystemExit("--robots must be 0..10000")
    docs = [robot(i) for i in range(a.robots)]
    docs.append(node("infra-000", {"robofleet.io/infra": "true"}, "127.99.0.1", "127.9.0.0/24"))
    # JSON is valid YAML; one document per node keeps kubectl's errors pointing at one object.
    print("\n---\n".join(json.dumps(d) for d in docs))


if __name__ == "__main__":
    main()
