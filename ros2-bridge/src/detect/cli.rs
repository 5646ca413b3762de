//! `ros2-bridge detect`: flags, validation into one [`Config`], signals; the ROS thread and the
//! dispatcher do the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper::Uri;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};

use super::client::SidecarClient;
use super::dispatch::{self, DispatchOptions, FrameSlot};
use super::metrics::DetectMetrics;
use super::node::{self, Control, Shared};
use crate::metrics::{self, Health, RosMetrics};
use crate::ros::RosOptions;
use crate::safety::config::{parse_duration, resolve_topic};

/// Camera message type (`spec.ros.inputType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputType {
    /// `sensor_msgs/Image`: raw pixels, sent to the sidecar as they are.
    #[value(alias = "Image")]
    Image,
    /// `sensor_msgs/CompressedImage`: JPEG or PNG bytes, sent as they are.
    #[value(alias = "CompressedImage")]
    CompressedImage,
}

/// Camera subscription reliability (`spec.ros.qos.reliability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reliability {
    /// Matches every publisher.
    #[value(alias = "BestEffort")]
    BestEffort,
    /// Matches only reliable publishers.
    #[value(alias = "Reliable")]
    Reliable,
}

/// The detection bridge: camera frames from a ROS 2 topic to the inference sidecar's
/// `/v1/detect` (never re-encoded), `vision_msgs/Detection2DArray` back with the image's header.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectArgs {
    /// Camera topic; `${ROBOT}` is replaced by --robot.
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_INPUT_TOPIC",
        default_value = "/camera/image_raw"
    )]
    pub input_topic: String,
    /// Camera message type.
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_INPUT_TYPE",
        value_enum,
        default_value = "image"
    )]
    pub input_type: InputType,
    /// Detections topic (vision_msgs/Detection2DArray; reliable, keep last 1).
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_OUTPUT_TOPIC",
        default_value = "/detections"
    )]
    pub output_topic: String,
    /// Camera subscription reliability.
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_RELIABILITY",
        value_enum,
        default_value = "best-effort"
    )]
    pub reliability: Reliability,
    /// Camera subscription depth (KeepLast); frames beyond it are dropped by DDS, not queued.
    #[arg(long, env = "ROBOFLEET_DETECT_DEPTH", default_value_t = 1)]
    pub depth: usize,
    /// The sidecar's detection endpoint.
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_SIDECAR_URL",
        default_value = "http://127.0.0.1:8000/v1/detect"
    )]
    pub sidecar_url: String,
    /// Give up on a request after this long (counted `timeout`).
    #[arg(long, env = "ROBOFLEET_DETECT_TIMEOUT", default_value = "1s")]
    pub timeout: String,
    /// Requests to the sidecar at once; a frame arriving while all are busy replaces the one
    /// waiting (counted `stale`).
    #[arg(long, env = "ROBOFLEET_DETECT_MAX_IN_FLIGHT", default_value_t = 1)]
    pub max_in_flight: usize,
    /// A frame that waited longer than this for a request slot is dropped (`stale`).
    #[arg(long, env = "ROBOFLEET_DETECT_MAX_FRAME_AGE", default_value = "500ms")]
    pub max_frame_age: String,
    /// Ready only while the last camera frame is younger than this.
    #[arg(long, env = "ROBOFLEET_DETECT_SOURCE_TIMEOUT", default_value = "1s")]
    pub source_timeout: String,
    /// Robot (node) name, substituted for ${ROBOT} in topic names.
    #[arg(long, env = "ROBOFLEET_ROBOT", default_value = "")]
    pub robot: String,
    /// ROS domain ID (default: ROS_DOMAIN_ID, else 0).
    #[arg(long, env = "ROBOFLEET_ROS_DOMAIN_ID")]
    pub domain_id: Option<u16>,
    /// Address for /metrics, /healthz and /readyz (port 0 picks a free one and logs it).
    #[arg(long, env = "ROBOFLEET_METRICS_ADDR", default_value = "0.0.0.0:9471")]
    pub metrics_addr: SocketAddr,
    /// Robot state topic (std_msgs/String), exported as robofleet_robot_state{state} for rollout gating.
    #[arg(long, env = "ROBOFLEET_STATE_TOPIC")]
    pub state_topic: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Resolved camera topic.
    pub input_topic: String,
    /// Camera message type.
    pub input_type: InputType,
    /// Resolved detections topic.
    pub output_topic: String,
    /// Camera subscription reliability.
    pub reliability: Reliability,
    /// Camera subscription depth.
    pub depth: usize,
    /// `/v1/detect` URL.
    pub sidecar_url: Uri,
    /// Request timeout.
    pub timeout: Duration,
    /// Concurrent requests.
    pub max_in_flight: usize,
    /// Longest wait for a request slot.
    pub max_frame_age: Duration,
    /// Readiness freshness.
    pub source_timeout: Duration,
    /// Resolved state topic.
    pub state_topic: Option<String>,
}

fn duration(flag: &str, s: &str) -> anyhow::Result<Duration> {
    parse_duration(s)
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} must be a positive duration like 500ms, got {s:?}"))
}

