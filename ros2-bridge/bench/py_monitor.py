#!/usr/bin/env python3
"""Baseline for the reaction benchmark: the same stop-sector check as `ros2-bridge safety --scan
--stop-topic --stop-distance --sector-deg` (REP 117: NaN and out-of-range invalid, -Inf at
range_min, +Inf clear; no hold time), written the way a Python ROS 2 node would be, on Eclipse
Cyclone DDS (PyPI `cyclonedds`) and numpy. Publishes std_msgs/Bool on every change and every 100 ms.

Run only inside a loopback-only network namespace.
"""
import argparse
import math
import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "peers"))
import cyclone_peer as cp  # noqa: E402  (message types, QoS, loopback config)

import numpy as np  # noqa: E402
from cyclonedds.core import Listener  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scan", default="/scan")
    ap.add_argument("--stop-topic", default="/safety/stop")
    ap.add_argument("--stop-distance", type=float, default=0.35)
    ap.add_argument("--sector-deg", type=float, default=60.0)
    args = ap.parse_args()
    dp = cp.participant()
    lock_qos = cp.qos(True, True, 1)
    writer = DataWriter(dp, Topic(dp, cp.dds_topic(args.stop_topic), cp.Bool, qos=lock_qos), qos=lock_qos)
    state = {"stop": True, "geom": None}
    lock = threading.Lock()
    half = math.radians(args.sector_deg) / 2

    def publish(v):
        writer.write(cp.Bool(data=v))

    def judge(scan):
        r = np.asarray(scan.ranges, dtype=np.float32)
        key = (scan.angle_min, scan.angle_increment, r.size)
        if state["geom"] is None or state["geom"][0] != key:
            a = scan.angle_min + np.arange(r.size, dtype=np.float64) * scan.angle_increment
            state["geom"] = (key, np.abs(np.arctan2(np.sin(a), np.cos(a))) <= half)
        in_sector = state["geom"][1]
        r = np.where(r == -np.inf, scan.range_min, r)
        valid = (r >= scan.range_min) & (r <= scan.range_max)
        hit = np.any(in_sector & valid & (r <= args.stop_distance))
        invalid = np.count_nonzero(in_sector & np.isnan(r)) > 0.5 * np.count_nonzero(in_sector)
        return bool(hit or invalid)

    class OnScan(Listener):
        def on_data_available(self, reader):
            try:
                self.handle(reader)
            except Exception:  # a listener must not die silently
                traceback.print_exc()

        def handle(self, reader):
            for scan in reader.take(N=16):
                stop = judge(scan)
                with lock:
                    if stop != state["stop"]:
                        state["stop"] = stop
                        publish(stop)

    scan_qos = cp.qos(False, False, 5)
    listener = OnScan()
    reader = DataReader(dp, Topic(dp, cp.dds_topic(args.scan), cp.LaserScan, qos=scan_qos), qos=scan_qos, listener=listener)
    publish(True)
    cp.emit(ev="ready", pid=os.getpid())
    while reader and listener:  # until SIGTERM (the references keep both alive)
        time.sleep(0.1)
        with lock:
            publish(state["stop"])


if __name__ == "__main__":
    main()
