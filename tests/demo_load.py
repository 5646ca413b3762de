#!/usr/bin/env python3
"""Bounded inference load for the demo: one thread per robot sends Open Inference Protocol requests
to the robot's sidecar on its own address, alternating batch 1 and batch 2, at --rate requests per
second per robot (keep-alive connections), until SIGTERM or --seconds. Every second it rewrites
--out with the counts per robot ({"robot-000": {"ok": n, "failed": n, "unreachable": n}, ...}).
"""
import argparse
import http.client
import json
import os
import signal
import threading
import time

BODIES = [
    json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}),
    json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}),
]


def robot_loop(name, addr, model, rate, counts, stop):
    host, port = addr.rsplit(":", 1)
    conn = None
    i = 0
    while not stop.is_set():
        start = time.monotonic()
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=3)
            conn.request("POST", f"/v2/models/{model}/infer", BODIES[i % 2], {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            counts[name]["ok" if resp.status == 200 else "failed"] += 1
        except (OSError, http.client.HTTPException):
            counts[name]["unreachable"] += 1
            if conn is not None:
                conn.close()
            conn = None
        stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - start)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--robot", action="append", default=[], help="name=ip:port (repeat)")
    p.add_argument("--model", required=True)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=900.0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    counts = {}
    threads = []
    for r in a.robot:
        name, addr = r.split("=", 1)
        counts[name] = {"ok": 0, "failed": 0, "unreachable": 0}
        t = threading.Thread(target=robot_loop, args=(name, addr, a.model, a.rate, counts, stop), daemon=True)
        t.start()
        threads.append(t)
    deadline = time.monotonic() + a.seconds
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(1.0)
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(counts, f)
        os.replace(tmp, a.out)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    with open(a.out, "w") as f:
        json.dump(counts, f)


if __name__ == "__main__":
    main()