impl DetectArgs {
    /// Checks every flag; resolves `${ROBOT}` in topics.
    pub fn validate(&self) -> anyhow::Result<Config> {
        let input_topic = resolve_topic(&self.input_topic, &self.robot)?;
        let output_topic = resolve_topic(&self.output_topic, &self.robot)?;
        if input_topic == output_topic {
            bail!("--input-topic and --output-topic must differ ({input_topic})");
        }
        if !(1..=100).contains(&self.depth) {
            bail!("--depth must be in 1..=100, got {}", self.depth);
        }
        if !(1..=64).contains(&self.max_in_flight) {
            bail!(
                "--max-in-flight must be in 1..=64, got {}",
                self.max_in_flight
            );
        }
        let sidecar_url: Uri = self
            .sidecar_url
            .parse()
            .with_context(|| format!("--sidecar-url {:?} is not a URL", self.sidecar_url))?;
        if sidecar_url.scheme_str() != Some("http") || sidecar_url.authority().is_none() {
            bail!(
                "--sidecar-url must be http://host:port/path (the sidecar listens on the robot itself), got {:?}",
                self.sidecar_url
            );
        }
        Ok(Config {
            input_topic,
            input_type: self.input_type,
            output_topic,
            reliability: self.reliability,
            depth: self.depth,
            sidecar_url,
            timeout: duration("timeout", &self.timeout)?,
            max_in_flight: self.max_in_flight,
            max_frame_age: duration("max-frame-age", &self.max_frame_age)?,
            source_timeout: duration("source-timeout", &self.source_timeout)?,
            state_topic: self
                .state_topic
                .as_deref()
                .map(|t| resolve_topic(t, &self.robot))
                .transpose()?,
        })
    }
}

/// Runs the bridge until SIGTERM/SIGINT.
pub async fn run(args: DetectArgs) -> anyhow::Result<()> {
    let config = args.validate()?;
    let mut registry = Registry::default();
    let shared = Shared {
        detect: DetectMetrics::register(&mut registry),
        ros: RosMetrics::register(&mut registry),
        health: Arc::new(Health::default()),
        slot: Arc::new(FrameSlot::default()),
    };
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound, http) = metrics::serve(args.metrics_addr, registry, shared.health.clone(), async {
        let _ = stop_http_rx.await;
    })
    .await
    .with_context(|| format!("binding {}", args.metrics_addr))?;
    tracing::info!(addr = %bound, "metrics listening");

    let client = SidecarClient::new(config.sidecar_url.clone(), config.timeout);
    let opts = DispatchOptions {
        max_in_flight: config.max_in_flight,
        max_frame_age: config.max_frame_age,
    };
    let (answers_tx, answers_rx) = tokio::sync::mpsc::unbounded_channel();
    let dispatcher = tokio::spawn(dispatch::run(
        shared.slot.clone(),
        client,
        opts,
        shared.detect.clone(),
        answers_tx,
    ));
    let (tx, ros_thread) = node::spawn(
        config,
        RosOptions::from_env(args.domain_id),
        shared,
        answers_rx,
    );
    let ros_done = tokio::task::spawn_blocking(move || ros_thread.join());
    tokio::pin!(ros_done);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let result = tokio::select! {
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
        r = &mut ros_done => Err(anyhow::anyhow!("ROS thread ended: {:?}", r.map(|j| j.map(|_| ()).map_err(|_| "panic")))),
    };
    // Stop sending first (cancels requests under way), then leave the graph.
    dispatcher.abort();
    let result = match result {
        Ok(()) => {
            tracing::info!("signal received: leaving the ROS graph");
            let _ = tx.send(Control::Shutdown);
            match tokio::time::timeout(Duration::from_secs(10), ros_done.as_mut()).await {
                Ok(Ok(Ok(Ok(())))) => Ok(()),
                Ok(Ok(Ok(Err(e)))) => Err(e.into()),
                Ok(_) => Err(anyhow::anyhow!("ROS thread failed during shutdown")),
                Err(_) => Err(anyhow::anyhow!("ROS thread did not stop within 10 s")),
            }
        }
        Err(e) => Err(e),
    };
    let _ = stop_http_tx.send(());
    let _ = http.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: DetectArgs,
    }

    fn parse(args: &[&str]) -> DetectArgs {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .expect("parses")
            .a
    }

    #[test]
    fn defaults_follow_the_crd() {
        let c = parse(&[]).validate().expect("valid");
        assert_eq!(c.input_topic, "/camera/image_raw");
        assert_eq!(c.output_topic, "/detections");
        assert_eq!(c.input_type, InputType::Image);
        assert_eq!(c.reliability, Reliability::BestEffort);
        assert_eq!((c.depth, c.max_in_flight), (1, 1));
        assert_eq!(c.sidecar_url.path(), "/v1/detect");
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.max_frame_age, Duration::from_millis(500));
    }

    #[test]
    fn robot_topics_and_crd_spellings() {
        let c = parse(&[
            "--input-topic",
            "/${ROBOT}/camera/image",
            "--output-topic",
            "${ROBOT}/detections",
            "--robot",
            "robot-007.lab",
            "--input-type",
            "CompressedImage",
            "--reliability",
            "Reliable",
            "--state-topic",
            "/${ROBOT}/state",
        ])
        .validate()
        .expect("valid");
        assert_eq!(c.input_topic, "/robot_007_lab/camera/image");
        assert_eq!(c.output_topic, "/robot_007_lab/detections");
        assert_eq!(c.state_topic.as_deref(), Some("/robot_007_lab/state"));
        assert_eq!(c.input_type, InputType::CompressedImage);
        assert_eq!(c.reliability, Reliability::Reliable);
        assert_eq!(
            parse(&["--input-type", "compressed-image"])
                .validate()
                .expect("valid")
                .input_type,
            InputType::CompressedImage
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        for args in [
            &["--output-topic", "/camera/image_raw"][..],
            &["--depth", "0"],
            &["--max-in-flight", "0"],
            &["--max-in-flight", "65"],
            &["--sidecar-url", "https://127.0.0.1:8000/v1/detect"],
            &["--sidecar-url", "127.0.0.1:8000"],
            &["--timeout", "0"],
            &["--timeout", "soon"],
            &["--max-frame-age=-1s"],
            &["--input-topic", "/bad topic"],
        ] {
            assert!(parse(args).validate().is_err(), "{args:?} accepted");
        }
    }
}
