//! The DDS side of the detection bridge: a dedicated thread owns the ros2-client node, turns
//! camera messages into frames for the [`FrameSlot`], publishes the dispatcher's answers in order,
//! follows the robot-state topic and keeps readiness (fresh camera frames) up to date.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::LocalBoxStream;
use ros2_client::{
    QosProfile,
    qos::{History, WhenFull},
};
use tokio::sync::mpsc;

use super::cli::{Config, InputType, Reliability};
use super::dispatch::{Answer, FrameSlot};
use super::frame::{Frame, FrameError, Outcome, Sequencer};
use super::metrics::DetectMetrics;
use crate::metrics::{Health, RosMetrics, TopicLabel};
use crate::msg::{CompressedImage, Detection2DArray, Image, StringMsg};
use crate::ros::{self, RosError, RosOptions};

/// Messages from the tokio side to the ROS thread.
#[derive(Debug)]
pub enum Control {
    /// SIGTERM: leave the graph.
    Shutdown,
}

/// What the ROS thread shares with the rest of the process.
#[derive(Clone)]
pub struct Shared {
    /// Detection series.
    pub detect: DetectMetrics,
    /// ROS series.
    pub ros: RosMetrics,
    /// Liveness/readiness.
    pub health: Arc<Health>,
    /// Where valid frames go.
    pub slot: Arc<FrameSlot>,
}

/// How often readiness and the topic-age gauge are refreshed.
const TICK: Duration = Duration::from_millis(100);

/// Starts the ROS thread; it ends after [`Control::Shutdown`] (or when the sender is dropped)
/// once the participant has left the graph.
pub fn spawn(
    config: Config,
    opts: RosOptions,
    shared: Shared,
    answers: mpsc::UnboundedReceiver<Answer>,
) -> (
    mpsc::UnboundedSender<Control>,
    std::thread::JoinHandle<Result<(), RosError>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = std::thread::Builder::new()
        .name("ros-detect".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| RosError::create("runtime")(e.to_string()))?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(config, opts, shared, rx, answers))
        });
    match handle {
        Ok(h) => (tx, h),
        Err(e) => {
            let reason = e.to_string();
            (
                tx,
                std::thread::spawn(move || Err(RosError::create("thread")(reason))),
            )
        }
    }
}

/// The camera subscription's QoS from the configuration.
pub fn input_qos(reliability: Reliability, depth: usize) -> QosProfile {
    let q = QosProfile::subscription_default().history(History::KeepLast { depth });
    match reliability {
        Reliability::BestEffort => q,
        Reliability::Reliable => q.reliability_reliable(WhenFull::DEFAULT),
    }
}

/// A camera message, raw or compressed, or a payload that did not decode.
enum Camera {
    Raw(Image),
    Compressed(CompressedImage),
}

