//! Commits as librdkafka wants them: the offsets to commit, each with the commit
//! metadata that records finished offsets above it (see
//! [`crate::delivery::commit_metadata`]). Used by the tracker's timer and by the
//! revocation hook.

use rdkafka::{Offset, TopicPartitionList};

use crate::delivery::ledger::TopicPartition;

pub fn commit_list(pending: &[(TopicPartition, i64, String)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset, metadata) in pending {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        if let Some(mut elem) = tpl.find_partition(topic, *partition) {
            elem.set_metadata(metadata.as_str());
        }
    }
    tpl
}
