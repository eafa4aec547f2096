//! Fault injection on purpose ("tempting fate"), to prove nothing is lost.

use crate::error::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Where [`Fate`] may inject a fault: a durability boundary of a write, or a
/// consumer's trip to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// After the write, before its commit: the transaction is rolled back and
    /// the caller gets [`Error::InjectedFault`]. Nothing was written.
    BeforeCommit,
    /// After the commit, before anything is notified: the write is durable,
    /// yet the caller gets [`Error::InjectedFault`], as when a process dies or
    /// a connection drops right after `COMMIT`. A retried transition then
    /// fails with [`Error::Conflict`] and loading shows the new state.
    AfterCommit,
    /// In a consumer, after its handler ran, before the cursor is saved in
    /// the handler's transaction: the transaction is rolled back, as when a
    /// process dies between the two, and the event is handled again.
    BeforeCursorSave,
    /// In a consumer, before each of its own trips to the database outside
    /// the handler's transaction: taking, renewing or giving up its lease,
    /// reading its cursor, reading events or the log's end, moving its
    /// cursor past filtered events, a dead letter, a rebuild's reset. Nothing
    /// was read or written, as when the database restarts or a connection
    /// drops; the consumer retries with backoff and goes on.
    BeforeConsumerQuery,
    /// In an outbox dispatcher, before a message or request is handed to
    /// its destination: nothing was sent, the attempt counts as failed, and
    /// the message is sent again after backoff.
    BeforeSend,
    /// In an outbox dispatcher, after the destination accepted a message or
    /// request, before the outbox row is marked sent: as when the process
    /// dies right after a send, the message is sent again (with the same
    /// message id, so a deduplicating receiver takes it once).
    AfterSend,
    /// In a JetStream relay, instead of handing one event to JetStream in
    /// the middle of its pipeline: that publish is lost, as when a
    /// connection drops, while the ones after it are sent. JetStream
    /// refuses those (each expects the stream's last sequence to be the
    /// one before it), so nothing is stored out of order; the relay reads
    /// the stream's end again and publishes from there.
    BeforePublish,
    /// In a JetStream relay, after JetStream acknowledged a publish, before
    /// the relay's cursor is saved past it: as when the relay dies there,
    /// it starts again from the stream's last stored event, publishing
    /// nothing twice.
    AfterPublishAck,
}

impl FaultPoint {
    /// Every point: the store's, in the order a write reaches them, then
    /// the consumers', the outbox dispatcher's, and a JetStream relay's.
    pub const ALL: [Self; 8] = [
        Self::BeforeCommit,
        Self::AfterCommit,
        Self::BeforeCursorSave,
        Self::BeforeConsumerQuery,
        Self::BeforeSend,
        Self::AfterSend,
        Self::BeforePublish,
        Self::AfterPublishAck,
    ];

    const fn bit(self) -> u8 {
        match self {
            Self::BeforeCommit => 1,
            Self::AfterCommit => 2,
            Self::BeforeCursorSave => 4,
            Self::BeforeConsumerQuery => 8,
            Self::BeforeSend => 16,
            Self::AfterSend => 32,
            Self::BeforePublish => 64,
            Self::AfterPublishAck => 128,
        }
    }
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BeforeCommit => "before commit",
            Self::AfterCommit => "after commit, before notify",
            Self::BeforeCursorSave => "after a consumer's handler, before its cursor is saved",
            Self::BeforeConsumerQuery => {
                "before one of a consumer's own statements (lease, cursor, events, dead letter or reset)"
            }
            Self::BeforeSend => "before an outbox message is sent",
            Self::AfterSend => "after an outbox message was sent, before it is marked sent",
            Self::BeforePublish => "instead of one publish in a relay's pipeline",
            Self::AfterPublishAck => "after JetStream acknowledged a relay's publish, before its cursor is saved",
        })
    }
}