async fn run(
    config: Config,
    opts: RosOptions,
    shared: Shared,
    mut rx: mpsc::UnboundedReceiver<Control>,
    mut answers: mpsc::UnboundedReceiver<Answer>,
) -> Result<(), RosError> {
    let ctx = ros::context(&opts)?;
    let mut node = ros::node(&ctx, "robofleet_detect")?;
    let spinner = node
        .spinner()
        .map_err(|e| RosError::create("spinner")(format!("{e:?}")))?;
    let spin = tokio::task::spawn_local(async move {
        if let Err(e) = spinner.spin().await {
            tracing::error!(error = ?e, "ROS spinner stopped");
        }
    });
    let mk = |what: &'static str| {
        move |e: ros2_client::ros2::CreateError| RosError::create(what)(e.to_string())
    };
    let in_qos = input_qos(config.reliability, config.depth);
    let input = &config.input_topic;
    let (raw_sub, compressed_sub) = match config.input_type {
        InputType::Image => {
            let t = node
                .create_topic(&ros::topic_name(input)?, ros::type_name::<Image>(), &in_qos)
                .map_err(mk("image topic"))?;
            let s = node
                .create_subscription::<Image>(&t, Some(in_qos.clone()))
                .map_err(mk("image reader"))?;
            (Some(s), None)
        }
        InputType::CompressedImage => {
            let t = node
                .create_topic(
                    &ros::topic_name(input)?,
                    ros::type_name::<CompressedImage>(),
                    &in_qos,
                )
                .map_err(mk("compressed image topic"))?;
            let s = node
                .create_subscription::<CompressedImage>(&t, Some(in_qos.clone()))
                .map_err(mk("compressed image reader"))?;
            (None, Some(s))
        }
    };
    let mut images: LocalBoxStream<'_, Result<Camera, String>> = match (&raw_sub, &compressed_sub) {
        (Some(s), _) => s
            .async_stream()
            .map(|r| r.map(|(m, _)| Camera::Raw(m)).map_err(|e| format!("{e:?}")))
            .boxed_local(),
        (_, Some(s)) => s
            .async_stream()
            .map(|r| {
                r.map(|(m, _)| Camera::Compressed(m))
                    .map_err(|e| format!("{e:?}"))
            })
            .boxed_local(),
        (None, None) => futures::stream::pending().boxed_local(),
    };
    let state_sub = match &config.state_topic {
        Some(t) => {
            let topic = node
                .create_topic(
                    &ros::topic_name(t)?,
                    ros::type_name::<StringMsg>(),
                    &ros::qos_reliable(1),
                )
                .map_err(mk("state topic"))?;
            Some(
                node.create_subscription::<StringMsg>(&topic, Some(ros::qos_reliable(1)))
                    .map_err(mk("state reader"))?,
            )
        }
        None => None,
    };
    let out_qos = ros::qos_reliable(1);
    let out_topic = node
        .create_topic(
            &ros::topic_name(&config.output_topic)?,
            ros::type_name::<Detection2DArray>(),
            &out_qos,
        )
        .map_err(mk("detections topic"))?;
    let publisher = node
        .create_publisher::<Detection2DArray>(&out_topic, Some(out_qos))
        .map_err(mk("detections writer"))?;

    shared.health.live.store(true, Ordering::Relaxed);
    tracing::info!(input = %config.input_topic, input_type = ?config.input_type, output = %config.output_topic, sidecar = %config.sidecar_url, domain = opts.domain_id, "detection bridge up");

    let label = TopicLabel {
        topic: config.input_topic.clone(),
    };
    let mut states = state_sub.as_ref().map(|s| Box::pin(s.async_stream()));
    let mut seq = 0u64;
    let mut order = Sequencer::default();
    let mut last_image: Option<Instant> = None;
    let mut corrupt_logged: Option<Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            ctrl = rx.recv() => match ctrl {
                Some(Control::Shutdown) | None => break,
            },
            Some(answer) = answers.recv() => {
                if !order.admit(answer.seq) {
                    shared.detect.frame(Outcome::Stale);
                    continue;
                }
                let n = answer.detections.detections.len() as u64;
                match publisher.publish(answer.detections) {
                    Ok(()) => {
                        shared.detect.latency.observe(answer.received.elapsed().as_secs_f64());
                        shared.detect.frame(Outcome::Ok);
                        shared.detect.detections.inc_by(n);
                        shared.ros.message(&config.output_topic, "out");
                    }
                    Err(e) => {
                        shared.detect.frame(Outcome::Error);
                        tracing::error!(error = ?e, topic = %config.output_topic, "publishing detections failed");
                    }
                }
            },
            item = images.next() => match item {
                Some(Ok(msg)) => {
                    let now = Instant::now();
                    seq += 1;
                    last_image = Some(now);
                    shared.ros.message(&config.input_topic, "in");
                    let frame = match msg {
                        Camera::Raw(img) => Frame::raw(img, seq, now),
                        Camera::Compressed(img) => Frame::compressed(img, seq, now),
                    };
                    match frame {
                        Ok(f) => {
                            if shared.slot.put(f).is_some() {
                                shared.detect.frame(Outcome::Stale);
                            }
                        }
                        Err(e) => {
                            shared.detect.frame(Outcome::Corrupt);
                            log_corrupt(&mut corrupt_logged, now, &e, &config.input_topic);
                        }
                    }
                }
                Some(Err(e)) => {
                    shared.ros.malformed(&config.input_topic);
                    tracing::debug!(error = %e, topic = %config.input_topic, "malformed camera message dropped");
                }
                None => break,
            },
            Some(item) = async {
                match states.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => match item {
                Ok((state, _)) => {
                    shared.ros.set_robot_state(&state.data);
                    if let Some(t) = &config.state_topic {
                        shared.ros.message(t, "in");
                    }
                }
                Err(_) => {
                    if let Some(t) = &config.state_topic {
                        shared.ros.malformed(t);
                    }
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let fresh = last_image.is_some_and(|t| now.duration_since(t) < config.source_timeout);
                shared.health.ready.store(fresh, Ordering::Relaxed);
                if let Some(t) = last_image {
                    shared.ros.last_message_age.get_or_create(&label).set(now.duration_since(t).as_secs_f64());
                }
            }
        }
    }

    shared.health.ready.store(false, Ordering::Relaxed);
    // Leave the graph cleanly: spinner first, then readers/writers, node and context.
    node.stop_spinner();
    let _ = spin.await;
    drop(images);
    drop(states);
    drop(raw_sub);
    drop(compressed_sub);
    drop(publisher);
    drop(node);
    tracing::info!("detection bridge left the ROS graph");
    Ok(())
}

/// Corrupt frames come at the camera's rate: one log line per 10 s.
fn log_corrupt(last: &mut Option<Instant>, now: Instant, e: &FrameError, topic: &str) {
    if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
        *last = Some(now);
        tracing::warn!(error = %e, topic, "corrupt camera frame dropped (logged at most every 10 s)");
    }
}
