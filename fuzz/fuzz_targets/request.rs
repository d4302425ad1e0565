//! Any bytes as a Kafka record value: preparing it never panics, and a request that is
//! accepted names an allowed input and a thumbnail that stays inside the output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::admission::admit;
use wsi_thumbnail::messages::pipeline::Admitted;
use wsi_thumbnail::messages::ticket::{KafkaRecord, Ticket};
use wsi_thumbnail::storage::location::{InputLink, InputPolicy, check_relative_name};

fuzz_target!(|data: &[u8]| {
    let policy = InputPolicy {
        allowed_buckets: vec!["slides".into(), "other-slides".into()],
        allow_file_inputs: false,
    };
    let ticket = Ticket::kafka(KafkaRecord {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        key: None,
        generation: 1,
        timestamp_ms: None,
    });
    match admit(ticket, data, &policy, "{slide_id}/{stem}_{id}.png") {
        Admitted::Job(job) => {
            assert!(check_relative_name(&job.object_name).is_ok());
            match &job.input {
                InputLink::Gcs { bucket, .. } => {
                    assert!(policy.allowed_buckets.contains(bucket), "{bucket}")
                }
                other => panic!("file input admitted with allow_file_inputs = false: {other:?}"),
            }
        }
        Admitted::Failure(f) => assert!(!f.message.is_empty()),
    }
});
