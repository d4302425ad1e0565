//! The objects of a slide whose link names a header beside its companion files: MIRAX
//! (`case/slide.mrxs` and the folder `case/slide/` holding `Slidedat.ini`, `Index.dat`
//! and `Data*.dat`) and Hamamatsu VMS/VMU (`case/slide.vms` and the image files its
//! keys name, beside it).
//!
//! Why a lookup of its own: OpenSlide finds a MIRAX slide's files in the companion
//! folder and a VMS's files beside the header, on local disk. From a bucket they are
//! listed here (one level, no descent; bounded) and handed with the link to
//! [`super::members`], whose planner (in the slide's worker) reads the header, keeps
//! the files it names and refuses any name that would leave the folder. A listing
//! beyond [`MAX_COMPANIONS`] objects is refused, naming the cap: a slide's folder, not a
//! bucket, is what a link may pull in.

use std::path::Path;

use super::FetchContext;
use super::folder::{Listed, ObjectFolder};
use super::members::fetch_members;
use crate::error_kind::ErrorKind;
use crate::formats::dicom::plan::HEAD_BLOCK;
use crate::planning::SlideLayout;
use crate::storage::error::StorageError;
use crate::storage::fetch::{LocalSlide, over_budget};

/// Most objects a companion folder (MIRAX), or a VMS header's folder, may hold.
pub const MAX_COMPANIONS: usize = 1024;

/// Fetches the slide whose header `linked` (in `folder`) is, with its companions.
pub async fn fetch_companions(
    folder: &dyn ObjectFolder,
    linked: &str,
    layout: SlideLayout,
    ctx: &FetchContext<'_>,
) -> Result<LocalSlide, StorageError> {
    let link = format!("{}{linked}", folder.link());
    let _turn = ctx
        .budgets
        .series
        .take(1, ErrorKind::Internal)
        .await
        .map_err(|e| over_budget(link.clone(), e))?;
    // The link itself first: a missing header is `slide_not_found`, whatever is beside.
    let (info, first) = folder.object(linked).head(HEAD_BLOCK).await?;
    let mut listed = vec![Listed {
        name: linked.to_string(),
        size: info.size,
        generation: info.generation,
    }];
    let others = match layout {
        SlideLayout::Mirax => {
            let stem = Path::new(linked)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(linked);
            let companion = folder.child(stem);
            companion
                .list()
                .await?
                .into_iter()
                .map(|l| Listed {
                    name: format!("{stem}/{}", l.name),
                    ..l
                })
                .collect()
        }
        _ => folder
            .list()
            .await?
            .into_iter()
            .filter(|l| l.name != linked)
            .collect::<Vec<_>>(),
    };
    if others.len() > MAX_COMPANIONS {
        return Err(StorageError::Slide {
            link,
            kind: ErrorKind::SlideTooLarge,
            message: format!(
                "the slide's folder holds {} objects; a multi-file slide may have at most \
                 {MAX_COMPANIONS}: keep each slide in a folder of its own",
                others.len()
            ),
        });
    }
    listed.extend(others);
    fetch_members(folder, linked, first, listed, layout, ctx).await
}
