//! The consumer: a handler over a stream, with a durable cursor saved in
//! the handler's own transaction.
//!
//! [`Consumer`] is the builder and the public calls; the rest is in parts:
//! [`handler`] (what users implement), [`run`] (the protocol as a state
//! machine, without I/O), [`driver`] (its I/O), [`lease`], [`cursor`],
//! [`dead_letter`], [`backoff`] and [`progress`].

mod backoff;
pub(crate) mod cursor;
mod dead_letter;
pub(crate) mod driver;
mod handler;
mod input;
pub(crate) mod lease;
mod progress;
mod run;

pub use backoff::Backoff;
pub use handler::{Handler, HandlerError, Projection};

use super::position::Position;
use super::{Source, StreamOptions};
use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::Machine;
use crate::store::{Store, Tx};
use cursor::Cursor;
use driver::Driver;
use futures::FutureExt;
use run::Mode;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// A named consumer of a machine's events: a durable, forward-only cursor
/// in `statefold_cursors`, a [`Handler`] run in the cursor's transaction,
/// retries with [`Backoff`], optional filters and shards, and a lease in
/// `statefold_leases` so that one run per name and shard works at a time,
/// in one process or across many (the others wait and take over when it
/// stops or its lease expires). The shared tables must exist
/// ([`Store::create_support_tables`] or a migration).
///
/// ```
/// # use statefold::{Envelope, Handler, HandlerError, Machine, Sqlite, Tx};
/// # #[derive(Debug, Clone, Machine)]
/// # #[machine(table = "doors")]
/// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
/// use statefold::{Consumer, Status, Store};
///
/// struct Log(Vec<String>);
///
/// impl Handler<Door, Sqlite> for Log {
///     async fn handle(&mut self, _tx: &mut Tx<'static, Sqlite>, event: &Envelope<Door>) -> Result<(), HandlerError> {
///         self.0.push(format!("{} {}", event.record_id, event.to.name()));
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefold::Error> {
/// let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
/// store.create_tables().await?;
/// store.create_support_tables().await?;
/// store.insert(DoorClosed { who: "ada".into() }).await?;
///
/// let consumer = Consumer::new(&store, "log");
/// let mut log = Log(Vec::new());
/// // Handles the log up to its present end, then returns.
/// consumer.catch_up(&mut log).await?;
/// assert_eq!(log.0, ["1 Closed"]);
/// assert_eq!(consumer.position().await?.id(), 1);
/// # Ok(())
/// # }
/// ```
pub struct Consumer<M: Machine, B: Backend> {
    store: Store<M, B>,
    name: String,
    options: StreamOptions,
    kinds: Option<Vec<M::Status>>,
    shard: (u32, u32),
    backoff: Backoff,
    dead_letter_after: Option<u32>,
    lease_ttl: Duration,
    /// Where events come from when not from the store's own log.
    source: Option<Arc<dyn Source<M>>>,
}

impl<M: Machine, B: Backend> fmt::Debug for Consumer<M, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("name", &self.key()).field("machine", &M::DEF.name).finish_non_exhaustive()
    }
}

impl<M: Machine, B: Backend> Consumer<M, B> {
    /// A consumer named `name` (its cursor's key, with the shard) of the
    /// store's machine, with default settings: every event, no shards,
    /// [`Backoff::default`], retries forever, a 30 s lease.
    pub fn new(store: &Store<M, B>, name: impl Into<String>) -> Self {
        Self {
            store: store.clone(),
            name: name.into(),
            options: StreamOptions::default(),
            kinds: None,
            shard: (0, 1),
            backoff: Backoff::default(),
            dead_letter_after: None,
            lease_ttl: Duration::from_secs(30),
            source: None,
        }
    }

