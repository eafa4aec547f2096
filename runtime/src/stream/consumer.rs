//! The consumer runner: a handler over a stream, with a durable cursor.

use super::cursor::{DeadLetter, Rows};
use super::metrics::ConsumerMetrics;
use super::position::{Envelope, Position, Start};
use super::reader::Reader;
use super::StreamOptions;
use crate::backend::Backend;
use crate::error::Error;
use crate::fate::FaultPoint;
use crate::machine::{Machine, Status};
use crate::store::{Store, Tx};
use futures::future::FusedFuture;
use futures::FutureExt;
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What a handler returns when it fails: any error.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Handles a consumer's events, one at a time, in order.
///
/// Each event comes with a transaction of the store's database. The
/// consumer saves its cursor in that same transaction and commits it after
/// `handle` returns `Ok`: what the handler writes through `tx` (an SQL
/// projection) happens exactly once per event, however often the process
/// dies or retries. Effects outside the database (an e-mail, an HTTP call)
/// happen at least once: make them idempotent.
///
/// Returning `Err` rolls the transaction back; the consumer retries the
/// same event with backoff and never skips it, unless it has a dead-letter
/// policy ([`Consumer::dead_letter_after`]).
///
/// ```
/// use statefold::{Envelope, Handler, HandlerError, Machine, Sqlite, Tx};
///
/// #[derive(Debug, Clone, Machine)]
/// #[machine(table = "doors")]
/// enum Door {
///     #[initial]
///     #[from(Open)]
///     Closed { who: String },
///     #[from(Closed)]
///     Open { who: String },
/// }
///
/// /// Counts openings per person, in a table of its own.
/// struct Openings;
///
/// impl Handler<Door, Sqlite> for Openings {
///     async fn handle(&mut self, tx: &mut Tx<'static, Sqlite>, event: &Envelope<Door>) -> Result<(), HandlerError> {
///         if let Door::Open { who } = &event.event {
///             sqlx::query("INSERT INTO openings (who, n) VALUES (?, 1) ON CONFLICT (who) DO UPDATE SET n = n + 1")
///                 .bind(who)
///                 .execute(&mut **tx)
///                 .await?;
///         }
///         Ok(())
///     }
///
///     async fn reset(&mut self, tx: &mut Tx<'static, Sqlite>) -> Result<(), HandlerError> {
///         sqlx::query("DELETE FROM openings").execute(&mut **tx).await?;
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<M: Machine, B: Backend>: Send {
    /// Handles one event inside `tx`, the transaction that also saves the
    /// consumer's cursor past it. Do not commit `tx`.
    fn handle(
        &mut self,
        tx: &mut Tx<'static, B>,
        event: &Envelope<M>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Clears what the handler built, before a [rebuild](Consumer::rebuild)
    /// replays every event; runs in the transaction that puts the cursor
    /// back at the start. Does nothing unless implemented.
    fn reset(&mut self, tx: &mut Tx<'static, B>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = tx;
        async { Ok(()) }
    }
}

/// Exponential backoff between attempts at an event.
///
/// ```
/// use statefold::Backoff;
/// use std::time::Duration;
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(backoff.delay(1), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3), Duration::from_millis(400));
/// assert_eq!(backoff.delay(30), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Waits `initial` after the first failure, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, factor: 2.0 }
    }

    /// Multiplies the wait by `factor` (at least 1) after each failure.
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor.max(1.0);
        self
    }

    /// The wait after the `failures`th failure in a row (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let scaled = self.initial.as_secs_f64() * self.factor.powi(exponent);
        if scaled.is_finite() && scaled < self.max.as_secs_f64() {
            Duration::from_secs_f64(scaled)
        } else {
            self.max
        }
    }
}

