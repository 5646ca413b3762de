//! Detection-bridge benchmark driver: publishes the camera fixture's 1280×720 rgb8 frame
//! (`tests/fixtures/camera/three_hd.png`, three drawn boxes) as `sensor_msgs/Image` at a fixed
//! rate, each stamped with the wall clock at publication, and subscribes to the bridge's
//! `vision_msgs/Detection2DArray`. Latency is the reception time minus the array's header stamp
//! (the image's stamp copied by the bridge: the same clock in the same process). Counts frames
//! published, arrays received, arrays whose boxes are the fixture's, and reads the bridge's own
//! counters from its `/metrics` before and after the measured window.
//!
//! `cargo run --release -p ros2-bridge --example detect_bench -- LABEL OUT.json SECONDS RATE_HZ
//! BRIDGE_METRICS_ADDR`, inside a loopback-only network namespace with a bridge and a sidecar
//! running (see bench/detect.sh). The camera publisher uses SensorDataQoS (best effort), as
//! camera drivers commonly do; the detections reader is reliable.
#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use ros2_bridge::msg::{Detection2DArray, Header, Image, Time};
use ros2_bridge::ros::{self, RosOptions};
use serde_json::{Value, json};

const USAGE: &str = "usage: detect_bench LABEL OUT.json SECONDS RATE_HZ BRIDGE_METRICS_ADDR";
/// Frames published before the measured window, once detections flow.
const WARMUP: Duration = Duration::from_secs(3);
/// After the last measured frame, how long late detections are still awaited.
const DRAIN: Duration = Duration::from_secs(2);

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/camera")
}

/// The fixture frame.
struct Fixture {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    /// Drawn boxes `[x1, y1, x2, y2]`.
    boxes: Vec<[f64; 4]>,
    /// How far a detected edge may be from the drawn one, in pixels.
    tol: f64,
}

/// The fixture frame's pixels and drawn boxes.
fn load_frame() -> anyhow::Result<Fixture> {
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json"))?)?;
    let f = exp["frames"]
        .as_array()
        .context("frames")?
        .iter()
        .find(|f| f["file"] == "three_hd.png")
        .context("three_hd.png in expected.json")?;
    let boxes = f["boxes"]
        .as_array()
        .context("boxes")?
        .iter()
        .map(|b| {
            let g = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
            [g("x1"), g("y1"), g("x2"), g("y2")]
        })
        .collect();
    let size = &exp["detector"]["size"];
    let (mw, mh) = (
        size[0].as_f64().context("size")?,
        size[1].as_f64().context("size")?,
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(
        fixture().join("three_hd.png"),
    )?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("png size")?];
    let info = reader.next_frame(&mut buf)?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        bail!("three_hd.png is not rgb8");
    }
    buf.truncate(info.buffer_size());
    // Edges within about one detector input pixel (the README's contract), 1.5 allowed.
    let tol = 1.5 / (mw / f64::from(info.width)).min(mh / f64::from(info.height));
    Ok(Fixture {
        width: info.width,
        height: info.height,
        pixels: buf,
        boxes,
        tol,
    })
}

/// Whether the array holds exactly the drawn boxes, each edge within `tol` pixels.
fn boxes_match(msg: &Detection2DArray, want: &[[f64; 4]], tol: f64) -> bool {
    msg.detections.len() == want.len()
        && want.iter().all(|w| {
            msg.detections.iter().any(|d| {
                let (cx, cy) = (d.bbox.center.position.x, d.bbox.center.position.y);
                let (hw, hh) = (d.bbox.size_x / 2.0, d.bbox.size_y / 2.0);
                let got = [cx - hw, cy - hh, cx + hw, cy + hh];
                got.iter().zip(w).all(|(a, b)| (a - b).abs() <= tol)
            })
        })
}

fn wall() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn stamp_of(t: &Time) -> Duration {
    Duration::new(u64::try_from(t.sec).unwrap_or(0), t.nanosec)
}

