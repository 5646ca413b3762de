#!/usr/bin/env python3
"""Cyclone DDS camera peer for the detection bridge's interop tests (PyPI `cyclonedds`).

Types come from cyclone_peer.py (written from the ROS .msg definitions, not from the Rust types)
plus sensor_msgs/CompressedImage and two malformed Image layouts. JSON lines: events on stdout,
commands on stdin. Run only inside a loopback-only network namespace.

  publish --topic T --type image|compressed
      stdin: {"width", "height", "encoding": "rgb8"|"bgr8", "background": [r,g,b],
              "boxes": [{"x1","y1","x2","y2","rgb"}], "stamp": [sec, nanosec], "frame_id",
              "corrupt": false}                       -> a raw sensor_msgs/Image drawn here
             {"png": PATH, "stamp": [...], "frame_id"} -> sensor_msgs/CompressedImage of the file
             {"garbage": "truncated" | "bad_length", "stamp": [...]}
                                                      -> same DDS type name, wrong layout
  stamps --topic T      prints {"ev": "sample", "stamp": [sec, nanosec], "frame_id", "width",
                        "height"} for every sensor_msgs/Image (not the pixels)
"""
import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cyclone_peer import (  # noqa: E402  (sets CYCLONEDDS_URI before cyclonedds loads)
    Header, Image, Time, dds_topic, emit, participant, qos, stdin_closed_event)

from cyclonedds.idl import IdlStruct  # noqa: E402
from cyclonedds.idl import types as t  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402


@dataclass
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header
    format: str
    data: t.sequence[t.uint8]


@dataclass
class ImageTruncated(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: t.uint32


@dataclass
class ImageBadLength(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: t.uint32
    width: t.uint32
    encoding: str
    is_bigendian: t.uint8
    step: t.uint32
    data_length: t.uint32  # claims a million bytes that never follow


def draw(cmd):
    w, h = int(cmd["width"]), int(cmd["height"])
    enc = cmd.get("encoding", "rgb8")
    order = (lambda c: bytes(c)) if enc == "rgb8" else (lambda c: bytes(reversed(c)))
    rows = [bytearray(order(cmd.get("background", [96, 96, 96])) * w) for _ in range(h)]
    for b in cmd.get("boxes", []):
        px = order(b["rgb"])
        for y in range(b["y1"], b["y2"]):
            rows[y][b["x1"] * 3:b["x2"] * 3] = px * (b["x2"] - b["x1"])
    data = b"".join(rows)
    if cmd.get("corrupt"):
        data = data[: len(data) // 2]
    return enc, w * 3, data


def header(cmd):
    sec, nanosec = cmd.get("stamp", [0, 0])
    return Header(stamp=Time(sec=int(sec), nanosec=int(nanosec)), frame_id=cmd.get("frame_id", "camera"))


def wait_matched(writer, what):
    deadline = time.monotonic() + 20
    while not writer.get_matched_subscriptions() and time.monotonic() < deadline:
        time.sleep(0.01)
    emit(ev="matched", what=what, n=len(writer.get_matched_subscriptions()))


def publisher(args):
    dp = participant()
    q = qos(True, False, 5)
    typ = Image if args.type == "image" else CompressedImage
    writer = DataWriter(dp, Topic(dp, dds_topic(args.topic), typ, qos=q), qos=q)
    wait_matched(writer, "frames")
    garbage = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        kind = cmd.get("garbage")
        if kind:
            if kind not in garbage:
                gdp = participant()
                gt = ImageTruncated if kind == "truncated" else ImageBadLength
                gw = DataWriter(gdp, Topic(gdp, dds_topic(args.topic), gt, qos=q), qos=q)
                wait_matched(gw, kind)
                garbage[kind] = (gdp, gw)
            gw = garbage[kind][1]
            if kind == "truncated":
                gw.write(ImageTruncated(header=header(cmd), height=4))
            else:
                gw.write(ImageBadLength(header=header(cmd), height=2, width=2, encoding="rgb8",
                                        is_bigendian=0, step=6, data_length=1_000_000))
        elif "png" in cmd:
            with open(cmd["png"], "rb") as f:
                data = f.read()
            writer.write(CompressedImage(header=header(cmd), format="png", data=data))
        else:
            enc, step, data = draw(cmd)
            writer.write(Image(header=header(cmd), height=int(cmd["height"]), width=int(cmd["width"]),
                               encoding=enc, is_bigendian=0, step=step, data=data))
        emit(ev="sent", stamp=cmd.get("stamp"))


def stamps(args):
    dp = participant()
    q = qos(False, False, 100)
    reader = DataReader(dp, Topic(dp, dds_topic(args.topic), Image, qos=q), qos=q)
    done = stdin_closed_event()
    matched = -1
    while not done.is_set():
        n = len(reader.get_matched_publications())
        if n != matched:
            matched = n
            emit(ev="matched", n=n)
        for s in reader.take(N=64):
            emit(ev="sample", stamp=[s.header.stamp.sec, s.header.stamp.nanosec],
                 frame_id=s.header.frame_id, width=s.width, height=s.height)
        time.sleep(0.001)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--topic", required=True)
    p.add_argument("--type", choices=["image", "compressed"], default="image")
    s = sub.add_parser("stamps")
    s.add_argument("--topic", required=True)
    args = ap.parse_args()
    emit(ev="ready", pid=os.getpid())
    if args.cmd == "publish":
        publisher(args)
    else:
        stamps(args)


if __name__ == "__main__":
    threading.current_thread().name = "camera_peer"
    main()
