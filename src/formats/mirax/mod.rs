//! 3DHISTECH MIRAX: a `.mrxs` and the folder of the same stem beside it (`Slidedat.ini`,
//! the index, the data files). Linked by the `.mrxs`; planned from `Slidedat.ini`
//! ([`slidedat`]: the level sizes) and `Index.dat` ([`index`]: where each image is) to
//! the ranges of the level read ([`plan`]); OpenSlide reads the levels and gives the
//! metadata (vendor `mirax`).

pub mod index;
pub mod plan;
pub mod slidedat;

use std::path::Path;

use super::SlideFormat;
use crate::planning::{PlanAnswer, PlanRefusal, PlanTask, SlideLayout};

pub struct Mirax;

impl SlideFormat for Mirax {
    fn name(&self) -> &'static str {
        "mirax"
    }

    fn link_layout(&self, object: &str) -> Option<SlideLayout> {
        Path::new(object)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("mrxs"))
            .then_some(SlideLayout::Mirax)
    }

    fn planned_layout(&self) -> Option<SlideLayout> {
        Some(SlideLayout::Mirax)
    }

    fn plan(&self, task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
        plan::plan_mirax(task)
    }
}
