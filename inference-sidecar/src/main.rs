//! `inference-sidecar`: parse the command line, set up logging, run the subcommand.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inference_sidecar::{app, batch, config::ServeArgs};

/// robofleet's inference sidecar: ONNX Runtime behind the Open Inference Protocol v2.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one ONNX model over HTTP (Open Inference Protocol v2).
    Serve(Box<ServeArgs>),
    /// Detect objects in every image of a directory: annotated images, a CSV, errors.csv.
    Batch(Box<batch::BatchArgs>),
}

fn main() -> ExitCode {
    inference_sidecar::ort_backend::keep_native_allocations();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Batch(args) => match batch::run(&args) {
            Ok(summary) => {
                println!(
                    "{} files: {} images processed, {} detections, {} failed",
                    summary.files,
                    summary.ok,
                    summary.detections,
                    summary.failed.len()
                );
                for (file, reason) in &summary.failed {
                    println!("  failed: {file}: {reason}");
                }
                if summary.failed.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let cfg = match (*args).validate(cpus) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(kind = e.kind(), "invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(app::serve(cfg));
            // a model load still running on a blocking thread must not hold the exit
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(kind = e.kind(), "{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
