//! The DDS side of the safety monitor: a dedicated thread owns the ros2-client node, evaluates
//! every scan the moment it arrives and publishes the lock on every change and every heartbeat.
//! The tokio side sends [`Control`] messages (reload, reset, shutdown) over a channel.
//!
//! The evaluation runs on the ROS thread itself, not behind another channel hop: the reaction
//! from scan receipt to stop publication is the number this component is judged by.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ros2_client::{Node, Publisher};
use rustdds::no_key::DataWriterCdr;
use tokio::sync::mpsc;

use super::config::{Policy, ReleaseMode};
use super::evaluate::{Evaluation, Evaluator, InvalidKind};
use super::metrics::{
    AlertLabels, KindLabel, OutcomeLabel, PolicyLabel, ReasonLabels, SafetyMetrics,
};
use super::monitor::{Decision, Monitor, Reason};
use crate::metrics::{Health, RosMetrics, TopicLabel};
use crate::msg::{
    Bool, DiagnosticArray, DiagnosticStatus, Header, KeyValue, LaserScan, SpeedLimit, StringMsg,
    Time,
};
use crate::ros::{self, RosError, RosOptions};

/// Messages from the tokio side to the ROS thread.
#[derive(Debug)]
pub enum Control {
    /// A changed, validated policy from the mounted file.
    Reload(Box<Policy>),
    /// The reset verb (Latched release).
    Reset,
    /// SIGTERM: publish stop, wait for acknowledgments, leave the graph.
    Shutdown,
}

/// What the ROS thread shares with the rest of the process.
#[derive(Clone)]
pub struct Shared {
    /// Safety series.
    pub safety: SafetyMetrics,
    /// ROS series.
    pub ros: RosMetrics,
    /// Liveness/readiness.
    pub health: Arc<Health>,
}

/// How long shutdown waits for the lock's readers to acknowledge the final stop.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(2);
/// Diagnostics period (ROS convention: about 1 Hz).
const DIAGNOSTICS_PERIOD: Duration = Duration::from_secs(1);

/// Starts the ROS thread. The returned handle ends after [`Control::Shutdown`] (or when the
/// sender is dropped) once the final stop was published and the participant has left.
pub fn spawn(
    policy: Policy,
    opts: RosOptions,
    shared: Shared,
    state_topic: Option<String>,
) -> (
    mpsc::UnboundedSender<Control>,
    std::thread::JoinHandle<Result<(), RosError>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = std::thread::Builder::new()
        .name("ros-safety".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| RosError::create("runtime")(e.to_string()))?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(policy, opts, shared, rx, state_topic))
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

struct Outputs {
    node: Node,
    lock: DataWriterCdr<Bool>,
    speed_limit: Option<Publisher<SpeedLimit>>,
    diagnostics: Option<Publisher<DiagnosticArray>>,
    policy: Policy,
    shared: Shared,
}

impl Outputs {
    fn label(&self) -> PolicyLabel {
        PolicyLabel {
            policy: self.policy.name.clone(),
        }
    }

    fn publish_lock(&self, stop: bool) {
        match self.lock.write(Bool { data: stop }, None) {
            Ok(()) => self.shared.ros.message(&self.policy.stop_topic, "out"),
            Err(e) => {
                tracing::error!(error = ?e, topic = %self.policy.stop_topic, "stop lock write failed")
            }
        }
        self.shared
            .safety
            .stop_active
            .get_or_create(&self.label())
            .set(i64::from(stop));
    }

    /// Acts on a decision; `scan_at` is the receipt time of the scan that caused it.
    fn apply(&self, d: &Decision, scan_at: Option<Instant>) {
        if d.changed && d.stop {
            // Count first, so a reader that sees the stop also sees the counter.
            self.shared
                .safety
                .stops
                .get_or_create(&ReasonLabels {
                    policy: self.policy.name.clone(),
                    reason: d.reason.as_str(),
                })
                .inc();
            self.publish_lock(true);
            if let Some(t) = scan_at {
                self.shared
                    .safety
                    .reaction
                    .observe(t.elapsed().as_secs_f64());
            }
            tracing::warn!(reason = d.reason.as_str(), "stop");
        } else if d.changed {
            self.publish_lock(false);
            tracing::info!("clear");
        }
        if let (Some(limit), Some(p)) = (d.speed_limit_changed, &self.speed_limit) {
            let msg = SpeedLimit {
                header: Header {
                    stamp: Time::now(),
                    frame_id: "base_link".into(),
                },
                percentage: true,
                speed_limit: limit,
            };
            if let Some(topic) = &self.policy.speed_limit_topic {
                match p.publish(msg) {
                    Ok(()) => self.shared.ros.message(topic, "out"),
                    Err(e) => tracing::error!(error = ?e, "speed limit publish failed"),
                }
            }
        }
        for &z in &d.newly_triggered {
            if let Some(zone) = self.policy.zones.get(z) {
                self.shared
                    .safety
                    .alerts
                    .get_or_create(&AlertLabels {
                        policy: self.policy.name.clone(),
                        zone: zone.name.clone(),
                        action: zone.action.as_str(),
                    })
                    .inc();
                tracing::info!(zone = %zone.name, action = zone.action.as_str(), "zone active");
            }
        }
    }

