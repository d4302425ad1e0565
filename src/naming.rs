//! What names a slide, beyond its link: shared by the slide engine, which finds it out
//! in the worker, and the naming of thumbnails (`storage::location`), which runs in the
//! service, so that neither side imports the other.

/// Which series of its folder a DICOM slide is: what names its thumbnail (contract §1:
/// `{stem}` is the folder's name, plus `_<SeriesInstanceUID>` where the folder holds
/// more than one series), so that every instance link of one series gives one object
/// and two series never share one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeriesIdentity {
    /// SeriesInstanceUID of the linked instance.
    pub uid: String,
    /// Whether the folder's candidates hold VL WSI instances of another series too.
    pub folder_shared: bool,
}
