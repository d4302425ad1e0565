//! Per-key ordering (Confluent Parallel Consumer's KEY mode): at most one request per
//! key is in flight; later requests with the same key wait in offset order, while
//! different keys run in parallel.

use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
pub struct KeyOrder<T> {
    waiting: HashMap<Vec<u8>, VecDeque<T>>,
}

impl<T> Default for KeyOrder<T> {
    fn default() -> Self {
        KeyOrder {
            waiting: HashMap::new(),
        }
    }
}

impl<T> KeyOrder<T> {
    /// Offers `item` for `key`: returns it back if it may run now, or queues it behind
    /// the request already running for that key. Items without a key always run.
    pub fn admit(&mut self, key: Option<&[u8]>, item: T) -> Option<T> {
        let Some(key) = key else {
            return Some(item);
        };
        match self.waiting.get_mut(key) {
            Some(queue) => {
                queue.push_back(item);
                None
            }
            None => {
                self.waiting.insert(key.to_vec(), VecDeque::new());
                Some(item)
            }
        }
    }

    /// The request for `key` finished: returns the next one to run for it, if any.
    pub fn release(&mut self, key: Option<&[u8]>) -> Option<T> {
        let key = key?;
        let queue = self.waiting.get_mut(key)?;
        match queue.pop_front() {
            Some(next) => Some(next),
            None => {
                self.waiting.remove(key);
                None
            }
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_waits_in_order_other_keys_run() {
        let mut k = KeyOrder::default();
        assert_eq!(k.admit(Some(b"a"), 1), Some(1));
        assert_eq!(k.admit(Some(b"a"), 2), None);
        assert_eq!(k.admit(Some(b"b"), 3), Some(3));
        assert_eq!(k.admit(Some(b"a"), 4), None);
        assert_eq!(k.admit(None, 5), Some(5));
        assert_eq!(k.waiting(), 2);
        assert_eq!(k.release(Some(b"a")), Some(2));
        assert_eq!(k.admit(Some(b"a"), 6), None);
        assert_eq!(k.release(Some(b"a")), Some(4));
        assert_eq!(k.release(Some(b"a")), Some(6));
        assert_eq!(k.release(Some(b"a")), None);
        assert_eq!(k.admit(Some(b"a"), 7), Some(7), "key is free again");
        assert_eq!(k.release(Some(b"b")), None);
    }
}
