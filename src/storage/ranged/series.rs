//! Ranged reads of a DICOM whole-slide image: a series of instance files in one folder.
//!
//! Why: a DICOM slide is one instance per level, and a thumbnail needs one small level.
//! Reading every instance's header and then only the chosen level's pixel data costs a
//! fraction of the series, where a download costs all of it.
//!
//! The service moves bytes; the slide's worker reads them ([`crate::formats::dicom::plan`]).
//! The flow for one link ([`fetch_series`]):
//! 1. read the linked object's first block: a link to a missing object is
//!    `slide_not_found` whatever its folder holds;
//! 2. list the folder once (names, sizes and generations: no lookup per sibling) and
//!    keep the instances that may belong to the slide ([`dicom::is_candidate`], a rule
//!    on names); a folder too large to list is refused, naming the cap;
//! 3. hand them to [`super::members`], whose planner rounds ask first for each header's
//!    first block, then longer prefixes where a header goes on, then the chosen level's
//!    pixel data; the engine opens the linked instance and finds the series beside it,
//!    as on local disk. Candidates that turned out not to be DICOM are removed.

use super::FetchContext;
use super::folder::{Listed, ObjectFolder, too_large};
use super::members::fetch_members;
use super::object::ObjectInfo;
use crate::error_kind::ErrorKind;
use crate::formats::dicom;
use crate::formats::dicom::plan::HEAD_BLOCK;
use crate::planning::SlideLayout;
use crate::storage::error::StorageError;
use crate::storage::fetch::{LocalSlide, over_budget};

/// Most instances one slide may have in its folder. Real series have tens (one per
/// level, a label, an overview); more is a folder this lookup was not meant for.
pub const MAX_INSTANCES: usize = 1024;

/// Fetches the series `linked` belongs to from `folder` into a temporary folder.
pub async fn fetch_series(
    folder: &dyn ObjectFolder,
    linked: &str,
    ctx: &FetchContext<'_>,
) -> Result<LocalSlide, StorageError> {
    let link = format!("{}{linked}", folder.link());
    let _turn = ctx
        .budgets
        .series
        .take(1, ErrorKind::Internal)
        .await
        .map_err(|e| over_budget(link.clone(), e))?;
    // The link itself first: a missing object is `slide_not_found`, whatever the folder.
    let (info, first) = folder.object(linked).head(HEAD_BLOCK).await?;
    let listed = candidates(folder, linked, info).await?;
    fetch_members(folder, linked, first, listed, SlideLayout::DicomSeries, ctx).await
}

/// The linked object and the folder's other instances that may belong to its slide.
async fn candidates(
    folder: &dyn ObjectFolder,
    linked: &str,
    info: ObjectInfo,
) -> Result<Vec<Listed>, StorageError> {
    let listed = folder.list().await?;
    let mut members = vec![Listed {
        name: linked.to_string(),
        size: info.size,
        generation: info.generation,
    }];
    members.extend(
        listed
            .into_iter()
            .filter(|l| l.name != linked && dicom::is_candidate(linked, &l.name)),
    );
    if members.len() > MAX_INSTANCES {
        return Err(StorageError::Slide {
            link: folder.link(),
            kind: ErrorKind::CorruptSlide,
            message: format!(
                "the folder holds {} instances beside {linked}; a slide has at most \
                 {MAX_INSTANCES}: keep each slide's series in a folder of its own",
                members.len()
            ),
        });
    }
    if members.len() > super::folder::MAX_LISTED {
        return Err(too_large(folder.link()));
    }
    Ok(members)
}
