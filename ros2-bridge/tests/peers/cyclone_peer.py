#!/usr/bin/env python3
"""Independent ROS 2 peer for ros2-bridge's interop tests: Eclipse Cyclone DDS (PyPI `cyclonedds`).

The message types below are written from the ROS .msg definitions (tests/fixtures/ros2/msg and
the standard packages), not from the Rust types, so a field-order or type-name mistake on either
side fails to match or decode. Speaks JSON lines: events on stdout, commands on stdin.

Run only inside a loopback-only network namespace (the Rust tests check before starting it).
"""
import argparse
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field

os.environ.setdefault("CYCLONEDDS_URI", """<CycloneDDS><Domain Id="any">
  <General><Interfaces><NetworkInterface name="lo" multicast="false"/></Interfaces>
           <AllowMulticast>false</AllowMulticast></General>
  <Discovery><ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>
             <Peers><Peer address="127.0.0.1"/></Peers></Discovery>
</Domain></CycloneDDS>""")

from cyclonedds.core import Policy, Qos  # noqa: E402
from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.idl import IdlStruct  # noqa: E402
from cyclonedds.idl import types as t  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402
from cyclonedds.util import duration  # noqa: E402


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: t.int32
    nanosec: t.uint32


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str


@dataclass
class Bool(IdlStruct, typename="std_msgs::msg::dds_::Bool_"):
    data: bool


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str


@dataclass
class LaserScan(IdlStruct, typename="sensor_msgs::msg::dds_::LaserScan_"):
    header: Header
    angle_min: t.float32
    angle_max: t.float32
    angle_increment: t.float32
    time_increment: t.float32
    scan_time: t.float32
    range_min: t.float32
    range_max: t.float32
    ranges: t.sequence[t.float32]
    intensities: t.sequence[t.float32]


@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: t.uint32
    width: t.uint32
    encoding: str
    is_bigendian: t.uint8
    step: t.uint32
    data: t.sequence[t.uint8]


@dataclass
class SpeedLimit(IdlStruct, typename="nav2_msgs::msg::dds_::SpeedLimit_"):
    header: Header
    percentage: bool
    speed_limit: t.float64


# Garbage on the scan topic: same DDS type name, wrong layout.
@dataclass
class LaserScanTruncated(IdlStruct, typename="sensor_msgs::msg::dds_::LaserScan_"):
    header: Header
    angle_min: t.float32


@dataclass
class LaserScanBadLength(IdlStruct, typename="sensor_msgs::msg::dds_::LaserScan_"):
    header: Header
    angle_min: t.float32
    angle_max: t.float32
    angle_increment: t.float32
    time_increment: t.float32
    scan_time: t.float32
    range_min: t.float32
    range_max: t.float32
    ranges_length: t.uint32  # claims a million floats that never follow


# vision_msgs 4.x (tests/fixtures/ros2/msg/vision_msgs) and geometry_msgs.
@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: t.float64
    y: t.float64
    z: t.float64


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: t.float64
    y: t.float64
    z: t.float64
    w: t.float64


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point
    orientation: Quaternion


@dataclass
class PoseWithCovariance(IdlStruct, typename="geometry_msgs::msg::dds_::PoseWithCovariance_"):
    pose: Pose
    covariance: t.array[t.float64, 36]


@dataclass
class ObjectHypothesis(IdlStruct, typename="vision_msgs::msg::dds_::ObjectHypothesis_"):
    class_id: str
    score: t.float64


@dataclass
class ObjectHypothesisWithPose(IdlStruct, typename="vision_msgs::msg::dds_::ObjectHypothesisWithPose_"):
    hypothesis: ObjectHypothesis
    pose: PoseWithCovariance


@dataclass
class Point2D(IdlStruct, typename="vision_msgs::msg::dds_::Point2D_"):
    x: t.float64
    y: t.float64


@dataclass
class Pose2D(IdlStruct, typename="vision_msgs::msg::dds_::Pose2D_"):
    position: Point2D
    theta: t.float64


@dataclass
class BoundingBox2D(IdlStruct, typename="vision_msgs::msg::dds_::BoundingBox2D_"):
    center: Pose2D
    size_x: t.float64
    size_y: t.float64


@dataclass
class Detection2D(IdlStruct, typename="vision_msgs::msg::dds_::Detection2D_"):
    header: Header
    results: t.sequence[ObjectHypothesisWithPose]
    bbox: BoundingBox2D
    id: str


@dataclass
class Detection2DArray(IdlStruct, typename="vision_msgs::msg::dds_::Detection2DArray_"):
    header: Header
    detections: t.sequence[Detection2D]


TYPES = {"scan": LaserScan, "bool": Bool, "detections": Detection2DArray, "image": Image, "speed_limit": SpeedLimit}

_out_lock = threading.Lock()


def emit(**ev):
    ev.setdefault("t", time.monotonic_ns())
    with _out_lock:
        sys.stdout.write(json.dumps(ev, allow_nan=True) + "\n")
        sys.stdout.flush()


def dds_topic(ros_topic):
    return "rt/" + ros_topic.lstrip("/")


def qos(reliable, transient_local, depth):
    rel = Policy.Reliability.Reliable(duration(seconds=1)) if reliable else Policy.Reliability.BestEffort
    dur = Policy.Durability.TransientLocal if transient_local else Policy.Durability.Volatile
    return Qos(rel, dur, Policy.History.KeepLast(depth),
               Policy.DataRepresentation(use_cdrv0_representation=True),
               Policy.DurabilityService(cleanup_delay=0, history=Policy.History.KeepLast(depth),
                                        max_samples=-1, max_instances=-1, max_samples_per_instance=-1))


