//! How many threads a slide's worker decodes with. Workers decode on one core each so
//! that slides run side by side; but a slide that starts while the others are idle would
//! leave cores unused. So the cores are shared among the slides decoding when one
//! starts: alone, it gets them all (an isolated request's latency); under load, each
//! gets one (no oversubscription, one malloc arena uncontended). The share is fixed when
//! the worker starts: a slide that started alone keeps its threads when others arrive,
//! which oversubscribes the cores for the length of one decode at most.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The cores of the decoder pool, and how many slides hold a share of them.
#[derive(Debug)]
pub struct CoreShare {
    cores: usize,
    decoding: AtomicUsize,
}

/// One slide's share: its thread count, returned when dropped.
#[derive(Debug)]
pub struct Claim<'a> {
    share: &'a CoreShare,
    pub threads: usize,
}

impl CoreShare {
    pub fn new(cores: usize) -> CoreShare {
        CoreShare {
            cores: cores.max(1),
            decoding: AtomicUsize::new(0),
        }
    }

    /// Claims a share for a slide that starts decoding now: the cores divided among it
    /// and the slides already decoding, at least one.
    pub fn claim(&self) -> Claim<'_> {
        let decoding = self.decoding.fetch_add(1, Ordering::AcqRel) + 1;
        Claim {
            share: self,
            threads: (self.cores / decoding).max(1),
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.share.decoding.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_slide_gets_every_core_and_a_busy_pool_one_each() {
        let share = CoreShare::new(4);
        let first = share.claim();
        assert_eq!(first.threads, 4, "alone");
        let second = share.claim();
        assert_eq!(second.threads, 2);
        let third = share.claim();
        let fourth = share.claim();
        let fifth = share.claim();
        assert_eq!((third.threads, fourth.threads, fifth.threads), (1, 1, 1));
        drop((first, second, third, fourth, fifth));
        assert_eq!(share.claim().threads, 4, "every share came back");
    }

    #[test]
    fn no_cores_still_means_one_thread() {
        assert_eq!(CoreShare::new(0).claim().threads, 1);
    }
}
