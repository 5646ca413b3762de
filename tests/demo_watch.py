#!/usr/bin/env python3
"""The demo's fleet meter: every second it scrapes, on each robot's own address, the detection
bridge's metrics (robofleet_detect_*) and the inference sidecar's (robofleet_inference_requests_total)
and adds up how much each counter grew. Pods are replaced during rollouts and their counters start
again from zero: a counter that went down counts from zero (the Prometheus `increase` rule), so
nothing is counted twice (what a replaced pod counted after its last scrape is not seen). Until
SIGTERM, it rewrites --out with the totals per robot:

  {"robot-000": {"frames_ok": n, "frames_failed": n, "detections": n, "requests_ok": n,
                 "requests_failed": n, "scrapes_failed": n, "latency_sum": s, "latency_count": n}}

Only the robots given with --robot NAME=IP are scraped; unreachable robots are counted, not fatal.
"""
import argparse
import json
import os
import re
import signal
import threading
import time
import urllib.request

SERIES = re.compile(r'^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN|\+Inf)$')
FAILED_OUTCOMES = {"error", "rejected", "timeout"}


def scrape(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode("utf-8", "replace")
    out = {}
    for line in text.splitlines():
        m = SERIES.match(line.strip())
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def counters(bridge, sidecar):
    """The robot's current counter values, by the names the totals use."""
    c = {"frames_ok": 0.0, "frames_failed": 0.0, "detections": 0.0, "requests_ok": 0.0,
         "requests_failed": 0.0, "latency_sum": 0.0, "latency_count": 0.0}
    for (name, labels), v in bridge.items():
        if name == "robofleet_detect_frames_total":
            c["frames_ok" if 'outcome="ok"' in labels else "frames_failed"] += v
        elif name == "robofleet_detect_detections_total":
            c["detections"] += v
        elif name == "robofleet_detect_latency_seconds_sum":
            c["latency_sum"] += v
        elif name == "robofleet_detect_latency_seconds_count":
            c["latency_count"] += v
    for (name, labels), v in sidecar.items():
        if name == "robofleet_inference_requests_total":
            outcome = re.search(r'outcome="([^"]*)"', labels)
            outcome = outcome.group(1) if outcome else ""
            if outcome == "success":
                c["requests_ok"] += v
            elif outcome in FAILED_OUTCOMES:
                c["requests_failed"] += v
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", action="append", default=[], help="NAME=IP, repeated")
    ap.add_argument("--bridge-port", type=int, default=8003)
    ap.add_argument("--sidecar-port", type=int, default=8002)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    robots = dict(r.split("=", 1) for r in args.robot)
    totals = {name: {"scrapes_failed": 0} for name in robots}
    last = {}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        for name, ip in robots.items():
            try:
                now = counters(scrape(f"http://{ip}:{args.bridge_port}/metrics"),
                               scrape(f"http://{ip}:{args.sidecar_port}/metrics"))
            except (OSError, ValueError):
                totals[name]["scrapes_failed"] += 1
                continue
            prev = last.get(name, {})
            for k, v in now.items():
                p = prev.get(k, 0.0)
                grew = v - p if v >= p else v  # a new pod's counter starts from zero
                totals[name][k] = totals[name].get(k, 0.0) + grew
            last[name] = now
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(totals, f)
        os.replace(tmp, args.out)
        stop.wait(1.0)


if __name__ == "__main__":
    main()