def participant():
    return DomainParticipant(int(os.environ.get("ROS_DOMAIN_ID", "0")))


def stdin_closed_event():
    """Set when stdin reaches EOF: the test dropped us."""
    ev = threading.Event()

    def watch():
        for _ in sys.stdin:
            pass
        ev.set()
    threading.Thread(target=watch, daemon=True).start()
    return ev


def to_json(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, (bytes, bytearray)):
        return list(v)
    if isinstance(v, list):
        return [to_json(x) for x in v]
    if hasattr(v, "__dataclass_fields__"):
        return {k: to_json(getattr(v, k)) for k in v.__dataclass_fields__}
    return v


def reader_loop(args):
    """Print every sample of a topic (and matched-publisher changes) until stdin closes."""
    dp = participant()
    typ = TYPES[args.type]
    q = qos(args.reliability == "reliable", args.durability == "transient_local", args.depth)
    reader = DataReader(dp, Topic(dp, dds_topic(args.topic), typ, qos=q), qos=q)
    done = stdin_closed_event()
    matched = -1
    while not done.is_set():
        n = len(reader.get_matched_publications())
        if n != matched:
            matched = n
            emit(ev="matched", n=n)
        for s in reader.take(N=256):
            now = time.monotonic_ns()
            if typ is Bool:
                emit(ev="sample", data=bool(s.data), t=now)
            else:
                emit(ev="sample", msg=to_json(s), t=now)
        time.sleep(0.0005)


def scan_msg(cmd, seq):
    n = int(cmd.get("n", 360))
    ranges = [float(cmd.get("fill", math.inf))] * n
    for deg, r in cmd.get("points", []):
        ranges[(int(deg) + 180) % n] = float(r)
    return LaserScan(
        header=Header(stamp=Time(sec=seq, nanosec=0), frame_id=cmd.get("frame_id", "laser")),
        angle_min=-math.pi, angle_max=math.pi - 2 * math.pi / n, angle_increment=2 * math.pi / n,
        time_increment=0.0, scan_time=0.025, range_min=0.05, range_max=30.0,
        ranges=ranges, intensities=[])


def scan_publisher(args):
    """Publish scans described by stdin commands: {"points": [[deg, range], ...], "fill": inf, "n": 360}
    or {"garbage": "truncated" | "bad_length"}."""
    dp = participant()
    q = qos(args.reliability == "reliable", False, 5)
    writer = DataWriter(dp, Topic(dp, dds_topic(args.topic), LaserScan, qos=q), qos=q)
    garbage = {}
    matched = -1
    seq = 0

    def report_match():
        nonlocal matched
        n = len(writer.get_matched_subscriptions())
        if n != matched:
            matched = n
            emit(ev="matched", n=n)

    report_match()
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            report_match()
            time.sleep(0.01)
    threading.Thread(target=poll, daemon=True).start()
    for line in sys.stdin:
        cmd = json.loads(line)
        seq += 1
        kind = cmd.get("garbage")
        if kind:
            if kind not in garbage:
                gdp = participant()
                typ = LaserScanTruncated if kind == "truncated" else LaserScanBadLength
                garbage[kind] = (gdp, DataWriter(gdp, Topic(gdp, dds_topic(args.topic), typ, qos=q), qos=q))
                deadline = time.monotonic() + 10
                while not garbage[kind][1].get_matched_subscriptions() and time.monotonic() < deadline:
                    time.sleep(0.01)
                emit(ev="garbage_matched", n=len(garbage[kind][1].get_matched_subscriptions()))
            h = Header(stamp=Time(sec=seq, nanosec=0), frame_id="laser")
            if kind == "truncated":
                garbage[kind][1].write(LaserScanTruncated(header=h, angle_min=0.0))
            else:
                garbage[kind][1].write(LaserScanBadLength(header=h, angle_min=0.0, angle_max=1.0,
                                                          angle_increment=0.1, time_increment=0.0,
                                                          scan_time=0.1, range_min=0.1, range_max=1.0,
                                                          ranges_length=1_000_000))
            emit(ev="sent", seq=seq)
            continue
        msg = scan_msg(cmd, seq)
        t0 = time.monotonic_ns()
        writer.write(msg)
        emit(ev="sent", seq=seq, t=t0)
    stop.set()


def string_publisher(args):
    """Publish std_msgs/String: one stdin line {"data": "..."} per message."""
    dp = participant()
    q = qos(True, False, 10)
    writer = DataWriter(dp, Topic(dp, dds_topic(args.topic), String, qos=q), qos=q)
    deadline = time.monotonic() + 20
    while not writer.get_matched_subscriptions() and time.monotonic() < deadline:
        time.sleep(0.01)
    emit(ev="matched", n=len(writer.get_matched_subscriptions()))
    for line in sys.stdin:
        writer.write(String(data=json.loads(line)["data"]))
        emit(ev="sent")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read")
    r.add_argument("--topic", required=True)
    r.add_argument("--type", choices=sorted(TYPES), required=True)
    r.add_argument("--reliability", choices=["reliable", "best_effort"], default="reliable")
    r.add_argument("--durability", choices=["volatile", "transient_local"], default="volatile")
    r.add_argument("--depth", type=int, default=100)
    p = sub.add_parser("publish-scans")
    p.add_argument("--topic", required=True)
    p.add_argument("--reliability", choices=["reliable", "best_effort"], default="best_effort")
    st = sub.add_parser("publish-strings")
    st.add_argument("--topic", required=True)
    args = ap.parse_args()
    emit(ev="ready", pid=os.getpid())
    if args.cmd == "read":
        reader_loop(args)
    elif args.cmd == "publish-strings":
        string_publisher(args)
    else:
        scan_publisher(args)


if __name__ == "__main__":
    main()