/// The bridge's counters: `robofleet_detect_*` and the camera topic's messages in.
fn scrape(addr: &str) -> anyhow::Result<Value> {
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let mut out = serde_json::Map::new();
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let keep = line.starts_with("robofleet_detect_frames_total")
            || line.starts_with("robofleet_detect_latency_seconds_count")
            || line.starts_with("robofleet_detect_latency_seconds_sum")
            || line.starts_with("robofleet_ros_topic_messages_total")
            || line.starts_with("robofleet_ros_malformed_messages_total");
        if let Some((k, v)) = line.rsplit_once(' ')
            && keep
            && let Ok(v) = v.parse::<f64>()
        {
            out.insert(k.to_owned(), json!(v));
        }
    }
    Ok(Value::Object(out))
}

fn delta(before: &Value, after: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(a) = after.as_object() {
        for (k, v) in a {
            let b = before[k].as_f64().unwrap_or(0.0);
            out.insert(k.clone(), json!(v.as_f64().unwrap_or(0.0) - b));
        }
    }
    Value::Object(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Measured {
    published: usize,
    received: usize,
    boxes_ok: usize,
    latencies: Vec<f64>,
    publish_ms: Vec<f64>,
    outside_window: usize,
    before: Value,
    after: Value,
    window_s: f64,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let label = args.next().context(USAGE)?;
    let out = args.next().context(USAGE)?;
    let seconds: f64 = args.next().context(USAGE)?.parse()?;
    let rate: f64 = args.next().context(USAGE)?.parse()?;
    let metrics = args.next().context(USAGE)?;
    let Fixture {
        width,
        height,
        pixels,
        boxes: want,
        tol,
    } = load_frame()?;
    let period = Duration::from_secs_f64(1.0 / rate);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let m = local.block_on(&rt, async {
        let ctx = ros::context(&RosOptions::from_env(None))?;
        let mut node = ros::node(&ctx, "detect_bench")?;
        let spinner = node.spinner().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let spin = tokio::task::spawn_local(async move {
            let _ = spinner.spin().await;
        });
        let cam_topic = node
            .create_topic(
                &ros::topic_name("/camera/image_raw")?,
                ros::type_name::<Image>(),
                &ros::qos_sensor(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let cam = node
            .create_publisher::<Image>(&cam_topic, Some(ros::qos_sensor()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let det_topic = node
            .create_topic(
                &ros::topic_name("/detections")?,
                ros::type_name::<Detection2DArray>(),
                &ros::qos_reliable(100),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let dets = node
            .create_subscription::<Detection2DArray>(&det_topic, Some(ros::qos_reliable(100)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut stream = Box::pin(dets.async_stream());

        let mut next = tokio::time::Instant::now();
        let warmup_deadline = Instant::now() + Duration::from_secs(60);
        // Warm-up: publish until detections flow, then WARMUP more.
        let mut flowing: Option<Instant> = None;
        // Measured window: stamps published in it, and what came back.
        let mut measuring: Option<(Instant, Value)> = None;
        let mut sent: HashSet<Duration> = HashSet::new();
        let mut seen: HashSet<Duration> = HashSet::new();
        let (mut received, mut boxes_ok, mut outside_window) = (0usize, 0usize, 0usize);
        let mut latencies = Vec::new();
        let mut publish_ms = Vec::new();
        let mut done_publishing: Option<(Instant, Value)> = None;
        loop {
            tokio::select! {
                Some(item) = stream.next() => {
                    let (msg, _) = item.map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    let now = wall();
                    let s = stamp_of(&msg.header.stamp);
                    if flowing.is_none() {
                        flowing = Some(Instant::now());
                    }
                    if sent.contains(&s) {
                        if !seen.insert(s) {
                            bail!("{label}: detections for one frame twice");
                        }
                        received += 1;
                        latencies.push(now.saturating_sub(s).as_secs_f64());
                        if boxes_match(&msg, &want, tol) {
                            boxes_ok += 1;
                        }
                    } else if measuring.is_some() {
                        outside_window += 1;
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    // A fixed schedule; a publisher more than a period behind skips ahead rather
                    // than bursting (the rate reached is reported).
                    next += period;
                    let now = tokio::time::Instant::now();
                    if next + period < now {
                        next = now;
                    }
                    if let Some((t, _)) = &done_publishing {
                        if t.elapsed() >= DRAIN {
                            break;
                        }
                        continue;
                    }
                    match (flowing, &measuring) {
                        (None, _) if Instant::now() > warmup_deadline => {
                            bail!("{label}: no detections within 60 s of warm-up");
                        }
                        (Some(f), None) if f.elapsed() >= WARMUP => {
                            measuring = Some((Instant::now(), scrape(&metrics)?));
                        }
                        _ => {}
                    }
                    if let Some((t0, _)) = &measuring
                        && t0.elapsed().as_secs_f64() >= seconds
                    {
                        done_publishing = Some((Instant::now(), scrape(&metrics)?));
                        continue;
                    }
                    let stamp = Time::now();
                    let img = Image {
                        header: Header { stamp, frame_id: "camera".into() },
                        height,
                        width,
                        encoding: "rgb8".into(),
                        is_bigendian: 0,
                        step: width * 3,
                        data: pixels.clone(),
                    };
                    let t = Instant::now();
                    cam.publish(img).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    if measuring.is_some() {
                        publish_ms.push(t.elapsed().as_secs_f64() * 1e3);
                        sent.insert(stamp_of(&stamp));
                    }
                }
            }
        }
        node.stop_spinner();
        let _ = spin.await;
        let (t0, before) = measuring.context("never measured")?;
        let (t1, _) = done_publishing.context("never finished")?;
        // The bridge's counters after the drain: every measured frame has had its outcome.
        let after = scrape(&metrics)?;
        anyhow::Ok(Measured {
            published: sent.len(),
            received,
            boxes_ok,
            latencies,
            publish_ms,
            outside_window,
            before,
            after,
            window_s: t1.duration_since(t0).as_secs_f64(),
        })
    })?;
    let mut sorted = m.latencies.clone();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        bail!("{label}: no detections in the measured window");
    }
    let mut pub_sorted = m.publish_ms.clone();
    pub_sorted.sort_by(f64::total_cmp);
    let bridge = delta(&m.before, &m.after);
    let summary = json!({
        "label": label,
        "frame": {"width": width, "height": height, "encoding": "rgb8", "bytes": pixels.len()},
        "rate_hz": rate,
        "window_s": m.window_s,
        "published_rate_hz": m.published as f64 / m.window_s,
        "published": m.published,
        "received": m.received,
        "dropped": m.published - m.received,
        "dropped_fraction": (m.published - m.received) as f64 / m.published as f64,
        "boxes_match": m.boxes_ok,
        "outside_window": m.outside_window,
        "p50_ms": percentile(&sorted, 0.5) * 1e3,
        "p90_ms": percentile(&sorted, 0.9) * 1e3,
        "p99_ms": percentile(&sorted, 0.99) * 1e3,
        "max_ms": sorted[sorted.len() - 1] * 1e3,
        "publish_call_p50_ms": percentile(&pub_sorted, 0.5),
        "publish_call_p99_ms": percentile(&pub_sorted, 0.99),
        "bridge_counters_delta": bridge,
        "latencies_ms": m.latencies.iter().map(|s| s * 1e3).collect::<Vec<_>>(),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&summary)?)?;
    println!(
        "{label}: published={} received={} boxes_match={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        m.published,
        m.received,
        m.boxes_ok,
        percentile(&sorted, 0.5) * 1e3,
        percentile(&sorted, 0.99) * 1e3,
        sorted[sorted.len() - 1] * 1e3
    );
    Ok(())
}