/// A named consumer of a machine's events: a durable, forward-only cursor
/// in `statefold_cursors`, a [`Handler`] run in the cursor's transaction,
/// retries with [`Backoff`], optional filters and shards, and a lease in
/// `statefold_leases` so that one instance per name and shard runs at a
/// time across processes (the others wait and take over when it stops or
/// its lease expires). The shared tables must exist
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
/// // Replays the log up to its present end, then returns.
/// consumer.rebuild(&mut log, std::future::pending()).await?;
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
    owner: String,
}

impl<M: Machine, B: Backend> fmt::Debug for Consumer<M, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.key())
            .field("machine", &M::DEF.name)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// How an event's handling ended.
enum Handled {
    /// Handled (or dead-lettered), and the cursor saved past it.
    Done,
    /// Another instance holds the lease.
    Lost,
    /// The cursor is already past the event: another instance handled it,
    /// or an earlier attempt committed although its answer was lost.
    Behind,
    /// Shutdown was asked for between attempts.
    Stopped,
}

/// Why one attempt failed.
enum Failed {
    /// The handler said so: counts towards the dead-letter policy.
    Handler(HandlerError),
    /// The database or an injected fault: retried, never dead-lettered.
    Other(Error),
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
            owner: uuid::Uuid::new_v4().to_string(),
        }
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
        self.rows().load().await
    }

    /// Runs until `shutdown` completes: takes the lease (waiting while
    /// another instance holds it), then handles the events after the saved
    /// cursor and the ones that follow, as they are committed. On shutdown
    /// it finishes the event in hand, and gives the lease up.
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
        self.drive(handler, pin!(shutdown.fuse()), false).await.map(drop)
    }

    /// Rebuilds the handler's projection: in one transaction, the handler's
    /// [`reset`](Handler::reset) and the cursor back at the start; then
    /// replays every event up to the log's end as it was then, and returns
    /// how many it handled. Shows a progress bar on a terminal (feature
    /// `progress`). Holds the lease throughout, like [`run`](Self::run).
    ///
    /// # Errors
    /// As [`run`](Self::run); [`Error::Handler`] when the reset fails.
    pub async fn rebuild<H: Handler<M, B>>(
        &self,
        handler: &mut H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<u64, Error> {
        self.drive(handler, pin!(shutdown.fuse()), true).await
    }

    fn rows(&self) -> Rows<M, B> {
        Rows::new(self.store.clone(), &self.key(), &self.owner)
    }

    /// Whether the consumer handles this event (kind and shard).
    fn selects(&self, envelope: &Envelope<M>) -> bool {
        let kind = self.kinds.as_ref().is_none_or(|kinds| kinds.contains(&envelope.to));
        kind && (self.shard.1 == 1 || shard_of(&envelope.record_id.to_string(), self.shard.1) == self.shard.0)
    }

    async fn drive<H: Handler<M, B>>(
        &self,
        handler: &mut H,
        mut shutdown: Pin<&mut futures::future::Fuse<impl Future<Output = ()> + Send>>,
        rebuild: bool,
    ) -> Result<u64, Error> {
        let key = self.key();
        let rows = self.rows();
        let metrics = ConsumerMetrics::new(M::DEF.events_table, &key);
        let mut reader = None;
        let mut run = Run::new(rebuild);
        // Failed steps in a row: the backoff grows with them.
        let mut failures = 0_u32;
        let result = loop {
            if stopping(&mut shutdown) {
                break Ok(());
            }
            match self.step(handler, &rows, &mut reader, &metrics, &mut run, shutdown.as_mut()).await {
                Ok(Step::Again) => failures = 0,
                Ok(Step::Done) => break Ok(()),
                Err(error) if ends_run(&error) => break Err(error),
                // Shutdown seen inside the failed step: no backoff before stopping.
                Err(_) if stopping(&mut shutdown) => break Ok(()),
                Err(error) => {
                    failures = failures.saturating_add(1);
                    metrics.errors.increment(1);
                    tracing::warn!(consumer = %key, %error, failures, "database error; retrying");
                    run.interrupted();
                    tokio::select! {
                        () = &mut shutdown => break Ok(()),
                        () = tokio::time::sleep(self.backoff.delay(failures)) => {}
                    }
                }
            }
        };
        run.progress.finish();
        if run.leased_at.is_some() {
            if let Err(error) = self.release(&rows).await {
                // Not worth failing a clean stop for: another instance takes over when it expires.
                tracing::warn!(consumer = %key, %error, "lease not given up; it will expire");
            }
        }
        result.map(|()| run.handled)
    }

    /// One round: the lease, the cursor if the lease is new or an error
    /// came between, a batch of events, then the lag.
    async fn step<H: Handler<M, B>>(
        &self,
        handler: &mut H,
        rows: &Rows<M, B>,
        reader: &mut Option<Reader<M, B>>,
        metrics: &ConsumerMetrics,
        run: &mut Run,
        mut shutdown: Pin<&mut futures::future::Fuse<impl Future<Output = ()> + Send>>,
    ) -> Result<Step, Error> {
        let reader = match reader {
            Some(reader) => reader,
            empty @ None => {
                empty.insert(Reader::open(self.store.clone(), self.options.clone(), Start::Beginning).await?)
            }
        };
        if !self.keep_lease(rows, run).await? {
            tokio::select! {
                () = &mut shutdown => return Ok(Step::Done),
                () = tokio::time::sleep(self.lease_ttl / 3) => return Ok(Step::Again),
            }
        }
        if run.fresh() {
            if run.rebuild && run.until.is_none() {
                self.reset(rows, handler, reader, run).await?;
            } else {
                self.tempt()?;
                reader.seek(rows.load().await?);
            }
            run.mark_loaded();
        }
        if run.until.is_some_and(|until| reader.cursor() >= until) {
            return Ok(Step::Done);
        }
        self.tempt()?;
        let batch = reader.fetch().await?;
        let Some(last) = batch.last().map(|e| (e.position, e.created_at)) else {
            metrics.lag_events.set(0.0);
            metrics.lag_seconds.set(0.0);
            tokio::select! {
                () = &mut shutdown => return Ok(Step::Done),
                () = reader.wait(self.lease_ttl / 3) => return Ok(Step::Again),
            }
        };
        let mut unsaved = None;
        for envelope in batch {
            if run.until.is_some_and(|until| envelope.position > until) {
                break;
            }
            if !self.selects(&envelope) {
                unsaved = Some(envelope.position);
                continue;
            }
            match self.handle(rows, handler, &envelope, metrics, run, shutdown.as_mut()).await? {
                Handled::Done => {
                    unsaved = None;
                    run.progress.inc();
                }
                Handled::Lost => {
                    run.lost(&self.key());
                    unsaved = None;
                    break;
                }
                Handled::Behind => {
                    tracing::debug!(consumer = %self.key(), position = %envelope.position, "cursor already past; reading it again");
                    run.interrupted();
                    unsaved = None;
                    break;
                }
                Handled::Stopped => break,
            }
            if stopping(&mut shutdown) || !self.keep_lease(rows, run).await? {
                break;
            }
        }
        if let (Some(position), true) = (unsaved, run.leased_at.is_some()) {
            if !self.save(rows, position).await? {
                run.lost(&self.key());
            }
        }
        self.tempt()?;
        let head = reader.end().await?;
        metrics.lag_events.set((head.id() - last.0.id()).max(0) as f64);
        metrics.lag_seconds.set((chrono::Utc::now() - last.1).num_milliseconds().max(0) as f64 / 1000.0);
        Ok(Step::Again)
    }

    /// Takes or renews the lease when due, or when an error left it in
    /// doubt; `false` while another instance holds it.
    async fn keep_lease(&self, rows: &Rows<M, B>, run: &mut Run) -> Result<bool, Error> {
        if !run.recheck && run.leased_at.is_some_and(|at| at.elapsed() < self.lease_ttl / 3) {
            return Ok(true);
        }
        self.tempt()?;
        // The lease runs from before the request, which may have been slow.
        let asked = Instant::now();
        let held = rows.lease(self.lease_ttl).await?;
        run.recheck = false;
        if held {
            if run.leased_at.is_none() {
                tracing::info!(consumer = %self.key(), owner = %self.owner, "lease taken");
                run.loaded = false;
            }
            run.leased_at = Some(asked);
            Ok(true)
        } else {
            if run.leased_at.is_some() {
                run.lost(&self.key());
            }
            Ok(false)
        }
    }

    /// Gives the lease up, if this instance still holds it.
    async fn release(&self, rows: &Rows<M, B>) -> Result<(), Error> {
        self.tempt()?;
        rows.release().await
    }

    /// The start of a rebuild: the handler's reset and the cursor's, in one
    /// transaction; then the target is the log's present end.
    async fn reset<H: Handler<M, B>>(
        &self,
        rows: &Rows<M, B>,
        handler: &mut H,
        reader: &mut Reader<M, B>,
        run: &mut Run,
    ) -> Result<(), Error> {
        self.tempt()?;
        rows.load().await?;
        let mut tx = self.store.begin().await?;
        if let Err(error) = handler.reset(&mut tx).await {
            // The reset's error is the one to report.
            let _ = tx.rollback().await;
            return Err(Error::Handler { consumer: self.key(), message: error.to_string() });
        }
        rows.reset(&mut tx).await?;
        tx.commit().await.map_err(|e| self.store.failure(e, None))?;
        reader.seek(Position::START);
        self.tempt()?;
        let until = reader.end().await?;
        self.tempt()?;
        let total = reader.count_after(Position::START).await?;
        // Only now is the reset done: an error before this resets again,
        // which is harmless as nothing was handled since.
        run.until = Some(until);
        run.progress = Progress::new(total);
        Ok(())
    }

    /// Handles one event until it succeeds, is dead-lettered, or the
    /// consumer loses its lease or is asked to stop.
    async fn handle<H: Handler<M, B>>(
        &self,
        rows: &Rows<M, B>,
        handler: &mut H,
        envelope: &Envelope<M>,
        metrics: &ConsumerMetrics,
        run: &mut Run,
        mut shutdown: Pin<&mut futures::future::Fuse<impl Future<Output = ()> + Send>>,
    ) -> Result<Handled, Error> {
        let (mut failures, mut handler_failures) = (0_u32, 0_u32);
        loop {
            let span = tracing::info_span!(
                "statefold.handle",
                consumer = %self.key(),
                position = %envelope.position,
                record_id = %envelope.record_id,
                kind = envelope.to.name(),
                attempt = failures + 1,
            );
            match self.attempt(rows, handler, envelope).instrument(span.clone()).await {
                Ok(true) => {
                    metrics.events.increment(1);
                    run.handled += 1;
                    return Ok(Handled::Done);
                }
                Ok(false) => return Ok(Handled::Behind),
                Err(Failed::Other(error)) if ends_run(&error) => return Err(error),
                Err(Failed::Other(error)) => {
                    metrics.errors.increment(1);
                    tracing::warn!(parent: &span, %error, "handling failed; retrying");
                    // The database may have been away longer than the lease.
                    run.recheck = true;
                }
                Err(Failed::Handler(error)) => {
                    metrics.errors.increment(1);
                    handler_failures += 1;
                    if self.dead_letter_after.is_some_and(|n| handler_failures >= n) {
                        tracing::error!(parent: &span, %error, attempts = handler_failures, "handler gave up; dead letter");
                        let buried = self.bury(rows, envelope, &error, handler_failures).await?;
                        metrics.dead_letters.increment(u64::from(buried));
                        return Ok(if buried { Handled::Done } else { Handled::Behind });
                    }
                    tracing::warn!(parent: &span, %error, attempts = handler_failures, "handler failed; retrying");
                }
            }
            failures += 1;
            tokio::select! {
                () = &mut shutdown => return Ok(Handled::Stopped),
                () = tokio::time::sleep(self.backoff.delay(failures)) => {}
            }
            if !self.keep_lease(rows, run).await? {
                return Ok(Handled::Lost);
            }
        }
    }

    /// One attempt: the handler and the cursor in one transaction.
    /// `Ok(false)`: the cursor was already past the event (another instance).
    async fn attempt<H: Handler<M, B>>(
        &self,
        rows: &Rows<M, B>,
        handler: &mut H,
        envelope: &Envelope<M>,
    ) -> Result<bool, Failed> {
        let mut tx = self.store.begin().await.map_err(Failed::Other)?;
        if let Err(error) = handler.handle(&mut tx, envelope).await {
            let _ = tx.rollback().await;
            return Err(Failed::Handler(error));
        }
        if let Some(fault) = self.store.strike(FaultPoint::BeforeCursorSave) {
            let _ = tx.rollback().await;
            return Err(Failed::Other(fault));
        }
        if !rows.advance(&mut tx, envelope.position).await.map_err(Failed::Other)? {
            let _ = tx.rollback().await;
            return Ok(false);
        }
        tx.commit().await.map_err(|e| Failed::Other(self.store.failure(e, None)))?;
        Ok(true)
    }

    /// Records a dead letter and moves the cursor past it, in one transaction.
    async fn bury(
        &self,
        rows: &Rows<M, B>,
        envelope: &Envelope<M>,
        error: &HandlerError,
        attempts: u32,
    ) -> Result<bool, Error> {
        self.tempt()?;
        let payload = envelope.event.encode().map_or(serde_json::Value::Null, |encoded| encoded.payload);
        let metadata = serde_json::to_value(&envelope.metadata).unwrap_or(serde_json::Value::Null);
        let letter = DeadLetter {
            position: envelope.position,
            record_id: envelope.record_id.to_string(),
            kind: envelope.to.db_name(),
            payload,
            metadata,
            error: error.to_string(),
            attempts,
        };
        let mut tx = self.store.begin().await?;
        rows.dead_letter(&mut tx, letter).await?;
        if !rows.advance(&mut tx, envelope.position).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await.map_err(|e| self.store.failure(e, None))?;
        Ok(true)
    }

    /// Moves the cursor past events this consumer does not handle.
    async fn save(&self, rows: &Rows<M, B>, position: Position) -> Result<bool, Error> {
        self.tempt()?;
        let mut tx = self.store.begin().await?;
        if rows.advance(&mut tx, position).await? {
            tx.commit().await.map_err(|e| self.store.failure(e, None))?;
            Ok(true)
        } else {
            tx.rollback().await?;
            Ok(false)
        }
    }

    /// A fault injected on purpose before a trip to the database, as when
    /// it restarts or a connection drops ([`FaultPoint::BeforeConsumerQuery`]).
    fn tempt(&self) -> Result<(), Error> {
        self.store.strike(FaultPoint::BeforeConsumerQuery).map_or(Ok(()), Err)
    }
}

