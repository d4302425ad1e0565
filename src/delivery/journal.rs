//! The restart-loop guard: which requests were being served when the service process
//! died, and how often.
//!
//! Slides are decoded in worker processes, but whatever still runs inside the service
//! (our own code, `thumbnail.isolation = "none"`) could still take it down on one
//! request; Kafka then redelivers that request after the restart, and the service dies
//! again: a loop that stalls the partition for good. So every dispatched request is
//! written to a small journal in the temporary directory (which survives a container
//! restart when it is a volume), and crossed off when done. At start-up, entries never
//! crossed off were in flight when the process died; a request found so twice is
//! answered with an `internal` failure record instead of being served a third time.
//!
//! One line per event (`B topic partition offset deaths`, `E topic partition offset`),
//! appended with one `write` each: a crash loses at most the line being written. The
//! file is rewritten compactly at start-up and whenever it grows long.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Deaths after which a request is failed instead of served again.
pub const MAX_DEATHS: u32 = 2;
/// File name inside the temporary directory, per consumer group and cluster, so that
/// instances sharing a directory (tests, several services on one host) keep apart.
pub fn journal_file(group: &str, bootstrap: &str) -> String {
    let clean: String = format!("{group}@{bootstrap}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    format!("wsi-inflight-{clean}.journal")
}
/// Lines appended before the file is rewritten compactly.
const COMPACT_AFTER: usize = 10_000;
/// Most request records whose deaths are remembered (the oldest are forgotten).
const MAX_REMEMBERED: usize = 10_000;

type Coordinates = (String, i32, i64);

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Deaths of requests that were in flight when an earlier process died.
    deaths: HashMap<Coordinates, u32>,
    in_flight: HashSet<Coordinates>,
    appended: usize,
}

impl Journal {
    /// Opens the journal in `dir`, counting a death for every request an earlier
    /// process left in flight.
    pub fn open(dir: &Path, file_name: &str) -> io::Result<Journal> {
        let path = dir.join(file_name);
        let deaths = match File::open(&path) {
            Ok(f) => replay(BufReader::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        let mut journal = Journal {
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            deaths,
            in_flight: HashSet::new(),
            appended: 0,
        };
        journal.compact()?;
        Ok(journal)
    }

    /// How many times the service died while serving this request.
    pub fn deaths(&self, topic: &str, partition: i32, offset: i64) -> u32 {
        self.deaths
            .get(&(topic.to_string(), partition, offset))
            .copied()
            .unwrap_or(0)
    }

    /// Records that the request is being served.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) -> io::Result<()> {
        let deaths = self.deaths(topic, partition, offset);
        self.in_flight
            .insert((topic.to_string(), partition, offset));
        self.append(&format!("B {topic} {partition} {offset} {deaths}\n"))
    }

    /// Crosses the request off: it was answered (or given up cleanly).
    pub fn end(&mut self, topic: &str, partition: i32, offset: i64) -> io::Result<()> {
        let key = (topic.to_string(), partition, offset);
        if !self.in_flight.remove(&key) {
            return Ok(());
        }
        self.deaths.remove(&key);
        self.append(&format!("E {topic} {partition} {offset}\n"))
    }

    /// A clean shutdown: what is still in flight was abandoned on purpose, not killed.
    pub fn end_all(&mut self) -> io::Result<()> {
        let open: Vec<Coordinates> = self.in_flight.iter().cloned().collect();
        for (topic, partition, offset) in open {
            self.end(&topic, partition, offset)?;
        }
        Ok(())
    }

    fn append(&mut self, line: &str) -> io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        self.appended += 1;
        if self.appended >= COMPACT_AFTER {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file as the current state: remembered deaths and open entries.
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let mut remembered: Vec<_> = self.deaths.iter().collect();
        remembered.sort();
        for ((topic, partition, offset), deaths) in remembered.iter().rev().take(MAX_REMEMBERED) {
            if !self
                .in_flight
                .contains(&(topic.clone(), *partition, *offset))
            {
                writeln!(out, "D {topic} {partition} {offset} {deaths}")?;
            }
        }
        for key @ (topic, partition, offset) in &self.in_flight {
            let deaths = self.deaths.get(key).copied().unwrap_or(0);
            writeln!(out, "B {topic} {partition} {offset} {deaths}")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.appended = 0;
        Ok(())
    }
}

/// Reads a journal: entries begun and never ended get one more death.
fn replay(input: impl BufRead) -> HashMap<Coordinates, u32> {
    let mut deaths = HashMap::new();
    let mut open: HashMap<Coordinates, u32> = HashMap::new();
    for line in input.lines().map_while(Result::ok) {
        let fields: Vec<&str> = line.split(' ').collect();
        let coordinates = |f: &[&str]| -> Option<Coordinates> {
            Some((
                f.get(1)?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        };
        let count = |f: &[&str]| f.get(4).and_then(|d| d.parse::<u32>().ok()).unwrap_or(0);
        // A torn last line (the process died mid-write) simply does not parse.
        let Some(key) = coordinates(&fields) else {
            continue;
        };
        match fields[0] {
            "B" => {
                open.insert(key, count(&fields));
            }
            "E" => {
                open.remove(&key);
                deaths.remove(&key);
            }
            "D" => {
                deaths.insert(key, count(&fields));
            }
            _ => {}
        }
    }
    for (key, before) in open {
        deaths.insert(key, before + 1);
    }
    deaths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_in_flight_at_two_deaths_is_known_at_the_third_start() {
        let dir = tempfile::tempdir().unwrap();
        for expected in 0..=2 {
            let mut j = Journal::open(dir.path(), "j").unwrap();
            assert_eq!(j.deaths("req", 3, 41), expected);
            j.begin("req", 3, 41).unwrap();
            j.begin("req", 3, 42).unwrap();
            j.end("req", 3, 42).unwrap();
            // The process "dies" here: dropped without ending 41.
        }
        let j = Journal::open(dir.path(), "j").unwrap();
        assert_eq!(j.deaths("req", 3, 41), 3);
        assert_eq!(j.deaths("req", 3, 42), 0, "finished work never counts");
    }

    #[test]
    fn a_request_that_finishes_after_a_death_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "j").unwrap();
        j.begin("req", 0, 7).unwrap();
        drop(j);
        let mut j = Journal::open(dir.path(), "j").unwrap();
        assert_eq!(j.deaths("req", 0, 7), 1);
        j.begin("req", 0, 7).unwrap();
        j.end("req", 0, 7).unwrap();
        drop(j);
        assert_eq!(
            Journal::open(dir.path(), "j").unwrap().deaths("req", 0, 7),
            0
        );
    }

    #[test]
    fn a_clean_shutdown_is_not_a_death() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "j").unwrap();
        j.begin("req", 1, 5).unwrap();
        j.end_all().unwrap();
        drop(j);
        assert_eq!(
            Journal::open(dir.path(), "j").unwrap().deaths("req", 1, 5),
            0
        );
    }

    #[test]
    fn file_names_are_safe_and_per_cluster() {
        let a = journal_file("g", "127.0.0.1:9092");
        assert_eq!(a, "wsi-inflight-g@127.0.0.1_9092.journal");
        assert_ne!(a, journal_file("g", "127.0.0.1:9093"));
        assert!(!journal_file("../x", "a/b").contains('/'));
    }

    #[test]
    fn a_torn_line_is_ignored() {
        let deaths = replay("B req 0 1 0\nE req 0".as_bytes());
        assert_eq!(deaths.get(&("req".to_string(), 0, 1)), Some(&1));
        assert_eq!(deaths.len(), 1);
    }
}
