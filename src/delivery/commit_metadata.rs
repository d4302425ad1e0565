//! What the commit metadata records, after Confluent's Parallel Consumer: the offsets
//! above the committed one that are already done, so that a restart (or the next owner
//! of a partition) skips finished work instead of redoing it.
//!
//! Encoded compactly and within Kafka's default 4096-byte metadata limit as
//! `wsi1;<highest>;<pending,...>`: every offset from the committed one up to `highest`
//! is done except the listed pending ones. The pending list is bounded by the in-flight
//! budget, so the metadata stays small whatever the backlog.

use std::collections::BTreeSet;

const PREFIX: &str = "wsi1";
/// Kafka's default `offset.metadata.max.bytes` is 4096.
const MAX_LEN: usize = 4000;

/// Offsets at or above the committed one that are known to be finished.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finished {
    pub highest: i64,
    pub pending: BTreeSet<i64>,
}

impl Finished {
    pub fn contains(&self, offset: i64) -> bool {
        offset <= self.highest && !self.pending.contains(&offset)
    }
}

/// Encodes the state for a commit at `committed`: `highest` seen and the unfinished
/// offsets. `None` when nothing above the commit point is finished.
pub fn encode(committed: i64, highest: Option<i64>, pending: &BTreeSet<i64>) -> String {
    let Some(highest) = highest.filter(|h| *h >= committed) else {
        return String::new();
    };
    let mut out = format!("{PREFIX};{highest};");
    let mut highest_kept = highest;
    for (i, offset) in pending.iter().filter(|o| **o >= committed).enumerate() {
        let item = format!("{}{offset}", if i > 0 { "," } else { "" });
        if out.len() + item.len() > MAX_LEN {
            // Out of room: claim nothing past the last pending offset we could list.
            highest_kept = offset - 1;
            break;
        }
        out.push_str(&item);
    }
    if highest_kept != highest {
        let rest = out.split_once(';').map(|(_, r)| r).unwrap_or("");
        let listed = rest.split_once(';').map(|(_, l)| l).unwrap_or("");
        out = format!("{PREFIX};{highest_kept};{listed}");
    }
    out
}

/// Decodes metadata written by [`encode`]; anything else (another tool's metadata, an
/// older format, garbage) means "nothing known", which is always safe.
pub fn decode(metadata: &str) -> Option<Finished> {
    let mut parts = metadata.splitn(3, ';');
    if parts.next()? != PREFIX {
        return None;
    }
    let highest = parts.next()?.parse().ok()?;
    let pending = match parts.next()? {
        "" => BTreeSet::new(),
        list => list
            .split(',')
            .map(|o| o.parse().ok())
            .collect::<Option<BTreeSet<i64>>>()?,
    };
    Some(Finished { highest, pending })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_membership() {
        let pending: BTreeSet<i64> = [10, 13].into();
        let m = encode(10, Some(15), &pending);
        assert_eq!(m, "wsi1;15;10,13");
        let f = decode(&m).unwrap();
        assert!(!f.contains(10) && f.contains(11) && f.contains(12) && !f.contains(13));
        assert!(f.contains(15) && !f.contains(16));
        assert_eq!(encode(10, Some(9), &BTreeSet::new()), "");
        assert_eq!(decode(""), None);
        assert_eq!(decode("someone else's"), None);
        assert_eq!(decode("wsi1;x;"), None);
    }

    proptest! {
        /// Whatever is encoded never claims a pending offset is done, and fits Kafka's limit.
        #[test]
        fn never_claims_pending_work(
            committed in 0i64..1000,
            span in 0i64..5000,
            pending in prop::collection::btree_set(0i64..6000, 0..1500),
        ) {
            let highest = committed + span;
            let pending: BTreeSet<i64> = pending.into_iter().filter(|o| *o >= committed && *o <= highest).collect();
            let m = encode(committed, Some(highest), &pending);
            prop_assert!(m.len() <= 4096);
            if let Some(f) = decode(&m) {
                for o in &pending {
                    prop_assert!(!f.contains(*o), "pending {o} claimed done");
                }
            }
        }
    }
}