/// Whether an error ends a consumer's run, rather than being retried.
///
/// Retrying helps when the database is away or busy for a while: a restart,
/// a dropped or killed connection, no connection free in time, a deadlock,
/// an injected fault; what the database refuses is retried too, as a
/// migration or a grant may fix it while the consumer waits. Retrying
/// cannot help when the stored data and the declaration disagree (an event
/// or row that no longer decodes, a value that cannot be stored), the
/// shared tables are missing, the handler's reset failed, the application
/// closed the pool, or the error is one no consumer meets (a caller's
/// mistake): the run ends with it, to be fixed.
fn ends_run(error: &Error) -> bool {
    match error {
        // The consumer never takes the head; were it to, waiting more may settle it.
        Error::InjectedFault { .. } | Error::HeadNotSettled { .. } => false,
        Error::Database(error) => !matches!(
            error,
            sqlx::Error::Database(_)
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::BeginFailed
        ),
        Error::MissingTable { .. }
        | Error::Decode { .. }
        | Error::CorruptRow { .. }
        | Error::Encode { .. }
        | Error::Unrepresentable { .. }
        | Error::Handler { .. }
        | Error::InvalidUrl { .. }
        | Error::NotFound { .. }
        | Error::Conflict { .. }
        | Error::InvalidTransition { .. }
        | Error::NotInitial { .. }
        | Error::IdRequired { .. }
        | Error::IdGenerated { .. }
        | Error::Duplicate { .. } => true,
    }
}