    fn record_evaluation(&self, eval: &Evaluation) {
        for kind in InvalidKind::ALL {
            let n = eval.invalid[kind as usize];
            if n > 0 {
                self.shared
                    .safety
                    .invalid_ranges
                    .get_or_create(&KindLabel {
                        kind: kind.as_str(),
                    })
                    .inc_by(n);
            }
        }
        if let Some(d) = eval.min_obstacle_distance {
            self.shared
                .safety
                .min_obstacle_distance
                .get_or_create(&self.label())
                .set(d);
        }
    }

    fn diagnostics(
        &self,
        monitor: &Monitor,
        d: &Decision,
        consumers: usize,
        publishers: usize,
        now: Instant,
    ) {
        let Some(p) = &self.diagnostics else { return };
        let age = monitor
            .evaluation_age(now)
            .map_or("none".into(), |a| format!("{:.3}", a.as_secs_f64()));
        let level = match (d.stop, consumers) {
            (true, _) => DiagnosticStatus::ERROR,
            (false, 0) => DiagnosticStatus::WARN,
            (false, _) => DiagnosticStatus::OK,
        };
        let kv = |k: &str, v: String| KeyValue {
            key: k.into(),
            value: v,
        };
        let msg = DiagnosticArray {
            header: Header {
                stamp: Time::now(),
                frame_id: String::new(),
            },
            status: vec![DiagnosticStatus {
                level,
                name: format!("robofleet_safety: {}", self.policy.name),
                message: if d.stop {
                    format!("stop: {}", d.reason.as_str())
                } else {
                    "clear".into()
                },
                hardware_id: self.policy.scan_topic.clone(),
                values: vec![
                    kv("stop", d.stop.to_string()),
                    kv("reason", d.reason.as_str().into()),
                    kv("awaiting_reset", d.awaiting_reset.to_string()),
                    kv("scan_age_seconds", age),
                    kv("stop_consumers", consumers.to_string()),
                    kv("scan_publishers", publishers.to_string()),
                ],
            }],
        };
        if let (Ok(()), Some(topic)) = (p.publish(msg), &self.policy.diagnostics_topic) {
            self.shared.ros.message(topic, "out");
        }
    }
}

fn topics(p: &Policy) -> (&str, &str, Option<&str>, Option<&str>) {
    (
        &p.scan_topic,
        &p.stop_topic,
        p.speed_limit_topic.as_deref(),
        p.diagnostics_topic.as_deref(),
    )
}

