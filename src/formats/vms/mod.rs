//! Hamamatsu VMS and VMU: a header whose keys name the image, map and optimisation
//! files beside it. Linked by the header; planned from it ([`plan`]); OpenSlide reads
//! the levels and gives the metadata (vendor `hamamatsu`).

pub mod plan;

use std::path::Path;

use super::SlideFormat;
use crate::planning::{PlanAnswer, PlanRefusal, PlanTask, SlideLayout};

pub struct Vms;

impl SlideFormat for Vms {
    fn name(&self) -> &'static str {
        "vms"
    }

    fn link_layout(&self, object: &str) -> Option<SlideLayout> {
        Path::new(object)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("vms") || e.eq_ignore_ascii_case("vmu"))
            .then_some(SlideLayout::Vms)
    }

    fn planned_layout(&self) -> Option<SlideLayout> {
        Some(SlideLayout::Vms)
    }

    fn plan(&self, task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
        plan::plan_vms(task)
    }
}
