//! `ros2-bridge`: thin entry point; see the library for what each subcommand does.

use clap::{Parser, Subcommand};
use ros2_bridge::{detect, safety, sim};

/// robofleet's ROS 2 nodes (pure Rust DDS, no ROS installation).
#[derive(Debug, Parser)]
#[command(name = "ros2-bridge", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// LIDAR safety monitor publishing a stop lock.
    Safety(safety::cli::SafetyArgs),
    /// Simulated LIDAR with scripted obstacles and faults; exit code 0 = expectations held.
    SensorSim(sim::cli::SimArgs),
    /// Camera frames to the inference sidecar's /v1/detect, Detection2DArray back.
    Detect(detect::cli::DetectArgs),
}

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rustdds=error,ros2_client=warn".into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ROBOFLEET_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return std::process::ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Safety(args) => safety::cli::run(args).await.map(|()| 0),
            Command::SensorSim(args) => sim::cli::run(args).await,
            Command::Detect(args) => detect::cli::run(args).await.map(|()| 0),
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            std::process::ExitCode::from(2)
        }
    }
}