/// What the consumer does after a step.
enum Step {
    /// Goes on: the next batch, or another look at the lease.
    Again,
    /// Stops: shutdown was asked for, or a rebuild reached its end.
    Done,
}

/// A consumer's state while it runs.
struct Run {
    /// Whether this run is a rebuild.
    rebuild: bool,
    /// When the lease was last taken or renewed; `None` while not held.
    leased_at: Option<Instant>,
    /// Whether the lease must be asked for again before the next event,
    /// however recently it was renewed.
    recheck: bool,
    /// Whether the reader was put at the saved cursor since the lease was
    /// taken and since the last error.
    loaded: bool,
    handled: u64,
    /// A rebuild's target: the log's end when it started.
    until: Option<Position>,
    progress: Progress,
}

impl Run {
    fn new(rebuild: bool) -> Self {
        Self {
            rebuild,
            leased_at: None,
            recheck: false,
            loaded: false,
            handled: 0,
            until: None,
            progress: Progress::hidden(),
        }
    }

    /// The lease was just taken, or an error came between: the cursor must be read again.
    fn fresh(&self) -> bool {
        !self.loaded
    }

    fn mark_loaded(&mut self) {
        self.loaded = true;
    }

    fn lost(&mut self, consumer: &str) {
        tracing::warn!(consumer, "lease lost to another instance; waiting to take it back");
        self.leased_at = None;
        self.loaded = false;
    }

