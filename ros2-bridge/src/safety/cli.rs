//! `ros2-bridge safety`: flags, config watching, signals; the ROS thread does the rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::config::{PolicyFile, QuickFlags, parse_duration, resolve_topic};
use super::metrics::{OutcomeLabel, SafetyMetrics};
use super::node::{self, Control, Shared};
use crate::metrics::{self, Health, RosMetrics};
use crate::ros::RosOptions;

/// The LIDAR safety monitor. Either `--config FILE` (what the operator mounts, hot-reloaded) or
/// the quick flags `--scan --stop-topic --stop-distance --sector-deg --source-timeout`.
/// A software monitor, not certified safety equipment: run it beside a safety-rated scanner or PLC.
#[derive(Debug, clap::Args)]
pub struct SafetyArgs {
    /// Policy file (YAML or JSON), watched for changes.
    #[arg(long, env = "ROBOFLEET_SAFETY_CONFIG", conflicts_with_all = ["scan", "stop_topic"])]
    pub config: Option<PathBuf>,
    /// LaserScan topic (quick use).
    #[arg(long, env = "ROBOFLEET_SAFETY_SCAN")]
    pub scan: Option<String>,
    /// Stop lock topic, std_msgs/Bool, true = stop (quick use).
    #[arg(long, env = "ROBOFLEET_SAFETY_STOP_TOPIC")]
    pub stop_topic: Option<String>,
    /// Stop when something is closer than this many metres inside the sector (quick use).
    #[arg(long, env = "ROBOFLEET_SAFETY_STOP_DISTANCE", default_value_t = 0.35)]
    pub stop_distance: f64,
    /// Full width of the stop sector, centred straight ahead, in degrees (quick use).
    #[arg(long, env = "ROBOFLEET_SAFETY_SECTOR_DEG", default_value_t = 60.0)]
    pub sector_deg: f64,
    /// Stop when the last scan is older than this (quick use).
    #[arg(long, env = "ROBOFLEET_SAFETY_SOURCE_TIMEOUT", default_value = "200ms")]
    pub source_timeout: String,
    /// Robot (node) name, substituted for ${ROBOT} in topic names.
    #[arg(long, env = "ROBOFLEET_ROBOT", default_value = "")]
    pub robot: String,
    /// ROS domain ID (default: ROS_DOMAIN_ID, else 0).
    #[arg(long, env = "ROBOFLEET_ROS_DOMAIN_ID")]
    pub domain_id: Option<u16>,
    /// Address for /metrics, /healthz and /readyz (port 0 picks a free one and logs it).
    #[arg(long, env = "ROBOFLEET_METRICS_ADDR", default_value = "0.0.0.0:9470")]
    pub metrics_addr: SocketAddr,
    /// Robot state topic (std_msgs/String), exported as robofleet_robot_state{state} for rollout gating.
    #[arg(long, env = "ROBOFLEET_STATE_TOPIC")]
    pub state_topic: Option<String>,
    /// How often the config file is checked for changes.
    #[arg(long, env = "ROBOFLEET_SAFETY_RELOAD_INTERVAL", default_value = "1s")]
    pub reload_interval: String,
}

fn load(path: &PathBuf) -> anyhow::Result<(String, PolicyFile)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = PolicyFile::parse(&text)?;
    Ok((text, file))
}

/// Runs the monitor until SIGTERM/SIGINT.
pub async fn run(args: SafetyArgs) -> anyhow::Result<()> {
    let (mut text, file) = match (&args.config, &args.scan, &args.stop_topic) {
        (Some(path), _, _) => load(path)?,
        (None, Some(scan), Some(stop)) => {
            let q = QuickFlags {
                scan: scan.clone(),
                stop_topic: stop.clone(),
                stop_distance: args.stop_distance,
                sector_deg: args.sector_deg,
                source_timeout: args.source_timeout.clone(),
            };
            (String::new(), q.to_file())
        }
        _ => bail!("give --config FILE, or --scan and --stop-topic"),
    };
    let policy = file.validate(&args.robot)?;
    let mut reset_nonce = file.reset_nonce.clone();
    let reload_every = parse_duration(&args.reload_interval)
        .filter(|d| !d.is_zero())
        .context("--reload-interval must be a duration like 1s")?;

    let mut registry = Registry::default();
    let shared = Shared {
        safety: SafetyMetrics::register(&mut registry),
        ros: RosMetrics::register(&mut registry),
        health: Arc::new(Health::default()),
    };
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound, http) = metrics::serve(args.metrics_addr, registry, shared.health.clone(), async {
        let _ = stop_http_rx.await;
    })
    .await
    .with_context(|| format!("binding {}", args.metrics_addr))?;
    tracing::info!(addr = %bound, "metrics listening");

    let opts = RosOptions::from_env(args.domain_id);
    let reloads = shared.safety.reloads.clone();
    let state_topic = args
        .state_topic
        .as_deref()
        .map(|t| resolve_topic(t, &args.robot))
        .transpose()?;
    let (tx, ros_thread) = node::spawn(policy, opts, shared, state_topic);
    let ros_done = tokio::task::spawn_blocking(move || ros_thread.join());
    tokio::pin!(ros_done);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut reload = tokio::time::interval(reload_every);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            _ = term.recv() => break shutdown(&tx, &mut ros_done).await,
            _ = int.recv() => break shutdown(&tx, &mut ros_done).await,
            r = &mut ros_done => break Err(anyhow::anyhow!("ROS thread ended: {:?}", r.map(|j| j.map(|_| ()).map_err(|_| "panic")))),
            _ = reload.tick() => {
                let Some(path) = &args.config else { continue };
                match load(path) {
                    Ok((t, _)) if t == text => {}
                    Ok((t, f)) => {
                        text = t;
                        match f.validate(&args.robot) {
                            Ok(p) => {
                                let _ = tx.send(Control::Reload(Box::new(p)));
                            }
                            Err(e) => {
                                reloads.get_or_create(&OutcomeLabel { outcome: "invalid" }).inc();
                                tracing::error!(error = %e, "new policy rejected; the previous one stays in force");
                            }
                        }
                        if f.reset_nonce.is_some() && f.reset_nonce != reset_nonce {
                            let _ = tx.send(Control::Reset);
                        }
                        reset_nonce = f.reset_nonce;
                    }
                    Err(e) => {
                        reloads.get_or_create(&OutcomeLabel { outcome: "unreadable" }).inc();
                        tracing::error!(error = %e, "policy file unreadable; the previous policy stays in force");
                    }
                }
            }
        }
    };
    let _ = stop_http_tx.send(());
    let _ = http.await;
    result
}

async fn shutdown(
    tx: &mpsc::UnboundedSender<Control>,
    ros_done: &mut std::pin::Pin<
        &mut tokio::task::JoinHandle<std::thread::Result<Result<(), crate::ros::RosError>>>,
    >,
) -> anyhow::Result<()> {
    tracing::info!("signal received: publishing stop and leaving the ROS graph");
    let _ = tx.send(Control::Shutdown);
    match tokio::time::timeout(Duration::from_secs(10), ros_done.as_mut()).await {
        Ok(Ok(Ok(Ok(())))) => Ok(()),
        Ok(Ok(Ok(Err(e)))) => Err(e.into()),
        Ok(_) => bail!("ROS thread failed during shutdown"),
        Err(_) => bail!("ROS thread did not stop within 10 s"),
    }
}
