//! The dispatcher's decisions, without I/O: which pending rows of a batch
//! to send now, and what a send's result does to its row. The driver
//! ([`super::dispatcher`]) reads, sends and writes around these.

use crate::stream::Backoff;
use std::collections::HashSet;
use std::time::Duration;

/// Which rows of a batch (read in id order) go now: per key, only the
/// first pending row, and only once it is due. A key whose first row waits
/// (for its next attempt) holds the rows after it, so a key's messages
/// never overtake each other; other keys go on.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    held: HashSet<String>,
    /// The earliest time (database clock, ms) a held row becomes due.
    next_due: Option<i64>,
}

impl Batch {
    /// Whether the row of `key`, due at `available_at`, is sent now (`now`
    /// on the database's clock). A row that is not due holds its key.
    pub(crate) fn admit(&mut self, key: &str, available_at: i64, now: i64) -> bool {
        if self.held.contains(key) {
            return false;
        }
        if available_at > now {
            self.hold(key, Some(available_at));
            return false;
        }
        true
    }

    /// Holds `key` for the rest of the batch (its row failed and waits),
    /// due again at `due`.
    pub(crate) fn hold(&mut self, key: &str, due: Option<i64>) {
        self.held.insert(key.to_owned());
        if let Some(due) = due {
            self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
        }
    }

    /// How long until a held row is due, from `now`, if any is.
    pub(crate) fn wait(&self, now: i64) -> Option<Duration> {
        self.next_due.map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0)))
    }
}

/// What a send's result does to its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Delivered: the row is deleted.
    Sent,
    /// Try again after `delay`, having made `attempts`.
    Retry { attempts: u32, delay: Duration },
    /// Give up: the row becomes a dead letter, having made `attempts`.
    Dead { attempts: u32 },
}

/// The verdict on a send that made the row's `attempts`th attempt (from
/// 1): a success is sent, a permanent failure dead at once, a retryable
/// one retried after backoff until `max_attempts` were made.
pub(crate) fn verdict(ok: bool, retryable: bool, attempts: u32, max_attempts: u32, backoff: &Backoff) -> Verdict {
    if ok {
        Verdict::Sent
    } else if !retryable || attempts >= max_attempts {
        Verdict::Dead { attempts }
    } else {
        Verdict::Retry { attempts, delay: backoff.delay(attempts) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_row_holds_the_rows_of_its_key_only() {
        let mut batch = Batch::default();
        assert!(batch.admit("a", 0, 100));
        assert!(!batch.admit("b", 150, 100), "not due yet");
        assert!(!batch.admit("b", 0, 100), "behind b's waiting row");
        assert!(batch.admit("c", 100, 100));
        batch.hold("a", Some(130));
        assert!(!batch.admit("a", 0, 100), "behind a's failed row");
        assert_eq!(batch.wait(100), Some(Duration::from_millis(30)));
    }

    #[test]
    fn retries_back_off_until_the_limit_then_dead_letter() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        assert_eq!(verdict(true, false, 1, 3, &backoff), Verdict::Sent);
        assert_eq!(
            verdict(false, true, 1, 3, &backoff),
            Verdict::Retry { attempts: 1, delay: Duration::from_millis(10) }
        );
        assert_eq!(
            verdict(false, true, 2, 3, &backoff),
            Verdict::Retry { attempts: 2, delay: Duration::from_millis(20) }
        );
        assert_eq!(verdict(false, true, 3, 3, &backoff), Verdict::Dead { attempts: 3 });
        assert_eq!(verdict(false, false, 1, 3, &backoff), Verdict::Dead { attempts: 1 }, "permanent: at once");
    }
}