async fn run(
    policy: Policy,
    opts: RosOptions,
    shared: Shared,
    mut rx: mpsc::UnboundedReceiver<Control>,
    state_topic: Option<String>,
) -> Result<(), RosError> {
    let ctx = ros::context(&opts)?;
    let mut node = ros::node(&ctx, "robofleet_safety")?;
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

    let scan_topic = node
        .create_topic(
            &ros::topic_name(&policy.scan_topic)?,
            ros::type_name::<LaserScan>(),
            &ros::qos_sensor(),
        )
        .map_err(mk("scan topic"))?;
    let scan_sub = node
        .create_subscription::<LaserScan>(&scan_topic, Some(ros::qos_sensor()))
        .map_err(mk("scan reader"))?;
    let state_sub = match &state_topic {
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
    let lock_topic = node
        .create_topic(
            &ros::topic_name(&policy.stop_topic)?,
            ros::type_name::<Bool>(),
            &ros::qos_latched(),
        )
        .map_err(mk("stop topic"))?;
    let lock = ctx
        .domain_participant()
        .create_publisher(&ros::qos_latched_dds())
        .and_then(|p| {
            p.create_datawriter_no_key_cdr::<Bool>(&lock_topic, Some(ros::qos_latched_dds()))
        })
        .map_err(|e| RosError::create("stop lock writer")(e.to_string()))?;
    let reliable_publisher = |topic: &Option<String>, ty| -> Result<_, RosError> {
        topic
            .as_deref()
            .map(|t| {
                let topic = node
                    .create_topic(&ros::topic_name(t)?, ty, &ros::qos_reliable(1))
                    .map_err(mk("topic"))?;
                Ok(topic)
            })
            .transpose()
    };
    let speed_topic =
        reliable_publisher(&policy.speed_limit_topic, ros::type_name::<SpeedLimit>())?;
    let diag_topic = reliable_publisher(
        &policy.diagnostics_topic,
        ros::type_name::<DiagnosticArray>(),
    )?;
    let speed_limit = speed_topic
        .map(|t| node.create_publisher::<SpeedLimit>(&t, Some(ros::qos_reliable(1))))
        .transpose()
        .map_err(mk("speed limit writer"))?;
    let diagnostics = diag_topic
        .map(|t| node.create_publisher::<DiagnosticArray>(&t, Some(ros::qos_reliable(1))))
        .transpose()
        .map_err(mk("diagnostics writer"))?;

    let mut out = Outputs {
        node,
        lock,
        speed_limit,
        diagnostics,
        policy: policy.clone(),
        shared: shared.clone(),
    };
    let mut evaluator = Evaluator::new(policy.clone());
    let mut monitor = Monitor::new(&policy);
    out.publish_lock(true);
    shared.health.live.store(true, Ordering::Relaxed);
    tracing::info!(scan = %policy.scan_topic, stop = %policy.stop_topic, domain = opts.domain_id, "safety monitor up: stop until the first valid scan");

    let mut next_beat = Instant::now() + policy.heartbeat;
    let mut next_diag = Instant::now();
    let scan_label = TopicLabel {
        topic: policy.scan_topic.clone(),
    };
    let mut last_scan: Option<Instant> = None;
    let mut scans = Box::pin(scan_sub.async_stream());
    let mut states = state_sub.as_ref().map(|s| Box::pin(s.async_stream()));
    loop {
        let wake = monitor
            .next_deadline()
            .map_or(next_beat, |d| d.min(next_beat));
        tokio::select! {
            biased;
            ctrl = rx.recv() => match ctrl {
                Some(Control::Reload(p)) => {
                    let now = Instant::now();
                    if topics(&p) != topics(&out.policy) {
                        tracing::error!("policy reload changes topics: not applied (topics change with a new pod)");
                        shared.safety.reloads.get_or_create(&OutcomeLabel { outcome: "rejected" }).inc();
                        continue;
                    }
                    let d = monitor.set_policy(&p, now);
                    evaluator = Evaluator::new((*p).clone());
                    out.policy = *p;
                    out.apply(&d, None);
                    shared.safety.reloads.get_or_create(&OutcomeLabel { outcome: "applied" }).inc();
                    tracing::info!(stop = d.stop, "policy reloaded");
                }
                Some(Control::Reset) => {
                    if out.policy.release == ReleaseMode::Latched {
                        let d = monitor.on_reset(Instant::now());
                        tracing::info!(released = !d.stop, "reset received");
                        out.apply(&d, None);
                    }
                }
                Some(Control::Shutdown) | None => break,
            },
            item = scans.next() => match item {
                Some(Ok((scan, _info))) => {
                    let now = Instant::now();
                    let eval = evaluator.evaluate(&scan);
                    let d = monitor.on_evaluation(now, &eval);
                    out.apply(&d, Some(now));
                    last_scan = Some(now);
                    shared.ros.message(&out.policy.scan_topic, "in");
                    out.record_evaluation(&eval);
                }
                Some(Err(e)) => {
                    shared.ros.malformed(&out.policy.scan_topic);
                    tracing::warn!(error = ?e, topic = %out.policy.scan_topic, "malformed scan dropped");
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
                    if let Some(t) = &state_topic {
                        shared.ros.message(t, "in");
                    }
                }
                Err(_) => {
                    if let Some(t) = &state_topic {
                        shared.ros.malformed(t);
                    }
                }
            },
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                let publishers = out.node.publisher_count(&out.policy.scan_topic);
                let consumers = out.node.subscription_count(&out.policy.stop_topic);
                let d = monitor.on_publishers(now, publishers);
                out.apply(&d, None);
                let d = monitor.tick(now);
                out.apply(&d, None);
                let age = monitor.evaluation_age(now);
                let fresh = age.is_some_and(|a| a < out.policy.source_timeout);
                shared.health.ready.store(fresh, Ordering::Relaxed);
                if now >= next_beat {
                    out.publish_lock(d.stop);
                    next_beat = now + out.policy.heartbeat;
                    let label = out.label();
                    shared.safety.stop_consumers.get_or_create(&label).set(consumers as i64);
                    shared.safety.scan_publishers.get_or_create(&label).set(publishers as i64);
                    shared.safety.scan_age.set(age.map_or(f64::INFINITY, |a| a.as_secs_f64()));
                    if let Some(t) = last_scan {
                        shared.ros.last_message_age.get_or_create(&scan_label).set(now.duration_since(t).as_secs_f64());
                    }
                    if now >= next_diag {
                        out.diagnostics(&monitor, &d, consumers, publishers, now);
                        next_diag = now + DIAGNOSTICS_PERIOD;
                    }
                }
            }
        }
    }

    let d = monitor.on_shutdown(Instant::now());
    out.apply(&d, None);
    out.publish_lock(true);
    shared.health.ready.store(false, Ordering::Relaxed);
    match out.lock.wait_for_acknowledgments(SHUTDOWN_ACK_WAIT) {
        Ok(true) => tracing::info!("final stop acknowledged by every reliable reader"),
        Ok(false) => tracing::warn!("final stop not acknowledged within {SHUTDOWN_ACK_WAIT:?}"),
        Err(e) => tracing::warn!(error = ?e, "waiting for acknowledgments failed"),
    }
    debug_assert_eq!(monitor.reason(), Reason::Shutdown);
    // Leave the graph cleanly: spinner first, then readers/writers, node and context.
    out.node.stop_spinner();
    let _ = spin.await;
    drop(scans);
    drop(states);
    drop(out);
    Ok(())
}
