//! robofleet-operator binary: parse the configuration, set up logging, win the leader election,
//! run; release the lease on SIGTERM, exit at once if leadership is lost.

use std::time::Duration;

use clap::Parser;
use kube::Api;
use robofleet_operator::config::Args;
use robofleet_operator::leader::{Elector, Timing};

/// Leader election flags (on by default: the chart runs two replicas).
#[derive(Debug, clap::Args)]
struct LeaderArgs {
    /// Elect a leader on a Lease; only the leader writes.
    #[arg(long, env = "ROBOFLEET_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(
        long,
        env = "ROBOFLEET_LEASE_NAME",
        default_value = "robofleet-operator"
    )]
    lease_name: String,
    /// This replica's identity (the pod name); defaults to host name and PID.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a lease stays valid after its last observed renewal.
    #[arg(long, env = "ROBOFLEET_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds a leader may fail to renew before it exits.
    #[arg(long, env = "ROBOFLEET_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    renew_deadline_seconds: u64,
    /// Seconds between election attempts.
    #[arg(long, env = "ROBOFLEET_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    retry_period_seconds: u64,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "robofleet-operator: runs robofleet workloads on robots"
)]
struct Cli {
    #[command(flatten)]
    args: Args,
    #[command(flatten)]
    leader: LeaderArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = cli.args.validate()?;
    let metrics = std::sync::Arc::new(robofleet_operator::metrics::Metrics::default());
    let client = robofleet_operator::client::counting_client(metrics.clone()).await?;
    tracing::info!(metrics = %config.metrics_addr, images = config.images.entries.len(), "starting");
    let l = cli.leader;
    if !l.leader_election {
        return robofleet_operator::run(config, client, metrics, std::future::ready(())).await;
    }
    let identity = l.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let timing = Timing {
        lease_duration: Duration::from_secs(l.lease_duration_seconds),
        renew_deadline: Duration::from_secs(l.renew_deadline_seconds),
        retry_period: Duration::from_secs(l.retry_period_seconds),
    };
    let mut elector = Elector::new(
        Api::namespaced(client.clone(), &l.lease_namespace),
        &l.lease_name,
        &identity,
        timing,
    );
    tracing::info!(%identity, lease = %l.lease_name, "waiting to become leader");
    // The operator starts at once (warm Node cache) and begins writing when `won` fires.
    let (won_tx, won_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = robofleet_operator::run(config, client, metrics, async move {
        if won_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    let election = async {
        elector.acquire().await?;
        tracing::info!(%identity, "became leader");
        let _ = won_tx.send(());
        let err = elector.keep_renewing().await;
        anyhow::Ok(err)
    };
    let mut operator = std::pin::pin!(operator);
    let outcome = tokio::select! {
        res = &mut operator => Some(res),
        lost = election => match lost {
            Ok(err) => {
                tracing::error!(error = %err, "lost leadership; exiting");
                None
            }
            Err(e) => Some(Err(e)),
        },
    };
    match outcome {
        Some(res) => {
            // A no-op unless this identity holds the lease.
            if let Err(e) = elector.release().await {
                tracing::warn!(error = %e, "could not release the lease");
            }
            tracing::info!("lease released; stopped");
            res
        }
        None => std::process::exit(1),
    }
}
