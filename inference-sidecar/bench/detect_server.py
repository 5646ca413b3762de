"""The Python comparison server of the /v1/detect benchmark: a detector served "the usual way".

onnxruntime + Pillow + numpy behind FastAPI/uvicorn, the same declared processing as
`inference-sidecar serve --detect-*` (decode, letterbox, normalise, session.run, YOLOv8/YOLOX
decode, class-wise NMS, boxes mapped back to the original image), configured by environment
variables so that `uvicorn --workers N` workers read the same configuration:

  DETECT_MODEL          the ONNX file
  DETECT_SIZE           WxH (model input)
  DETECT_LAYOUT         yolov8 | yolov5 | yolox
  DETECT_STRIDES        YOLOX strides, e.g. 8,16,32
  DETECT_COLOR_ORDER    rgb | bgr
  DETECT_SCALE          multiplier of 0-255 pixels (mean 0, std 1)
  DETECT_LETTERBOX      center | topLeft
  DETECT_PAD_VALUE      0-255
  DETECT_RESIZE_ROUNDING  round | floor (letterboxed sides)
  DETECT_CONFIDENCE, DETECT_IOU, DETECT_CLASSES (comma-separated)
  DETECT_INTRA_OP_THREADS  intra-op threads of this worker's session
  DETECT_READY_DIR      each worker creates a file named after its pid here once its session loaded

Same thread budget as the sidecar: each worker process has one session with the same session
options (intra-op threads, one inter-op thread, no spinning, all graph optimisations) and runs one
`session.run` at a time (a lock, as the sidecar runs one request per inference thread); decoding and
pre-/post-processing run in Starlette's thread pool, as the sidecar's run on its blocking pool.
Run by `inference-sidecar/tests/detect_bench.rs` from the bench venv (`bench/detect.sh`).
"""

import asyncio.base_events
import io
import os
import socket
import threading

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

MODEL = os.environ["DETECT_MODEL"]
W, H = (int(v) for v in os.environ["DETECT_SIZE"].lower().split("x"))
LAYOUT = os.environ.get("DETECT_LAYOUT", "yolov8")
STRIDES = [int(s) for s in os.environ.get("DETECT_STRIDES", "8,16,32").split(",")]
BGR = os.environ.get("DETECT_COLOR_ORDER", "rgb") == "bgr"
SCALE = float(os.environ.get("DETECT_SCALE", str(1.0 / 255.0)))
TOP_LEFT = os.environ.get("DETECT_LETTERBOX", "center") == "topLeft"
PAD = int(os.environ.get("DETECT_PAD_VALUE", "114"))
FLOOR = os.environ.get("DETECT_RESIZE_ROUNDING", "round") == "floor"
CONF = float(os.environ.get("DETECT_CONFIDENCE", "0.25"))
IOU = float(os.environ.get("DETECT_IOU", "0.45"))
CLASSES = [c for c in os.environ.get("DETECT_CLASSES", "").split(",") if c]
THREADS = int(os.environ.get("DETECT_INTRA_OP_THREADS", "1"))


# uvicorn --workers N (N > 1) hands its workers a listening socket created with proto 0, and asyncio
# sets TCP_NODELAY only on accepted sockets whose proto is IPPROTO_TCP: every keep-alive response
# then waits for the client's delayed ACK (~40 ms; a known, open uvicorn bug). The single-process
# path is unaffected. Set TCP_NODELAY as that path does, so the comparison measures the pipeline.
def _set_nodelay(sock):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


asyncio.base_events._set_nodelay = _set_nodelay

opts = ort.SessionOptions()
opts.intra_op_num_threads = THREADS
opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
session = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0].name
run_lock = threading.Lock()

