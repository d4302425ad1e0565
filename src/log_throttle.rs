//! A log line that repeats (the broker is down, every produce fails) is written at
//! most once per interval, with the number of times it was held back: an outage stays
//! visible without flooding the log pipeline or hiding everything else.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogThrottle {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be written now (with how many were held back
    /// since the last one), `None` when it should be held back.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        let (last, suppressed) = &mut *state;
        match last {
            Some(at) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.allow_at(start), Some(0));
        for s in 1..10 {
            assert_eq!(t.allow_at(start + Duration::from_secs(s)), None);
        }
        assert_eq!(t.allow_at(start + Duration::from_secs(10)), Some(9));
        assert_eq!(t.allow_at(start + Duration::from_secs(11)), None);
    }
}
