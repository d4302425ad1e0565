//! Test-side Kafka clients: produce requests one record per batch (tansu reports a
//! batch's watermark by its base offset), read a topic from the beginning, and read a
//! group's committed offsets; and the topic and group names the service uses.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

// The topics and consumer group the service uses when its configuration names none: the
// contract's defaults, which `config::built_in_defaults_without_any_file` checks the
// service agrees with. Every test starts its own broker, so no test needs names of its
// own; they all use these.

/// Where requests are produced (the service consumes it).
pub const REQUEST_TOPIC: &str = "wsi-thumbnail-req";
/// Where the service produces one ThumbnailResponse per served request.
pub const RESPONSE_TOPIC: &str = "wsi-thumbnail-resp";
/// Where the service produces one failure record per request it cannot serve.
pub const DLQ_TOPIC: &str = "wsi-thumbnail-dlq";
/// The service's consumer group, whose committed offsets the tests read.
pub const CONSUMER_GROUP: &str = "wsi-thumbnail-processor";

pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
}

impl Record {
    /// The `id` of the response or failure record this record carries.
    pub fn id(&self) -> String {
        let value: serde_json::Value = serde_json::from_slice(&self.value).unwrap();
        value["id"].as_str().unwrap_or_default().to_string()
    }
}

pub fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        // Hostile-input tests send requests of over 1 MB.
        .set("message.max.bytes", "4000000")
        .create()
        .expect("test producer")
}

/// Produces `(partition, key, value)` records and waits for every acknowledgement.
pub fn produce(bootstrap: &str, topic: &str, records: &[(i32, String, Vec<u8>)]) {
    let p = producer(bootstrap);
    for (partition, key, value) in records {
        loop {
            match p.send(
                BaseRecord::to(topic)
                    .partition(*partition)
                    .key(key)
                    .payload(value),
            ) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(format!("{e}").contains("Queue full"), "produce failed: {e}");
                    p.poll(Duration::from_millis(50));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("test consumer")
}

/// Follows topics from their beginning, record by record (for tests that time answers).
pub struct Tail(BaseConsumer);

impl Tail {
    pub fn new(bootstrap: &str, topics: &[&str], partitions: i32) -> Tail {
        let c = consumer(bootstrap, &format!("test-tail-{}", rand::random::<u32>()));
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            for p in 0..partitions {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .unwrap();
            }
        }
        c.assign(&tpl).unwrap();
        Tail(c)
    }

    /// The next record (its topic and value), if one arrives within `wait`.
    pub fn next(&self, wait: Duration) -> Option<(String, Vec<u8>)> {
        match self.0.poll(wait) {
            Some(Ok(m)) => Some((
                m.topic().to_string(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            _ => None,
        }
    }
}

/// Reads `topic` from the beginning until `expected` records arrived or `timeout`.
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Vec<Record> {
    let c = consumer(bootstrap, &format!("test-reader-{}", rand::random::<u32>()));
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

/// The group's committed offset per partition (None when nothing is committed).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let c = consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// High watermark (end offset) per partition.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c = consumer(bootstrap, "test-watermarks");
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}
