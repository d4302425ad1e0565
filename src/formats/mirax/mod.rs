//! 3DHISTECH MIRAX: a `.mrxs` and the folder of the same stem beside it (`Slidedat.ini`,
//! the index, the data files). Linked by the `.mrxs`; planned from `Slidedat.ini`
//! ([`plan`]); OpenSlide reads the levels and gives the metadata (vendor `mirax`).

pub mod plan;

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