    /// An error cut the run short: while the database was away, the lease
    /// may have expired and another instance moved the cursor, and the
    /// reader may be past events not handled. Both are read again.
    fn interrupted(&mut self) {
        self.recheck = true;
        self.loaded = false;
    }
}

/// Whether shutdown was asked for. A fused future that has completed stays
/// pending when polled again, so once one check (or a `select!`) has seen
/// it complete, only the fuse still knows.
fn stopping<F: Future<Output = ()>>(shutdown: &mut Pin<&mut futures::future::Fuse<F>>) -> bool {
    shutdown.is_terminated() || shutdown.as_mut().now_or_never().is_some()
}

/// The shard of a record: FNV-1a of its id's text, stable across processes and versions.
fn shard_of(record_id: &str, count: u32) -> u32 {
    let hash = record_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    u32::try_from(hash % u64::from(count)).unwrap_or(0)
}

/// A rebuild's progress bar, drawn only on a terminal.
struct Progress {
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn hidden() -> Self {
        Self {
            #[cfg(feature = "progress")]
            bar: None,
        }
    }

    #[cfg_attr(not(feature = "progress"), allow(clippy::unnecessary_wraps, unused_variables))]
    fn new(total: u64) -> Self {
        #[cfg(feature = "progress")]
        {
            use std::io::IsTerminal;
            if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(total);
                if let Ok(style) =
                    indicatif::ProgressStyle::with_template("rebuild {bar:40} {pos}/{len} events, {per_sec}, eta {eta}")
                {
                    bar.set_style(style);
                }
                return Self { bar: Some(bar) };
            }
        }
        Self::hidden()
    }

    fn inc(&self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
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

    #[test]
    fn backoff_grows_to_its_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50)).factor(3.0);
        let delays: Vec<_> = (1..=4).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [10, 30, 50, 50]);
    }
}
