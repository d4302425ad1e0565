//! The restart-loop guard for `POST /process`: calls journalled by their link.
//!
//! A Kafka request is journalled by its offset ([`super::journal`]); an HTTP call has
//! none, and a caller that retries sends the same link again. So a call is journalled
//! under a stable key of its link, in a journal file of its own: a link that was being
//! served when the process died twice is refused rather than served a third time.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use super::journal::{Journal, MAX_DEATHS};

/// The journal's "topic" for these calls; the "offset" is the link's key.
const TOPIC: &str = "http";

pub struct LinkJournal(Mutex<Journal>);

impl LinkJournal {
    pub fn new(journal: Journal) -> LinkJournal {
        LinkJournal(Mutex::new(journal))
    }

    /// Journals that `link` is being served; `Err(deaths)` when the process already
    /// died that often serving it.
    pub fn begin(&self, link: &str) -> Result<(), u32> {
        let mut journal = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = key(link);
        let deaths = journal.deaths(TOPIC, 0, key);
        if deaths >= MAX_DEATHS {
            return Err(deaths);
        }
        if let Err(e) = journal.begin(TOPIC, 0, key) {
            tracing::warn!(error = %e, "cannot write the /process journal");
        }
        Ok(())
    }

    /// Crosses `link` off: it was answered.
    pub fn end(&self, link: &str) {
        let mut journal = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = journal.end(TOPIC, 0, key(link)) {
            tracing::warn!(error = %e, "cannot write the /process journal");
        }
    }

    /// A clean shutdown: calls still open were abandoned on purpose, not killed.
    pub fn close(&self) {
        let mut journal = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = journal.end_all() {
            tracing::warn!(error = %e, "cannot close the /process journal");
        }
    }
}

/// A stable key for a link (the same across restarts of one binary: `DefaultHasher`
/// with its fixed keys).
fn key(link: &str) -> i64 {
    let mut hasher = std::hash::DefaultHasher::new();
    link.hash(&mut hasher);
    hasher.finish() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_in_flight_at_two_deaths_is_refused_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let open = || LinkJournal::new(Journal::open(dir.path(), "http.journal").unwrap());
        for _ in 0..MAX_DEATHS {
            // A process serving the link, then dying: the journal is never closed.
            assert_eq!(open().begin("gs://b/killer.svs"), Ok(()));
        }
        let journal = open();
        assert_eq!(journal.begin("gs://b/killer.svs"), Err(MAX_DEATHS));
        assert_eq!(journal.begin("gs://b/innocent.svs"), Ok(()));
        // Answered and closed cleanly: no death is counted for either.
        journal.end("gs://b/innocent.svs");
        journal.close();
        assert_eq!(open().begin("gs://b/innocent.svs"), Ok(()));
    }
}
