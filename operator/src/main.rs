//! robofleet-operator binary: parse the configuration, set up logging, run.

use clap::Parser;
use robofleet_operator::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Args::parse().validate()?;
    let client = kube::Client::try_default().await?;
    tracing::info!(metrics = %config.metrics_addr, images = config.images.entries.len(), "starting");
    robofleet_operator::run(config, client).await
}
