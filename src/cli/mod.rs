//! Command-line parsing (clap) and dispatch to the subcommands.

mod dev;
mod health;
mod output_file;
mod serve;
mod thumbnail;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wsi-thumbnail",
    version,
    about = "Whole-slide-image thumbnails and metadata"
)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` also works.
    #[arg(long, global = true)]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make thumbnails of local slide files and print their metadata as JSON lines.
    Thumbnail(thumbnail::Args),
    /// Run the Kafka service until SIGTERM/SIGINT, then drain and exit 0.
    Serve(serve::ServeArgs),
    /// Manage the service's Kafka topics.
    #[command(subcommand)]
    Topics(serve::TopicsCommand),
    /// Exit 0 when the service on this host answers /healthz with 200 (the image's
    /// HEALTHCHECK).
    Health(health::Args),
    /// Developer tools: generate fixture slides.
    #[command(subcommand)]
    Dev(dev::Command),
    /// The zygote that forks slide-decoding workers (started by `serve` and `thumbnail`,
    /// not by hand).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The one directory the worker's sandbox lets it write to.
    #[arg(long)]
    writable_dir: std::path::PathBuf,
    /// Log JSON lines (as the service does with `log.json`).
    #[arg(long)]
    log_json: bool,
    /// Enter the sandbox, try what it should refuse, print the results as JSON, exit.
    #[arg(long)]
    probe: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Thumbnail(#[from] thumbnail::Error),
    #[error(transparent)]
    Dev(#[from] dev::Error),
    #[error(transparent)]
    Serve(#[from] serve::Error),
    #[error(transparent)]
    Health(#[from] health::Error),
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let level = cli.log_level.as_deref();
    match cli.command {
        // The service takes its log settings from its configuration.
        Command::Serve(args) => Ok(serve::serve(args, level)?),
        Command::Topics(cmd) => {
            init_logging(level, false);
            Ok(serve::topics(cmd)?)
        }
        Command::Thumbnail(args) => {
            init_logging(level, false);
            Ok(thumbnail::run(args)?)
        }
        Command::Health(args) => Ok(health::run(args)?),
        Command::Dev(cmd) => {
            init_logging(level, false);
            Ok(dev::run(cmd)?)
        }
        Command::Worker(args) => {
            init_logging(level, args.log_json);
            if args.probe {
                return Ok(wsi_thumbnail::worker::child::probe(&args.writable_dir));
            }
            Ok(wsi_thumbnail::worker::zygote::serve::run(
                &args.writable_dir,
            ))
        }
    }
}

/// Logs on stderr, human-readable or JSON lines; `RUST_LOG` wins over `level`, and
/// without either only warnings are shown.
pub fn init_logging(level: Option<&str>, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.unwrap_or("warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
