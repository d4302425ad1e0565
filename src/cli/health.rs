//! `wsi-thumbnail health`: the container image's HEALTHCHECK, so that the image needs
//! no curl (issue 21: fewer packages, and an HTTP client nobody else uses). It asks the
//! running service's `/healthz` on 127.0.0.1 and exits 0 on 200, 1 otherwise, printing
//! one line on failure. Kubernetes and Cloud Run use their own probes on `/healthz`
//! and `/readyz`; this serves Docker and Compose.

use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port of the service's HTTP listener [default: $PORT, else 8080].
    #[arg(long)]
    port: Option<u16>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("PORT is {0:?}, not a port number: set it to the service's HTTP port")]
    Port(String),
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let port = match args.port {
        Some(p) => p,
        None => match std::env::var("PORT") {
            Ok(v) => v.trim().parse().map_err(|_| Error::Port(v))?,
            Err(_) => 8080,
        },
    };
    let url = format!("http://127.0.0.1:{port}/healthz");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Client(e.to_string()))?;
    let timeout = Duration::from_secs(args.timeout);
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
        Ok::<u16, String>(response.status().as_u16())
    });
    match answer {
        Ok(200) => Ok(ExitCode::SUCCESS),
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