    /// A consumer named `name` of a log that lives elsewhere (another
    /// service's, read through `source`, such as the gRPC client's
    /// `Client::source` of feature `grpc`), handled into
    /// `local`'s database: the cursor, lease and dead letters are kept
    /// there, and the handler's transaction is one of it, so the remote log
    /// is handled exactly once into the local database. `local` needs the
    /// shared tables ([`Store::create_support_tables`]), not the machine's
    /// own. Settings as [`new`](Self::new).
    ///
    /// ```
    /// # use statefold::{Envelope, Error, Feed, Handler, HandlerError, Machine, Position, Sqlite, Source, StreamOptions, Tx};
    /// # use futures::future::BoxFuture;
    /// # use std::time::Duration;
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] Closed }
    /// # struct Nothing(Position);
    /// # impl Feed<Door> for Nothing {
    /// #     fn seek(&mut self, after: Position) { self.0 = after; }
    /// #     fn cursor(&self) -> Position { self.0 }
    /// #     fn fetch(&mut self) -> BoxFuture<'_, Result<Vec<Envelope<Door>>, Error>> { Box::pin(async { Ok(Vec::new()) }) }
    /// #     fn wait(&mut self, _: Duration) -> BoxFuture<'_, ()> { Box::pin(async {}) }
    /// #     fn end(&mut self) -> BoxFuture<'_, Result<Option<(Position, chrono::DateTime<chrono::Utc>)>, Error>> { Box::pin(async { Ok(None) }) }
    /// #     fn first_after(&mut self, _: Position) -> BoxFuture<'_, Result<Option<chrono::DateTime<chrono::Utc>>, Error>> { Box::pin(async { Ok(None) }) }
    /// #     fn count_after(&mut self, _: Position) -> BoxFuture<'_, Result<u64, Error>> { Box::pin(async { Ok(0) }) }
    /// # }
    /// # struct Empty;
    /// # impl Source<Door> for Empty {
    /// #     fn feed(&self, _: &str, _: &StreamOptions) -> Box<dyn Feed<Door>> { Box::new(Nothing(Position::START)) }
    /// # }
    /// # struct Count(u32);
    /// # impl Handler<Door, Sqlite> for Count {
    /// #     async fn handle(&mut self, _: &mut Tx<'static, Sqlite>, _: &Envelope<Door>) -> Result<(), HandlerError> { self.0 += 1; Ok(()) }
    /// # }
    /// use statefold::{Consumer, Store};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// // The consumer's own database: the shared tables only.
    /// let local = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// local.create_support_tables().await?;
    /// let consumer = Consumer::with_source(&local, "doors-elsewhere", Empty);
    /// assert_eq!(consumer.catch_up(&mut Count(0)).await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_source(local: &Store<M, B>, name: impl Into<String>, source: impl Source<M>) -> Self {
        Self { source: Some(Arc::new(source)), ..Self::new(local, name) }
    }

    /// How the consumer reads its stream.
    #[must_use]
    pub fn stream_options(mut self, options: StreamOptions) -> Self {
        self.options = options;
        self
    }

    /// Handles only events of these kinds (the states they enter); the
    /// cursor still moves past the others.
    #[must_use]
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = M::Status>) -> Self {
        self.kinds = Some(kinds.into_iter().collect());
        self
    }

    /// Handles only the records of shard `index` of `count` (by a stable
    /// hash of the record id), with a cursor and a lease of its own: run
    /// one consumer per index, together they handle every event once.
    ///
    /// # Panics
    /// When `index >= count`.
    #[must_use]
    pub fn shard(mut self, index: u32, count: u32) -> Self {
        assert!(
            index < count,
            "shard {index} of {count} does not exist: shards are numbered 0 to {}",
            count.max(1) - 1
        );
        self.shard = (index, count);
        self
    }

    /// Waits between attempts at a failing event.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// After `attempts` failures of the handler on one event, records the
    /// event and the last error in `statefold_dead_letters` and moves on
    /// (in one transaction with the cursor). Without this, a failing event
    /// is retried until it succeeds.
    #[must_use]
    pub fn dead_letter_after(mut self, attempts: u32) -> Self {
        self.dead_letter_after = Some(attempts.max(1));
        self
    }

    /// How long the lease lasts unless renewed (it is renewed every third
    /// of it while running): after a crash, another instance takes over
    /// after at most this long.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The cursor's key: the name, and the shard when there are several.
    pub fn key(&self) -> String {
        match self.shard {
            (_, 1) => self.name.clone(),
            (index, count) => format!("{}#{index}/{count}", self.name),
        }
    }

    /// The saved position: every event up to it has been handled.
    ///
    /// # Errors
    /// [`Error::Database`], or [`Error::MissingTable`] without the shared tables.
    pub async fn position(&self) -> Result<Position, Error> {
        Cursor::new(self.store.clone(), &self.key()).load().await
    }

    /// Runs until `shutdown` completes: takes the lease (waiting while
    /// another run holds it, in this process or another), then handles the
    /// events after the saved cursor and the ones that follow, as they are
    /// committed. On shutdown it finishes the event in hand, and gives the
    /// lease up. Each call is a run of its own, with a lease of its own: two
    /// runs of one consumer, or a run and a rebuild, never work at once.
    ///
    /// # Errors
    /// Only what retrying cannot fix ends the run:
    /// - an event that cannot be decoded: [`Error::Decode`] (or
    ///   [`Error::CorruptRow`]), naming its position; the cursor stays before it;
    /// - [`Error::MissingTable`] without the shared tables;
    /// - a value the database cannot store ([`Error::Unrepresentable`]), a
    ///   pool the application closed, or a driver error that says the
    ///   database and the declaration disagree (an undecodable column).
    ///
    /// Everything else is retried, never returned. A failing handler is
    /// retried with [`Backoff`] (or dead-lettered, if asked). A database
    /// error anywhere (a restart, a dropped or killed connection, a lock or
    /// pool timeout, what the database refuses, a fault injected at
    /// [`FaultPoint::BeforeConsumerQuery`](crate::FaultPoint::BeforeConsumerQuery)) is
    /// logged with `tracing`, counted in
    /// [`statefold_consumer_errors_total`](crate::stream::metrics::ERRORS)
    /// and retried with the same backoff, for as long as it takes (the
    /// backoff starts over after a success). Before the next event the
    /// consumer asks for its lease and reads its cursor again, since another
    /// instance may have taken over meanwhile. Failing to give the lease up
    /// on shutdown is only logged: it expires after its ttl.
    pub async fn run<H: Handler<M, B>>(
        &self,
        handler: &mut H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        Driver::new(self, Plain(handler), Mode::Run).drive(pin!(shutdown.fuse())).await.map(drop)
    }

    /// Handles the events after the saved cursor up to the log's end as it
    /// is when called (events committed meanwhile may be handled too), then
    /// returns how many it handled: for tests, command-line tools and batch
    /// jobs. Takes the lease like [`run`](Self::run), waiting while another
    /// run holds it.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    ///
    /// ```
    /// # use statefold::{Envelope, Handler, HandlerError, Machine, Sqlite, Tx};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # struct Count(u32);
    /// # impl Handler<Door, Sqlite> for Count {
    /// #     async fn handle(&mut self, _: &mut Tx<'static, Sqlite>, _: &Envelope<Door>) -> Result<(), HandlerError> {
    /// #         self.0 += 1;
    /// #         Ok(())
    /// #     }
    /// # }
    /// use statefold::{Consumer, Store};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// # store.create_support_tables().await?;
    /// let consumer = Consumer::new(&store, "counter");
    /// let mut count = Count(0);
    /// store.insert(DoorClosed { who: "ada".into() }).await?;
    /// assert_eq!(consumer.catch_up(&mut count).await?, 1);
    /// store.insert(DoorClosed { who: "bob".into() }).await?;
    /// assert_eq!(consumer.catch_up(&mut count).await?, 1);
    /// assert_eq!(count.0, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn catch_up<H: Handler<M, B>>(&self, handler: &mut H) -> Result<u64, Error> {
        Driver::new(self, Plain(handler), Mode::CatchUp).drive(pin!(std::future::pending::<()>().fuse())).await
    }

    /// Rebuilds the handler's projection: in one transaction, the handler's
    /// [`reset`](Projection::reset) and the cursor back at the start; then
    /// replays every event up to the log's end as it was then, and returns
    /// how many it handled. Only a [`Projection`] can be rebuilt. Shows a
    /// progress bar on a terminal (feature `progress`). Holds the lease
    /// throughout, like [`run`](Self::run), so a run of the same consumer
    /// waits for the rebuild to finish, and the rebuild for the run to stop.
    ///
    /// # Errors
    /// As [`run`](Self::run); [`Error::Handler`] when the reset fails.
    pub async fn rebuild<H: Projection<M, B>>(
        &self,
        handler: &mut H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<u64, Error> {
        Driver::new(self, Rebuilt(handler), Mode::Rebuild).drive(pin!(shutdown.fuse())).await
    }

    /// Whether the consumer handles this event (kind and shard).
    fn selects(&self, envelope: &Envelope<M>) -> bool {
        let kind = self.kinds.as_ref().is_none_or(|kinds| kinds.contains(&envelope.to));
        kind && (self.shard.1 == 1 || shard_of(&envelope.record_id.to_string(), self.shard.1) == self.shard.0)
    }
}

