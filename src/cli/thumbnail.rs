//! `wsi-thumbnail thumbnail`: local slides in, PNG files and JSON lines out.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::time::Duration;

use std::sync::Arc;
use wsi_thumbnail::slide::{self, DecoderChoice, SlideError, Thumbnail, ThumbnailOptions};
use wsi_thumbnail::worker::{DecodeFailure, Isolation, WorkerPool, WorkerSettings};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("destination").required(true).args(["output", "out_dir"]))]
pub struct Args {
    /// Slide files (Aperio .svs, Hamamatsu .ndpi, generic tiled .tif, ...).
    #[arg(required = true)]
    slides: Vec<PathBuf>,

    /// Output PNG (one slide only).
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// Output directory for many slides; each becomes `<stem>_thumbnail.png`.
    #[arg(long)]
    out_dir: Option<PathBuf>,

    /// Longest side of the thumbnail in pixels; aspect ratio is kept, never enlarged.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=16384))]
    size: u32,

    /// Pixel path: `auto` decodes JPEG tiles directly where possible.
    #[arg(long, value_enum, default_value_t = DecoderChoice::Auto)]
    decoder: DecoderChoice,

    /// Refuse slides declaring more level-0 pixels than this (decompression bombs).
    #[arg(long, default_value_t = slide::DEFAULT_MAX_SLIDE_PIXELS)]
    max_slide_pixels: u64,

    /// `process`: decode each slide in a disposable, limited worker process, so a slide
    /// that crashes or hangs the slide libraries is one error line; `none`: in this
    /// process (trusted slides only).
    #[arg(long, value_enum, default_value_t = Isolation::Process)]
    isolation: Isolation,

    /// Address-space cap of the worker process, in MiB.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(256..))]
    worker_memory_mb: u64,

    /// Longest one slide may take in the worker, in milliseconds.
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
}

/// Makes thumbnails in a fresh worker process per slide (the next one started while
/// this one works), or in this process with `--isolation none`.
struct Engine {
    options: ThumbnailOptions,
    workers: Option<Arc<WorkerPool>>,
}

impl Engine {
    fn new(args: &Args) -> Engine {
        let options = ThumbnailOptions {
            max_size: args.size,
            max_slide_pixels: args.max_slide_pixels,
            decoder: args.decoder,
        };
        let workers = (args.isolation == Isolation::Process).then(|| {
            WorkerPool::start(
                WorkerSettings::new(
                    args.worker_memory_mb,
                    Duration::from_millis(args.timeout_ms),
                    std::env::temp_dir(),
                ),
                1,
            )
        });
        Engine { options, workers }
    }

    fn thumbnail(&mut self, path: &Path) -> Result<Thumbnail, Error> {
        match &self.workers {
            Some(pool) => {
                let worker = pool.checkout().map_err(|e| DecodeFailure {
                    kind: wsi_thumbnail::error_kind::ErrorKind::Internal,
                    retryable: true,
                    message: e.to_string(),
                })?;
                Ok(worker.thumbnail(path, &self.options)?)
            }
            None => Ok(slide::make_thumbnail(path, &self.options)?),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind}: {source}", kind = .source.kind())]
    Slide {
        #[from]
        source: SlideError,
    },
    #[error(transparent)]
    Decode(#[from] DecodeFailure),
    #[error("cannot write {path}: {source}; check that the directory exists and is writable")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--output takes exactly one slide; use --out-dir for {0} slides")]
    OutputNeedsOneSlide(usize),
    #[error("two slides would both write {0}; rename one or run them separately")]
    NameClash(PathBuf),
    #[error("{0} of {1} slides failed (see the error lines above)")]
    SomeFailed(usize, usize),
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    if args.output.is_some() && args.slides.len() != 1 {
        return Err(Error::OutputNeedsOneSlide(args.slides.len()));
    }
    let mut engine = Engine::new(&args);
    if let Some(output) = &args.output {
        let thumb = engine.thumbnail(&args.slides[0])?;
        write_file(output, &thumb.png)?;
        println!(
            "{}",
            serde_json::to_string(&thumb.metadata).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out_dir = args.out_dir.unwrap_or_default();
    let targets = output_names(&args.slides, &out_dir)?;
    let progress = ProgressBar::new(args.slides.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut failed = 0;
    let stdout = std::io::stdout();
    for (slide_path, target) in args.slides.iter().zip(&targets) {
        progress.set_message(slide_path.display().to_string());
        let line = match engine
            .thumbnail(slide_path)
            .and_then(|t| write_file(target, &t.png).map(|()| t))
        {
            Ok(thumb) => {
                let mut line = serde_json::to_value(&thumb.metadata).unwrap_or_default();
                line["slide"] = json!(slide_path);
                line["thumbnail"] = json!(target);
                line
            }
            Err(e) => {
                failed += 1;
                progress.suspend(|| eprintln!("error: {}: {}", slide_path.display(), e));
                let kind = match &e {
                    Error::Slide { source } => source.kind().as_str(),
                    Error::Decode(failure) => failure.kind.as_str(),
                    _ => "internal",
                };
                json!({"slide": slide_path, "error": {"kind": kind, "message": e.to_string()}})
            }
        };
        progress.suspend(|| {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
        });
        progress.inc(1);
    }
    progress.finish_and_clear();
    if failed > 0 {
        return Err(Error::SomeFailed(failed, args.slides.len()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `<stem>_thumbnail.png` for each slide, refusing two slides with the same name.
fn output_names(slides: &[PathBuf], out_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut seen = HashSet::new();
    slides
        .iter()
        .map(|s| {
            let stem = s
                .file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default();
            let target = out_dir.join(format!("{stem}_thumbnail.png"));
            if seen.insert(target.clone()) {
                Ok(target)
            } else {
                Err(Error::NameClash(target))
            }
        })
        .collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}