if LAYOUT == "yolox":
    grids, strides = [], []
    for s in STRIDES:
        xv, yv = np.meshgrid(np.arange(W // s), np.arange(H // s))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((grids[-1].shape[0], 1), s))
    GRID = np.concatenate(grids).astype(np.float32)
    GRID_STRIDE = np.concatenate(strides).astype(np.float32)

app = FastAPI()

if os.environ.get("DETECT_READY_DIR"):
    open(os.path.join(os.environ["DETECT_READY_DIR"], str(os.getpid())), "w").close()


def preprocess(body: bytes, raw_size=None):
    if raw_size is None:
        img = Image.open(io.BytesIO(body))
        img = img.convert("RGB")
    else:
        # a raw rgb8 frame (the sidecar's application/x-robofleet-raw with width/height headers)
        img = Image.frombuffer("RGB", raw_size, body, "raw", "RGB", 0, 1)
    iw, ih = img.size
    r = min(W / iw, H / ih)
    side = int if FLOOR else round
    nw, nh = max(1, min(W, side(iw * r))), max(1, min(H, side(ih * r)))
    px, py = (0, 0) if TOP_LEFT else ((W - nw) // 2, (H - nh) // 2)
    canvas = np.full((H, W, 3), PAD, dtype=np.uint8)
    canvas[py : py + nh, px : px + nw] = np.asarray(img.resize((nw, nh), Image.BILINEAR))
    if BGR:
        canvas = canvas[:, :, ::-1]
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32) * SCALE
    return np.ascontiguousarray(x), (r, px, py, iw, ih)


def nms(boxes, scores, thr):
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]))
        inter = w * h
        ovr = inter / np.maximum(areas[i] + areas[order[1:]] - inter, 1e-9)
        order = order[np.where(ovr <= thr)[0] + 1]
    return keep


def postprocess(out: np.ndarray, geometry):
    r, px, py, iw, ih = geometry
    if LAYOUT == "yolov8":
        pred = out[0].T  # [N, 4 + C]
        boxes, scores = pred[:, :4], pred[:, 4:]
    else:
        pred = out[0].copy()  # [N, 5 + C]
        if LAYOUT == "yolox":
            pred[:, :2] = (pred[:, :2] + GRID) * GRID_STRIDE
            pred[:, 2:4] = np.exp(pred[:, 2:4]) * GRID_STRIDE
        boxes, scores = pred[:, :4], pred[:, 4:5] * pred[:, 5:]
    cls = scores.argmax(1)
    conf = scores[np.arange(len(cls)), cls]
    m = conf >= CONF
    boxes, conf, cls = boxes[m], conf[m], cls[m]
    xyxy = np.empty_like(boxes)
    xyxy[:, 0] = np.clip((boxes[:, 0] - boxes[:, 2] / 2 - px) / r, 0, iw)
    xyxy[:, 1] = np.clip((boxes[:, 1] - boxes[:, 3] / 2 - py) / r, 0, ih)
    xyxy[:, 2] = np.clip((boxes[:, 0] + boxes[:, 2] / 2 - px) / r, 0, iw)
    xyxy[:, 3] = np.clip((boxes[:, 1] + boxes[:, 3] / 2 - py) / r, 0, ih)
    dets = []
    for c in np.unique(cls):
        idx = np.where(cls == c)[0]
        for k in nms(xyxy[idx], conf[idx], IOU):
            i = idx[k]
            d = {"class_id": int(c), "confidence": float(conf[i])}
            if int(c) < len(CLASSES):
                d["class_name"] = CLASSES[int(c)]
            d.update(zip(("x1", "y1", "x2", "y2"), (float(v) for v in xyxy[i])))
            dets.append(d)
    dets.sort(key=lambda d: -d["confidence"])
    return dets


def detect_sync(body: bytes, raw_size=None):
    x, geometry = preprocess(body, raw_size)
    with run_lock:
        out = session.run(None, {INPUT: x})[0]
    return {"width": geometry[3], "height": geometry[4], "detections": postprocess(out, geometry)}


@app.get("/health")
def health():
    return {"ok": True}


@app.post("/v1/detect")
async def detect(request: Request):
    body = await request.body()
    raw_size = None
    if request.headers.get("content-type", "").startswith("application/x-robofleet-raw"):
        if request.headers.get("x-robofleet-encoding") != "rgb8":
            return Response("only rgb8 raw frames", status_code=415)
        raw_size = (int(request.headers["x-robofleet-width"]), int(request.headers["x-robofleet-height"]))
    try:
        result = await run_in_threadpool(detect_sync, body, raw_size)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return Response(str(e), status_code=400)
    return JSONResponse(result)