/// What the driver runs: a handler, and for a rebuild its reset.
trait Driven<M: Machine, B: Backend>: Send {
    fn handle(
        &mut self,
        tx: &mut Tx<'static, B>,
        event: &Envelope<M>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    fn reset(&mut self, tx: &mut Tx<'static, B>) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A handler run or caught up: never reset.
struct Plain<'h, H>(&'h mut H);

impl<M: Machine, B: Backend, H: Handler<M, B>> Driven<M, B> for Plain<'_, H> {
    fn handle(
        &mut self,
        tx: &mut Tx<'static, B>,
        event: &Envelope<M>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.0.handle(tx, event)
    }

    /// Only rebuilds reset, and they take a [`Rebuilt`].
    fn reset(&mut self, _: &mut Tx<'static, B>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        std::future::ready(Err("only a projection can be reset".into()))
    }
}

/// A projection being rebuilt.
struct Rebuilt<'h, H>(&'h mut H);

impl<M: Machine, B: Backend, H: Projection<M, B>> Driven<M, B> for Rebuilt<'_, H> {
    fn handle(
        &mut self,
        tx: &mut Tx<'static, B>,
        event: &Envelope<M>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.0.handle(tx, event)
    }

    fn reset(&mut self, tx: &mut Tx<'static, B>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.0.reset(tx)
    }
}

/// The shard of a record: FNV-1a of its id's text, stable across processes and versions.
pub(crate) fn shard_of(record_id: &str, count: u32) -> u32 {
    let hash = record_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    u32::try_from(hash % u64::from(count)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("42", 4), shard_of("42", 4));
        let mut counts = [0; 4];
        for id in 0..4_000 {
            counts[shard_of(&id.to_string(), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
    }
}
