//! `wsi-thumbnail dev`: generates the deterministic fixture slides that tests and
//! benchmarks use, so that none has to be committed.

use std::path::PathBuf;
use std::process::ExitCode;

use wsi_thumbnail::fixtures::{SlideSpec, Style, broken, poison, pyramid, real_tissue};
use wsi_thumbnail::kafka::settings;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a generated slide (tiled JPEG TIFF) with seeded tissue-like content.
    Fixture(FixtureArgs),
    /// Write the broken-file corpus (empty, truncated, random bytes, absurd header).
    Broken {
        /// Directory to write into.
        #[arg(long)]
        out_dir: PathBuf,
        /// A real slide to truncate.
        #[arg(long)]
        truncate_from: PathBuf,
    },
    /// Write the poison corpus: small slides that crash, hang, balloon or overflow the
    /// stack inside OpenSlide and the libraries under it (one per class), and print
    /// each file with the failure kind the service answers it with.
    Poison {
        /// Directory to write into.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Publish ThumbnailRequests for slide links to the configured request topic.
    Enqueue {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Slide links (gs://, https://storage.googleapis.com/ or file://).
        #[arg(required = true)]
        links: Vec<String>,
        /// Requests per link (each with its own id and slide_id).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Print each request's id and send time (ms) instead of a summary.
        #[arg(long)]
        verbose: bool,
    },
    /// Print responses (and failure records) from the configured topics as JSON lines.
    Responses {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop after this many records.
        #[arg(long)]
        count: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FixtureStyle {
    Aperio,
    Generic,
    /// Hamamatsu NDPI-style: one restart-marked JPEG per level (`--tile` is the widest
    /// restart tile).
    Ndpi,
}

#[derive(Debug, clap::Args)]
pub struct FixtureArgs {
    #[arg(long, value_enum, default_value_t = FixtureStyle::Aperio)]
    style: FixtureStyle,
    #[arg(long)]
    width: u64,
    #[arg(long)]
    height: u64,
    /// Downsample between levels (4 like scanners, or 2); 1 for a single level.
    #[arg(long, default_value_t = 4)]
    level_step: u32,
    /// Tile size [default: 256; 240 with --source, like Aperio scanners].
    #[arg(long)]
    tile: Option<u32>,
    /// JPEG quality [default: 70; 80 with --source].
    #[arg(long)]
    quality: Option<i32>,
    /// Real tissue instead of the seeded synthetic field: tile this real slide's level 0
    /// (read through OpenSlide, e.g. ../shared/testdata/CMU-1-Small-Region.svs) over the
    /// whole size, alternate copies mirrored (`--style aperio` only).
    #[arg(long)]
    source: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file.
    #[arg(long, short)]
    output: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the fixture: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] wsi_thumbnail::config::ConfigError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("only {got} of {want} records arrived within the timeout")]
    Timeout { got: usize, want: usize },
    #[error("tile size must be a positive multiple of 16, got {0}")]
    Tile(u32),
    #[error("--source makes Aperio-style pyramids only (--style aperio)")]
    SourceStyle,
}

pub fn run(cmd: Command) -> Result<ExitCode, Error> {
    match cmd {
        Command::Fixture(a) => {
            let default_tile = if a.source.is_some() { 240 } else { 256 };
            let tile = a.tile.unwrap_or(default_tile);
            if tile == 0 || tile % 16 != 0 {
                return Err(Error::Tile(tile));
            }
            if let Some(source) = a.source {
                if !matches!(a.style, FixtureStyle::Aperio) {
                    return Err(Error::SourceStyle);
                }
                let spec = real_tissue::RealTissueSpec {
                    tile,
                    quality: a.quality.unwrap_or(80),
                    level_step: a.level_step,
                    ..real_tissue::RealTissueSpec::new(source, a.width, a.height)
                };
                let levels = real_tissue::write_slide(&a.output, &spec)?;
                println!(
                    "{}",
                    serde_json::json!({"path": a.output, "levels": levels})
                );
                return Ok(ExitCode::SUCCESS);
            }
            let base = match a.style {
                FixtureStyle::Aperio => SlideSpec::aperio(a.width, a.height, a.level_step),
                FixtureStyle::Generic => SlideSpec::generic_single_level(a.width, a.height),
                FixtureStyle::Ndpi => SlideSpec::ndpi(a.width, a.height),
            };
            let spec = SlideSpec {
                tile,
                quality: a.quality.unwrap_or(70),
                seed: a.seed,
                level_step: if base.style == Style::GenericTiff {
                    1
                } else {
                    a.level_step
                },
                ..base
            };
            let levels = pyramid::write_slide(&a.output, &spec)?;
            println!(
                "{}",
                serde_json::json!({"path": a.output, "levels": levels})
            );
        }
        Command::Broken {
            out_dir,
            truncate_from,
        } => {
            std::fs::create_dir_all(&out_dir)?;
            broken::write_empty(&out_dir.join("empty.svs"))?;
            broken::write_truncated(&truncate_from, &out_dir.join("truncated.svs"), 200_000)?;
            broken::write_random(&out_dir.join("random.svs"), 100_000, 7)?;
            broken::write_bomb(&out_dir.join("bomb.tif"), u32::MAX, u32::MAX)?;
            println!("{}", out_dir.display());
        }
        Command::Poison { out_dir } => {
            for p in poison::write_corpus(&out_dir)? {
                println!(
                    "{}\t{}\t{}",
                    out_dir.join(p.file_name).display(),
                    p.kind,
                    p.class
                );
            }
        }
        Command::Enqueue {
            config,
            links,
            repeat,
            verbose,
        } => enqueue(config, &links, repeat, verbose)?,
        Command::Responses {
            config,
            count,
            timeout,
        } => responses(config, count, timeout)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn enqueue(
    config: Option<PathBuf>,
    links: &[String],
    repeat: usize,
    verbose: bool,
) -> Result<(), Error> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let config = wsi_thumbnail::config::Config::load(config.as_deref())?;
    // A record's timestamp starts its request's end-to-end latency, so this stand-in
    // for a long-lived upstream producer must not spend it on starting up: it connects
    // before stamping, and it is not idempotent (an idempotent producer holds its first
    // records until it has a producer id, up to half a second here). One request in
    // flight per connection keeps per-key order without idempotence.
    let producer: BaseProducer = settings::producer(&config.kafka, &settings::client_id())
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .create()?;
    producer.client().fetch_metadata(
        Some(&config.kafka.request_topic),
        std::time::Duration::from_secs(30),
    )?;
    let run: u32 = rand::random();
    let created_on = wsi_thumbnail::messages::payload::now_rfc3339();
    let mut n = 0;
    for _ in 0..repeat {
        for link in links {
            let slide_id = format!("slide-{run:08x}-{n}");
            let id = format!("req-{run:08x}-{n}");
            let request = serde_json::json!({
                "id": id,
                "created_on": created_on,
                "image_bucket_link": link,
                "patient_id": "patient-demo",
                "slide_id": slide_id,
                "block_id": "block-A",
            })
            .to_string();
            let sent_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            let mut record = BaseRecord::to(&config.kafka.request_topic)
                .key(&slide_id)
                .payload(&request)
                .timestamp(sent_ms as i64);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(std::time::Duration::from_millis(50));
                        record = r;
                    }
                }
            }
            if verbose {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "timestamp_ms": sent_ms as i64})
                );
            }
            n += 1;
        }
    }
    producer.flush(std::time::Duration::from_secs(30))?;
    if !verbose {
        println!(
            "{}",
            serde_json::json!({"enqueued": n, "topic": config.kafka.request_topic})
        );
    }
    Ok(())
}

fn responses(config: Option<PathBuf>, count: usize, timeout: u64) -> Result<(), Error> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let config = wsi_thumbnail::config::Config::load(config.as_deref())?;
    let mut kafka = config.kafka.clone();
    kafka.consumer_group = format!("wsi-thumbnail-dev-reader-{:08x}", rand::random::<u32>());
    let consumer: BaseConsumer = settings::consumer(&kafka, &settings::client_id()).create()?;
    consumer.subscribe(&[&kafka.response_topic, &kafka.dlq_topic])?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut got = 0;
    while got < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(200)) {
            let value: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
            let timestamp_ms = m.timestamp().to_millis();
            println!(
                "{}",
                serde_json::json!({"topic": m.topic(), "timestamp_ms": timestamp_ms, "value": value})
            );
            got += 1;
        }
    }
    if got < count {
        return Err(Error::Timeout { got, want: count });
    }
    Ok(())
}
