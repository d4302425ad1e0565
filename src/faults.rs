//! Faults inside a stage: how a caught panic is described and counted, and fault
//! injection for the tests. A panic inside a stage (a slide library, an image routine,
//! a storage client) is caught where the job is held (see [`crate::actors::stage`]), the
//! job becomes an `internal` failure record (or error reply), and the actor goes on
//! with the next message: a restart with no state to lose, since stage actors hold
//! nothing between jobs. The tracker and reader hold the offsets; if one of them dies
//! the supervisor stops the process with an error so the orchestrator restarts it and
//! the broker redelivers whatever was not committed.
//!
//! `WSI_THUMBNAIL_INJECT_PANIC=stage:slide_id[,stage:slide_id...]` makes a stage panic on
//! a given slide: the fault tests use it to prove the above on a real run. Stages:
//! `fetch`, `decode`, `resize`, `upload`.

use std::any::Any;
use std::sync::OnceLock;

use crate::telemetry::record::{self, Stage};

pub const INJECT_PANIC_ENV: &str = "WSI_THUMBNAIL_INJECT_PANIC";

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Counts a caught panic and says what it was.
pub fn record_panic(stage: Stage, payload: &(dyn Any + Send)) -> String {
    let message = panic_message(payload);
    let stage_name = stage.label();
    record::actor_panic(stage);
    tracing::error!(stage = stage_name, panic = %message, "stage panicked; job failed, stage goes on");
    format!("the {stage_name} stage panicked: {message}")
}

/// Panics if fault injection asks `stage` to panic on `slide_id`.
pub fn inject_fault(stage: &str, slide_id: &str) {
    static RULES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let rules =
        RULES.get_or_init(|| parse_rules(&std::env::var(INJECT_PANIC_ENV).unwrap_or_default()));
    if rules.iter().any(|(s, id)| s == stage && id == slide_id) {
        panic!("injected fault ({INJECT_PANIC_ENV}) at {stage} for {slide_id}");
    }
}

fn parse_rules(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter_map(|rule| rule.trim().split_once(':'))
        .map(|(stage, id)| (stage.to_string(), id.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        assert_eq!(
            parse_rules("decode:a, upload:b,bad"),
            vec![("decode".into(), "a".into()), ("upload".into(), "b".into())]
        );
        assert!(parse_rules("").is_empty());
    }
}
