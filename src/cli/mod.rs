//! Command-line parsing (clap) and dispatch to the subcommands.

mod dev;
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
    /// Developer tools: generate fixture slides.
    #[command(subcommand)]
    Dev(dev::Command),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Thumbnail(#[from] thumbnail::Error),
    #[error(transparent)]
    Dev(#[from] dev::Error),
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Thumbnail(args) => Ok(thumbnail::run(args)?),
        Command::Dev(cmd) => Ok(dev::run(cmd)?),
    }
}

/// Human-readable logs on stderr; warnings only unless asked.
pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
