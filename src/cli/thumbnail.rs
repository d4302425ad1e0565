//! `wsi-thumbnail thumbnail`: local slides in, PNG files and JSON lines out.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::time::Duration;

use std::sync::Arc;
use wsi_thumbnail::slide::encode::PngCompression;
use wsi_thumbnail::slide::{self, DecoderChoice, SlideError, Thumbnail, ThumbnailOptions};
use wsi_thumbnail::worker::zygote::forked;
use wsi_thumbnail::worker::{DecodeFailure, Isolation, WorkerPool, WorkerSettings};

use super::output_file::{OutputFile, output_that_is_a_slide};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("destination").required(true).args(["output", "out_dir"]))]
pub struct Args {
    /// Slide files (Aperio .svs, Hamamatsu .ndpi, generic tiled .tif, ...).
    #[arg(required = true)]
    slides: Vec<PathBuf>,

    /// Output PNG (one slide only), put in place whole once made. An older file there is
    /// removed as the run starts, so a slide that fails leaves none.
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// Output directory for many slides; each becomes `<stem>_thumbnail.png` (as with
    /// `--output`, a slide that fails leaves no file).
    #[arg(long)]
    out_dir: Option<PathBuf>,

    /// Longest side of the thumbnail in pixels; aspect ratio is kept, never enlarged.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=16384))]
    size: u32,

    /// Pixel path: `auto` decodes JPEG tiles directly where possible.
    #[arg(long, value_enum, default_value_t = DecoderChoice::Auto)]
    decoder: DecoderChoice,

    /// PNG compression: `fast` (fdeflate), or `small` (zlib level 6: Pillow's size for
    /// about 25 ms more per thumbnail).
    #[arg(long, value_enum, default_value_t = PngCompression::Fast)]
    png_compression: PngCompression,

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

/// Makes thumbnails in a fresh worker process per slide, forked from one zygote for the
/// whole run (the next ones forked while these work; the zygote itself forked from this
/// process), or in this process with `--isolation none`.
struct Engine {
    options: ThumbnailOptions,
    workers: Option<Arc<WorkerPool>>,
    /// Decoding threads per worker.
    threads: usize,
}

impl Engine {
    /// `concurrent` slides at a time, each worker decoding with `threads` threads.
    fn new(args: &Args, concurrent: usize, threads: usize) -> Engine {
        let options = ThumbnailOptions {
            max_size: args.size,
            max_slide_pixels: args.max_slide_pixels,
            decoder: args.decoder,
            png_compression: args.png_compression,
        };
        let workers = (args.isolation == Isolation::Process).then(|| {
            let settings = WorkerSettings::new(
                args.worker_memory_mb,
                Duration::from_millis(args.timeout_ms),
                std::env::temp_dir(),
            );
            // Forked from this process while it has one thread (it saves a process
            // start per run); the pool execs one if that cannot be done.
            let zygote = forked::fork(&settings)
                .inspect_err(|e| tracing::debug!(error = %e, "exec'ing the worker zygote"))
                .ok();
            // A spare per concurrent slide, but none past the run's last slide.
            WorkerPool::start_with(settings, concurrent, Some(args.slides.len()), zygote)
        });
        Engine {
            options,
            workers,
            threads,
        }
    }