/// Injects faults at durability boundaries with a probability, from a seed,
/// so a failing run can be replayed. Off unless given to a store with
/// [`Store::with_fate`](crate::Store::with_fate); a store without one pays a
/// single `Option` check per write.
///
/// Faults apply to the store's own transactions, to the consumers of
/// the store ([`FaultPoint::BeforeCursorSave`], [`FaultPoint::BeforeConsumerQuery`]),
/// to an effects runner's transactions and to an outbox dispatcher's sends
/// ([`FaultPoint::BeforeSend`], [`FaultPoint::AfterSend`]), each given its own.
/// Writes inside a caller's transaction (`*_in` methods) are committed by
/// the caller, so no fault is injected there.
///
/// ```
/// use statefold::{Fate, FaultPoint};
/// let fate = Fate::new(0.1, 42).at(&[FaultPoint::AfterCommit]);
/// assert_eq!(fate.probability(), 0.1);
/// assert_eq!(fate.injected(), 0);
/// ```
#[derive(Debug)]
pub struct Fate {
    probability: f64,
    seed: u64,
    points: u8,
    rng: Mutex<StdRng>,
    injected: AtomicU64,
}

impl Fate {
    /// Faults at every [`FaultPoint`], the consumers' included (limit them
    /// with [`at`](Self::at)), each time with `probability` (clamped to
    /// 0..=1), drawn from a generator seeded with `seed`.
    pub fn new(probability: f64, seed: u64) -> Self {
        Self {
            probability: probability.clamp(0.0, 1.0),
            seed,
            points: FaultPoint::ALL.iter().fold(0, |bits, p| bits | p.bit()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            injected: AtomicU64::new(0),
        }
    }

    /// Limits faults to these points.
    #[must_use]
    pub fn at(mut self, points: &[FaultPoint]) -> Self {
        self.points = points.iter().fold(0, |bits, p| bits | p.bit());
        self
    }

    /// The probability of a fault at each point reached.
    pub fn probability(&self) -> f64 {
        self.probability
    }

    /// The seed the generator started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Draws at `point`: an error when fate strikes.
    pub(crate) fn strike(&self, point: FaultPoint) -> Result<(), Error> {
        if self.points & point.bit() == 0 {
            return Ok(());
        }
        // A poisoned lock only means another thread panicked mid-draw; the
        // generator's state is still valid.
        let roll: f64 = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).gen();
        if roll < self.probability {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::InjectedFault { point });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(fate: &Fate, n: usize) -> Vec<bool> {
        (0..n).map(|_| fate.strike(FaultPoint::BeforeCommit).is_err()).collect()
    }

    #[test]
    fn the_same_seed_replays_the_same_faults() {
        let (a, b) = (Fate::new(0.5, 99), Fate::new(0.5, 99));
        let faults = draws(&a, 64);
        assert_eq!(faults, draws(&b, 64));
        assert!(faults.contains(&true) && faults.contains(&false));
        assert_eq!(a.injected(), faults.iter().filter(|f| **f).count() as u64);
    }

    #[test]
    fn probability_bounds_and_points_are_respected() {
        assert!(draws(&Fate::new(0.0, 1), 32).iter().all(|f| !f));
        assert!(draws(&Fate::new(7.0, 1), 32).iter().all(|f| *f));
        let only_after = Fate::new(1.0, 1).at(&[FaultPoint::AfterCommit]);
        assert!(draws(&only_after, 8).iter().all(|f| !f));
        assert!(matches!(
            only_after.strike(FaultPoint::AfterCommit),
            Err(Error::InjectedFault { point: FaultPoint::AfterCommit })
        ));
    }

    #[test]
    fn every_point_has_a_bit_of_its_own() {
        let bits = FaultPoint::ALL.iter().fold(0, |bits, p| bits | p.bit());
        assert_eq!(bits.count_ones() as usize, FaultPoint::ALL.len());
        let only = Fate::new(1.0, 1).at(&[FaultPoint::BeforeConsumerQuery]);
        assert!(FaultPoint::ALL.iter().all(|&p| only.strike(p).is_err() == (p == FaultPoint::BeforeConsumerQuery)));
    }
}
