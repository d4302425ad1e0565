//! `wsi-thumbnail serve` (the long-running service) and `wsi-thumbnail topics ensure`.

use std::path::PathBuf;
use std::process::ExitCode;

use wsi_thumbnail::config::{Config, ConfigError};
use wsi_thumbnail::kafka::{settings, topics};
use wsi_thumbnail::supervisor::{self, ServiceError};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration (else $WSI_THUMBNAIL_CONFIG, else built-in defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Validate the configuration, print the effective settings and exit.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// Create the request, response and dead-letter topics if they do not exist.
    Ensure {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Topics(#[from] topics::TopicsError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

pub fn serve(args: ServeArgs, log_level: Option<&str>) -> Result<ExitCode, Error> {
    let config = Config::load(args.config.as_deref())?;
    if args.check {
        println!(
            "{}",
            serde_json::to_string_pretty(&config.redacted()).unwrap_or_default()
        );
        eprintln!("configuration OK");
        return Ok(ExitCode::SUCCESS);
    }
    super::init_logging(
        Some(log_level.unwrap_or(&config.log.level)),
        config.log.json,
    );
    actix_rt::System::new().block_on(supervisor::run(config))?;
    Ok(ExitCode::SUCCESS)
}

pub fn topics(cmd: TopicsCommand) -> Result<ExitCode, Error> {
    let TopicsCommand::Ensure { config } = cmd;
    let config = Config::load(config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(topics::ensure(&config.kafka, &settings::client_id()))?;
    for (topic, created) in results {
        println!(
            "{}",
            serde_json::json!({"topic": topic, "created": created})
        );
    }
    Ok(ExitCode::SUCCESS)
}