    fn thumbnail(&self, path: &Path) -> Result<Thumbnail, Error> {
        match &self.workers {
            Some(pool) => {
                let worker = pool.checkout().map_err(|e| DecodeFailure {
                    kind: wsi_thumbnail::error_kind::ErrorKind::Internal,
                    retryable: true,
                    message: e.to_string(),
                })?;
                Ok(worker.thumbnail(path, &self.options, self.threads)?)
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
    #[error("the output {0} is one of the slides; choose another output path")]
    OutputIsASlide(PathBuf),
    #[error("{0} of {1} slides failed (see the error lines above)")]
    SomeFailed(usize, usize),
}

/// How many slides run at once, and with how many decoding threads each: one slide per
/// core (as the service does under load), and a run of fewer slides than cores gives
/// each slide the cores left over.
pub fn plan_concurrency(slides: usize, cores: usize) -> (usize, usize) {
    let cores = cores.max(1);
    let concurrent = slides.clamp(1, cores);
    (concurrent, (cores / concurrent).max(1))
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    if args.output.is_some() && args.slides.len() != 1 {
        return Err(Error::OutputNeedsOneSlide(args.slides.len()));
    }
    let targets = match (&args.output, &args.out_dir) {
        (Some(output), _) => vec![output.clone()],
        (None, out_dir) => output_names(&args.slides, out_dir.as_deref().unwrap_or(Path::new("")))?,
    };
    // Outputs are prepared (an older file removed) before their slides are read.
    if let Some(target) = output_that_is_a_slide(&targets, &args.slides) {
        return Err(Error::OutputIsASlide(target.to_path_buf()));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (concurrent, threads) = plan_concurrency(args.slides.len(), cores);
    let engine = Engine::new(&args, concurrent, threads);
    if let Some(output) = &args.output {
        // Prepared while the worker starts (`output_file`).
        let file = create_output(output)?;
        let thumb = engine.thumbnail(&args.slides[0])?;
        write_output(file, output, &thumb.png)?;
        println!(
            "{}",
            serde_json::to_string(&thumb.metadata).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let progress = ProgressBar::new(args.slides.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // `concurrent` threads take the slides in order; their lines are printed in the
    // slides' order, each as soon as every line before it is out.
    let next = AtomicUsize::new(0);
    let (done, lines) = mpsc::channel::<(usize, Result<Value, Failed>)>();
    let mut failed = 0;
    std::thread::scope(|scope| {
        for _ in 0..concurrent {
            let done = done.clone();
            let (next, engine, slides, targets) = (&next, &engine, &args.slides, &targets);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(slide_path), Some(target)) = (slides.get(i), targets.get(i)) else {
                        break;
                    };
                    let line = one_slide(engine, slide_path, target);
                    if done.send((i, line)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        let mut pending = BTreeMap::new();
        let mut printed = 0;
        let stdout = std::io::stdout();
        for (i, line) in lines {
            pending.insert(i, line);
            while let Some(line) = pending.remove(&printed) {
                let line = line.unwrap_or_else(|Failed { line, message }| {
                    failed += 1;
                    progress.suspend(|| eprintln!("error: {message}"));
                    line
                });
                progress.suspend(|| {
                    let mut out = stdout.lock();
                    let _ = writeln!(out, "{line}");
                });
                progress.inc(1);
                printed += 1;
            }
        }
    });
    progress.finish_and_clear();
    if failed > 0 {
        return Err(Error::SomeFailed(failed, args.slides.len()));
    }
    Ok(ExitCode::SUCCESS)
}

/// A slide of a batch that failed: its JSON line, and the line for stderr.
struct Failed {
    line: Value,
    message: String,
}

/// One slide of a batch: its JSON line, or its error lines.
fn one_slide(engine: &Engine, slide_path: &Path, target: &Path) -> Result<Value, Failed> {
    match create_output(target).and_then(|file| {
        let thumb = engine.thumbnail(slide_path)?;
        write_output(file, target, &thumb.png).map(|()| thumb)
    }) {
        Ok(thumb) => {
            let mut line = serde_json::to_value(&thumb.metadata).unwrap_or_default();
            line["slide"] = json!(slide_path);
            line["thumbnail"] = json!(target);
            Ok(line)
        }
        Err(e) => {
            let kind = match &e {
                Error::Slide { source } => source.kind().as_str(),
                Error::Decode(failure) => failure.kind.as_str(),
                _ => "internal",
            };
            Err(Failed {
                line: json!({"slide": slide_path, "error": {"kind": kind, "message": e.to_string()}}),
                message: format!("{}: {e}", slide_path.display()),
            })
        }
    }
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

fn create_output(path: &Path) -> Result<OutputFile, Error> {
    OutputFile::create(path).map_err(write_error(path))
}

fn write_output(file: OutputFile, path: &Path, png: &[u8]) -> Result<(), Error> {
    file.write(png).map_err(write_error(path))
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::plan_concurrency;

    #[test]
    fn slides_take_a_core_each_and_a_short_run_shares_the_rest() {
        assert_eq!(
            plan_concurrency(1, 2),
            (1, 2),
            "a lone slide gets every core"
        );
        assert_eq!(
            plan_concurrency(10, 2),
            (2, 1),
            "a batch runs a slide per core"
        );
        assert_eq!(plan_concurrency(3, 8), (3, 2));
        assert_eq!(plan_concurrency(2, 2), (2, 1));
        assert_eq!(
            plan_concurrency(5, 0),
            (1, 1),
            "no core count: one at a time"
        );
    }
}
