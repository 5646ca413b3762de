//! `ros2-bridge sensor-sim`: runs a scenario and writes its result; exit code 0 = passed,
//! 1 = an expectation failed, 2 = the run itself failed (config, DDS, warm-up, signal).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use super::config::{SimFile, parse_duration_or};
use super::expect::{Assertion, judge};
use super::node::{self, Faults, SimMetrics};
use crate::metrics::{self, Health, RosMetrics};
use crate::ros::RosOptions;

/// Simulated LIDAR with scripted obstacles and faults; judges the monitor under test.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Scenario file (YAML or JSON).
    #[arg(long, env = "ROBOFLEET_SIM_CONFIG")]
    pub config: PathBuf,
    /// Where to write the JSON result.
    #[arg(long, env = "ROBOFLEET_SIM_RESULT")]
    pub result: PathBuf,
    /// Robot (node) name for ${ROBOT} in topics.
    #[arg(long, env = "ROBOFLEET_ROBOT", default_value = "")]
    pub robot: String,
    /// ROS domain ID (default: ROS_DOMAIN_ID, else 0).
    #[arg(long, env = "ROBOFLEET_ROS_DOMAIN_ID")]
    pub domain_id: Option<u16>,
    /// Serve /metrics here while running (none by default).
    #[arg(long, env = "ROBOFLEET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How long to wait for the monitor under test to read clear before the scenario.
    #[arg(long, env = "ROBOFLEET_SIM_WARMUP_TIMEOUT", default_value = "30s")]
    pub warmup_timeout: String,
}

/// The result file.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimResult {
    /// `Succeeded` or `Failed`.
    pub phase: &'static str,
    /// All expectations held.
    pub passed: bool,
    /// Why the run failed, if it did not complete.
    pub error: Option<String>,
    /// Scans published.
    pub messages_published: u64,
    /// Faults injected.
    pub faults_injected: Faults,
    /// Each expectation.
    pub assertions: Vec<Assertion>,
    /// Scenario run time.
    pub duration_seconds: f64,
    /// Stop-lock samples received.
    pub lock_samples: usize,
}

fn write(path: &PathBuf, r: &SimResult) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(r)?;
    std::fs::write(path, format!("{text}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", serde_json::to_string(r)?);
    Ok(())
}

/// Runs and returns the exit code.
pub async fn run(args: SimArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let cfg = SimFile::parse(&text)?.validate(&args.robot)?;
    let warmup =
        parse_duration_or(&args.warmup_timeout).context("--warmup-timeout must be a duration")?;
    let mut registry = Registry::default();
    let metrics = SimMetrics::register(&mut registry);
    let _ros = RosMetrics::register(&mut registry);
    let (stop_http, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let http = match args.metrics_addr {
        Some(addr) => {
            let health = Arc::new(Health::default());
            health
                .live
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let (bound, task) = metrics::serve(addr, registry, health, async {
                let _ = stop_http_rx.await;
            })
            .await?;
            tracing::info!(addr = %bound, "metrics listening");
            Some(task)
        }
        None => None,
    };
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel();
    let handle = node::spawn(
        cfg.clone(),
        RosOptions::from_env(args.domain_id),
        metrics,
        warmup,
        cancel_rx,
    );
    let mut done = tokio::task::spawn_blocking(move || handle.join());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let joined = tokio::select! {
        r = &mut done => r,
        _ = term.recv() => { let _ = cancel_tx.send(()); done.await }
        _ = int.recv() => { let _ = cancel_tx.send(()); done.await }
    };
    let _ = stop_http.send(());
    if let Some(t) = http {
        let _ = t.await;
    }
    let outcome = match joined {
        Ok(Ok(Ok(o))) => o,
        other => {
            let error = match other {
                Ok(Ok(Err(e))) => e.to_string(),
                _ => "simulation thread failed".into(),
            };
            tracing::error!(%error, "simulation did not complete");
            let r = SimResult {
                phase: "Failed",
                passed: false,
                error: Some(error),
                messages_published: 0,
                faults_injected: Faults::default(),
                assertions: Vec::new(),
                duration_seconds: 0.0,
                lock_samples: 0,
            };
            write(&args.result, &r)?;
            return Ok(2);
        }
    };
    let assertions = judge(&cfg, &outcome.samples, outcome.ran);
    let passed = assertions.iter().all(|a| a.passed);
    for a in &assertions {
        tracing::info!(expectation = %a.name, passed = a.passed, message = %a.message, "judged");
    }
    let r = SimResult {
        phase: if passed { "Succeeded" } else { "Failed" },
        passed,
        error: None,
        messages_published: outcome.published,
        faults_injected: outcome.faults,
        assertions,
        duration_seconds: outcome.ran,
        lock_samples: outcome.samples.len(),
    };
    write(&args.result, &r)?;
    Ok(if passed { 0 } else { 1 })
}
