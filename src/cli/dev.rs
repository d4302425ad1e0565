//! `wsi-thumbnail dev`: generates the deterministic fixture slides that tests and
//! benchmarks use, so that none has to be committed.

use std::path::PathBuf;
use std::process::ExitCode;

use wsi_thumbnail::fixtures::{SlideSpec, Style, broken, pyramid};

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
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FixtureStyle {
    Aperio,
    Generic,
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
    #[arg(long, default_value_t = 256)]
    tile: u32,
    #[arg(long, default_value_t = 70)]
    quality: i32,
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
    #[error("tile size must be a positive multiple of 16, got {0}")]
    Tile(u32),
}

pub fn run(cmd: Command) -> Result<ExitCode, Error> {
    match cmd {
        Command::Fixture(a) => {
            if a.tile == 0 || a.tile % 16 != 0 {
                return Err(Error::Tile(a.tile));
            }
            let base = match a.style {
                FixtureStyle::Aperio => SlideSpec::aperio(a.width, a.height, a.level_step),
                FixtureStyle::Generic => SlideSpec::generic_single_level(a.width, a.height),
            };
            let spec = SlideSpec {
                tile: a.tile,
                quality: a.quality,
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
    }
    Ok(ExitCode::SUCCESS)
}
