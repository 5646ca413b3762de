//! The simulator's ROS thread: warm-up until the monitor under test reads clear, then the
//! scenario at the sensor's rate, recording every stop-lock sample on the same monotonic clock.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde::Serialize;
use tokio::sync::oneshot;

use super::camera;
use super::config::SimConfig;
use super::rng::Rng;
use super::scene::{Scene, Step};
use crate::msg::{Bool, Image, LaserScan, Time};
use crate::ros::{self, RosError, RosOptions};

/// `{sensor}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SensorLabel {
    /// `lidar2d` or `camera`.
    pub sensor: &'static str,
}

/// `{fault}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabel {
    /// `nan`, `neg_inf`, `drop`, `stall`, `blind`.
    pub fault: &'static str,
}

/// `robofleet_sensorsim_*`.
#[derive(Clone, Default)]
pub struct SimMetrics {
    /// Messages published.
    pub published: Family<SensorLabel, Counter>,
    /// Faults injected.
    pub faults: Family<FaultLabel, Counter<u64, AtomicU64>>,
}

impl SimMetrics {
    /// Registers under `robofleet_sensorsim_`.
    pub fn register(registry: &mut Registry) -> SimMetrics {
        let m = SimMetrics::default();
        let r = registry.sub_registry_with_prefix("robofleet_sensorsim");
        r.register(
            "messages_published",
            "Simulated sensor messages published",
            m.published.clone(),
        );
        r.register(
            "faults_injected",
            "Faults injected, by kind",
            m.faults.clone(),
        );
        m
    }
}

/// Fault counts for the result file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// NaN beams.
    pub nan: u64,
    /// -Inf beams.
    pub neg_inf: u64,
    /// Dropped scans.
    pub drop: u64,
    /// 1 if the sensor stalled.
    pub stall: u64,
    /// Scans published blinded (all NaN).
    pub blind: u64,
    /// Camera frames published corrupt.
    pub corrupt_image: u64,
}

/// What the run observed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// (seconds since the scenario start, lock value), in receipt order; the state in force at the
    /// start is recorded at 0.
    pub samples: Vec<(f64, bool)>,
    /// Scans published.
    pub published: u64,
    /// Faults injected.
    pub faults: Faults,
    /// Seconds the scenario ran.
    pub ran: f64,
}

/// Runs the simulation on a dedicated thread; `cancel` ends it early (an error).
pub fn spawn(
    cfg: SimConfig,
    opts: RosOptions,
    metrics: SimMetrics,
    warmup_timeout: Duration,
    cancel: oneshot::Receiver<()>,
) -> std::thread::JoinHandle<Result<Outcome, RosError>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| RosError::create("runtime")(e.to_string()))?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, run(cfg, opts, metrics, warmup_timeout, cancel))
    })
}

fn cancelled() -> RosError {
    RosError::create("simulation")("cancelled by signal".into())
}

