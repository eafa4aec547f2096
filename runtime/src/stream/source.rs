//! Events that live elsewhere: another service's log, read through a
//! remote stream, handled by a [`Consumer`](super::Consumer) into its own database.

use super::position::Position;
use super::StreamOptions;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::Machine;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::time::Duration;

/// A machine's event log read from elsewhere than the consumer's own
/// database (another service's, over gRPC): what
/// [`Consumer::with_source`](super::Consumer::with_source) reads instead of
/// its store's events table. The consumer's cursor, lease and dead letters
/// stay in its own database, and the handler's transaction is one of its
/// own database: the remote log is handled exactly once into it.
///
/// A source hands each run of a consumer a [`Feed`]; implement both to
/// plug in another transport.
pub trait Source<M: Machine>: Send + Sync + 'static {
    /// A feed for one run of the consumer `consumer` (its cursor's key, for
    /// logs), reading as `options` say where they apply (the batch size).
    /// Opens nothing yet: the first [`Feed::fetch`] does.
    fn feed(&self, consumer: &str, options: &StreamOptions) -> Box<dyn Feed<M>>;
}

/// One run's reader of a [`Source`]: the calls a consumer makes on a log.
/// No business logic here: a feed hands out events in log order from its
/// cursor, and never skips one.
pub trait Feed<M: Machine>: Send {
    /// Goes on after `after` (a cursor read back from the consumer's database).
    fn seek(&mut self, after: Position);

    /// The last position handed out (or sought).
    fn cursor(&self) -> Position;

    /// The next events after the cursor, at most a batch, without waiting:
    /// empty when none is at hand. Moves the cursor past them.
    ///
    /// # Errors
    /// [`Error::Remote`] when the source is unreachable or refuses (retried
    /// by the consumer with backoff when `retryable`, else the run ends
    /// with it); [`Error::Decode`] for an
    /// event that does not decode, naming its position.
    fn fetch(&mut self) -> BoxFuture<'_, Result<Vec<Envelope<M>>, Error>>;

    /// Waits until events may be at hand, at most `max`.
    fn wait(&mut self, max: Duration) -> BoxFuture<'_, ()>;

    /// The last committed event's position and time (`None` for an empty log).
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    #[allow(clippy::type_complexity)] // Spelled out for implementers, as `Reader::end` has it.
    fn end(&mut self) -> BoxFuture<'_, Result<Option<(Position, DateTime<Utc>)>, Error>>;

    /// The time of the first committed event after `after`.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    fn first_after(&mut self, after: Position) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, Error>>;

    /// How many events follow `after`, up to the present end of the log.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    fn count_after(&mut self, after: Position) -> BoxFuture<'_, Result<u64, Error>>;
}
