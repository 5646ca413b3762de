//! `pod-runner`: parse the configuration, set up logging, run the runner (see
//! `robofleet_tests::runner`).

use std::process::ExitCode;

use clap::Parser;
use robofleet_tests::runner::{self, config::Args, pod, process};

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cfg = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(kind = e.kind(), "invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&cfg.state_dir) {
        tracing::error!("state directory {}: {e}", cfg.state_dir.display());
        return ExitCode::from(2);
    }
    let reaped = process::reap_leftovers(&pod::pid_dir(&cfg.state_dir));
    if reaped > 0 {
        tracing::warn!(reaped, "stopped processes left by an earlier runner");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let client = kube::Client::try_default().await?;
        runner::run(cfg, client).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(kind = e.kind(), "{e}");
            ExitCode::FAILURE
        }
    }
}