async fn run(
    cfg: SimConfig,
    opts: RosOptions,
    metrics: SimMetrics,
    warmup_timeout: Duration,
    mut cancel: oneshot::Receiver<()>,
) -> Result<Outcome, RosError> {
    let ctx = ros::context(&opts)?;
    let mut node = ros::node(&ctx, "robofleet_sensor_sim")?;
    let spinner = node
        .spinner()
        .map_err(|e| RosError::create("spinner")(format!("{e:?}")))?;
    let spin = tokio::task::spawn_local(async move {
        let _ = spinner.spin().await;
    });
    let mk = |what: &'static str| {
        move |e: ros2_client::ros2::CreateError| RosError::create(what)(e.to_string())
    };
    let scan_topic = node
        .create_topic(
            &ros::topic_name(&cfg.topic)?,
            ros::type_name::<LaserScan>(),
            &ros::qos_sensor(),
        )
        .map_err(mk("scan topic"))?;
    let scans = node
        .create_publisher::<LaserScan>(&scan_topic, Some(ros::qos_sensor()))
        .map_err(mk("scan writer"))?;
    let lock_qos = ros::qos_latched().history(ros2_client::qos::History::KeepLast { depth: 100 });
    let images = match &cfg.camera {
        Some(_) => {
            let topic = node
                .create_topic(
                    &ros::topic_name(&cfg.topic)?,
                    ros::type_name::<Image>(),
                    &ros::qos_sensor(),
                )
                .map_err(mk("image topic"))?;
            Some(
                node.create_publisher::<Image>(&topic, Some(ros::qos_sensor()))
                    .map_err(mk("image writer"))?,
            )
        }
        None => None,
    };
    let lock = match (&cfg.stop_topic, &cfg.camera) {
        (Some(t), None) => {
            let topic = node
                .create_topic(&ros::topic_name(t)?, ros::type_name::<Bool>(), &lock_qos)
                .map_err(mk("stop topic"))?;
            Some(
                node.create_subscription::<Bool>(&topic, Some(lock_qos.clone()))
                    .map_err(mk("stop reader"))?,
            )
        }
        _ => None,
    };
    let mut lock_stream = lock.as_ref().map(|l| Box::pin(l.async_stream()));
    let label = SensorLabel { sensor: "lidar2d" };
    let publish = |scan: LaserScan| match scans.publish(scan) {
        Ok(()) => {
            metrics.published.get_or_create(&label).inc();
            true
        }
        Err(e) => {
            tracing::warn!(error = ?e, "scan publish failed");
            false
        }
    };

    // Warm-up: clear scans until the monitor under test reads clear, so the scenario starts from a
    // known state and both directions are matched.
    let mut last_lock: Option<bool> = None;
    if let Some(stream) = lock_stream.as_mut() {
        let clear_cfg = SimConfig {
            obstacles: Vec::new(),
            nan_rate: 0.0,
            neg_inf_rate: 0.0,
            ..cfg.clone()
        };
        let mut warm = Scene::new(SimConfig {
            drop_rate: 0.0,
            stall_after: None,
            blind_after: None,
            ..clear_cfg
        });
        let deadline = tokio::time::Instant::now() + warmup_timeout;
        let mut tick = tokio::time::interval(cfg.period);
        while last_lock != Some(false) {
            tokio::select! {
                biased;
                _ = &mut cancel => return Err(cancelled()),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(RosError::create("warm-up")(format!(
                        "the stop lock did not read clear within {warmup_timeout:?} of clear scans (last value {last_lock:?})"
                    )));
                }
                Some(item) = stream.next() => if let Ok((b, _)) = item { last_lock = Some(b.data) },
                _ = tick.tick() => if let Step::Scan(s, _) = warm.step(0.0, Time::now()) { publish(*s); },
            }
        }
        tracing::info!("monitor under test reads clear: scenario starts");
    }

    let mut scene = Scene::new(cfg.clone());
    let mut frame_rng = Rng::new(cfg.noise.seed ^ 0x5EED_CA3E);
    let mut out = Outcome::default();
    let t0 = Instant::now();
    if let Some(v) = last_lock {
        out.samples.push((0.0, v));
    }
    let mut next = tokio::time::Instant::from_std(t0);
    let end = t0 + cfg.duration;
    let mut stalled = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut cancel => return Err(cancelled()),
            Some(item) = async { match lock_stream.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => {
                if let Ok((b, _)) = item {
                    out.samples.push((t0.elapsed().as_secs_f64(), b.data));
                }
            }
            () = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let t = now.duration_since(t0).as_secs_f64();
                if let (Some(cam), Some(images)) = (&cfg.camera, &images) {
                    next += cfg.period;
                    if cfg.stall_after.is_some_and(|s| t >= s) {
                        if !stalled {
                            stalled = true;
                            out.faults.stall = 1;
                            metrics.faults.get_or_create(&FaultLabel { fault: "stall" }).inc();
                        }
                        continue;
                    }
                    if frame_rng.chance(cfg.drop_rate) {
                        out.faults.drop += 1;
                        metrics.faults.get_or_create(&FaultLabel { fault: "drop" }).inc();
                        continue;
                    }
                    let (img, corrupt) = camera::frame(cam, &cfg.obstacles, t, &mut frame_rng, Time::now(), &cfg.frame_id);
                    if corrupt {
                        out.faults.corrupt_image += 1;
                        metrics.faults.get_or_create(&FaultLabel { fault: "corrupt_image" }).inc();
                    }
                    match images.publish(img) {
                        Ok(()) => {
                            out.published += 1;
                            metrics.published.get_or_create(&SensorLabel { sensor: "camera" }).inc();
                        }
                        Err(e) => tracing::warn!(error = ?e, "image publish failed"),
                    }
                    continue;
                }
                match scene.step(t, Time::now()) {
                    Step::Scan(s, injected) => {
                        let blind = cfg.blind_after.is_some_and(|b| t >= b);
                        if publish(*s) {
                            out.published += 1;
                        }
                        if blind {
                            out.faults.blind += 1;
                            metrics.faults.get_or_create(&FaultLabel { fault: "blind" }).inc();
                        } else {
                            out.faults.nan += injected.nan;
                            out.faults.neg_inf += injected.neg_inf;
                            metrics.faults.get_or_create(&FaultLabel { fault: "nan" }).inc_by(injected.nan);
                            metrics.faults.get_or_create(&FaultLabel { fault: "neg_inf" }).inc_by(injected.neg_inf);
                        }
                    }
                    Step::Dropped => {
                        out.faults.drop += 1;
                        metrics.faults.get_or_create(&FaultLabel { fault: "drop" }).inc();
                    }
                    Step::Stalled if !stalled => {
                        stalled = true;
                        out.faults.stall = 1;
                        metrics.faults.get_or_create(&FaultLabel { fault: "stall" }).inc();
                    }
                    Step::Stalled => {}
                }
                next += cfg.period;
            }
        }
    }
    out.ran = t0.elapsed().as_secs_f64();
    node.stop_spinner();
    let _ = spin.await;
    drop(lock_stream);
    Ok(out)
}
