//! Reaction benchmark driver: publishes 1080-beam LaserScans at 40 Hz, alternating an obstacle
//! inside the stop sector with a clear scan, and measures from each obstacle scan's publication to
//! the receipt of `true` on the stop lock. Works against any monitor with holdTime 0 (ros2-bridge
//! with `bench/policy.yaml`, or `bench/py_monitor.py`). Writes raw latencies and percentiles as JSON.
//!
//! `cargo run --release -p ros2-bridge --example reaction_bench -- LABEL OUT.json [SCANS]`, inside
//! a loopback-only network namespace (see bench/run.sh).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use ros2_bridge::msg::{Bool, Header, LaserScan, Time};
use ros2_bridge::ros::{self, RosOptions};

const BEAMS: usize = 1080;
const PERIOD: Duration = Duration::from_millis(25);

fn scan(obstacle: bool) -> LaserScan {
    let inc = std::f32::consts::TAU / BEAMS as f32;
    let mut ranges = vec![f32::INFINITY; BEAMS];
    if obstacle {
        // Straight ahead is beam BEAMS / 2 (angle 0); a 0.3 m obstacle a few beams wide.
        for r in &mut ranges[BEAMS / 2 - 3..=BEAMS / 2 + 3] {
            *r = 0.3;
        }
    }
    LaserScan {
        header: Header {
            stamp: Time::now(),
            frame_id: "laser".into(),
        },
        angle_min: -std::f32::consts::PI,
        angle_max: std::f32::consts::PI - inc,
        angle_increment: inc,
        time_increment: 0.0,
        scan_time: PERIOD.as_secs_f32(),
        range_min: 0.05,
        range_max: 30.0,
        ranges,
        intensities: vec![],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let label = args
        .next()
        .context("usage: reaction_bench LABEL OUT.json [SCANS]")?;
    let out = args
        .next()
        .context("usage: reaction_bench LABEL OUT.json [SCANS]")?;
    let n: usize = args.next().map_or(Ok(400), |s| s.parse())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let (lat, missed) = local.block_on(&rt, async {
        let ctx = ros::context(&RosOptions::from_env(None))?;
        let mut node = ros::node(&ctx, "reaction_bench")?;
        let spinner = node.spinner().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let spin = tokio::task::spawn_local(async move {
            let _ = spinner.spin().await;
        });
        let scan_topic = node
            .create_topic(
                &ros::topic_name("/scan")?,
                ros::type_name::<LaserScan>(),
                &ros::qos_sensor(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let scans = node
            .create_publisher::<LaserScan>(&scan_topic, Some(ros::qos_sensor()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let lock_topic = node
            .create_topic(
                &ros::topic_name("/safety/stop")?,
                ros::type_name::<Bool>(),
                &ros::qos_latched(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let lock = node
            .create_subscription::<Bool>(&lock_topic, Some(ros::qos_latched()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut stream = Box::pin(lock.async_stream());
        let mut last: Option<bool> = None;
        let mut lat = Vec::with_capacity(n);
        let mut missed = 0usize;
        let mut pending: Option<Instant> = None;
        let mut next = tokio::time::Instant::now();
        let warmup_deadline = Instant::now() + Duration::from_secs(30);
        let mut prev_obstacle = false;
        let mut warmed = false;
        while lat.len() + missed < n {
            tokio::select! {
                Some(item) = stream.next() => {
                    let (b, _) = item.map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    if b.data
                        && last != Some(true)
                        && let Some(t) = pending.take()
                    {
                        lat.push(t.elapsed().as_secs_f64());
                    }
                    last = Some(b.data);
                }
                () = tokio::time::sleep_until(next) => {
                    next += PERIOD;
                    if pending.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
                        pending = None;
                        missed += 1;
                    }
                    warmed |= last == Some(false);
                    // An obstacle every other tick, once the monitor reads clear (warmed up).
                    let obstacle = !prev_obstacle && pending.is_none() && last == Some(false);
                    if !warmed && Instant::now() > warmup_deadline {
                        bail!("{label}: the monitor never read clear");
                    }
                    prev_obstacle = obstacle;
                    let msg = scan(obstacle);
                    if obstacle {
                        pending = Some(Instant::now());
                    }
                    scans.publish(msg).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
            }
        }
        node.stop_spinner();
        let _ = spin.await;
        anyhow::Ok((lat, missed))
    })?;
    let mut sorted = lat.clone();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        bail!("{label}: no reaction measured");
    }
    let summary = serde_json::json!({
        "label": label,
        "scans_per_second": 40,
        "beams": BEAMS,
        "measured": sorted.len(),
        "missed": missed,
        "p50_ms": percentile(&sorted, 0.5) * 1e3,
        "p90_ms": percentile(&sorted, 0.9) * 1e3,
        "p99_ms": percentile(&sorted, 0.99) * 1e3,
        "max_ms": sorted[sorted.len() - 1] * 1e3,
        "latencies_ms": lat.iter().map(|s| s * 1e3).collect::<Vec<_>>(),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&summary)?)?;
    println!(
        "{label}: n={} missed={missed} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        sorted.len(),
        percentile(&sorted, 0.5) * 1e3,
        percentile(&sorted, 0.99) * 1e3,
        sorted[sorted.len() - 1] * 1e3
    );
    Ok(())
}
