//! The consumer's I/O: each state of [`run`](super::run) done against the
//! database, its outcome fed back to the state machine.

use super::cursor::Cursor;
use super::dead_letter::{DeadLetter, DeadLetters};
use super::input::Input;
use super::lease::Lease;
use super::progress::Progress;
use super::run::{Mode, Outcome, Run, State};
use super::{Consumer, Driven, HandlerError};
use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::fate::FaultPoint;
use crate::machine::{Machine, Status};
use crate::stream::metrics::ConsumerMetrics;
use crate::stream::position::{Position, Start};
use crate::stream::reader::Reader;
use futures::future::{Fuse, FusedFuture};
use futures::FutureExt;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;
use tracing::Instrument;

/// One run of a consumer: its lease, cursor and reader, and where it is.
pub(super) struct Driver<'c, M: Machine, B: Backend, D> {
    consumer: &'c Consumer<M, B>,
    driven: D,
    mode: Mode,
    key: String,
    cursor: Cursor<M, B>,
    lease: Lease<B>,
    dead_letters: DeadLetters<M, B>,
    reader: Option<Input<M, B>>,
    metrics: ConsumerMetrics,
    run: Run,
    /// When the lease was last taken or renewed; `None` while not held.
    leased_at: Option<Instant>,
    /// Whether a rebuild's reset is done.
    reset: bool,
    /// Where a catch-up or rebuild stops: the log's end when it started.
    target: Option<Position>,
    handled: u64,
    progress: Progress,
    /// When the lag was last measured.
    lag_at: Option<Instant>,
}

/// How an event's handling ended.
enum Handled {
    /// Handled (or dead-lettered), and the cursor saved past it.
    Done,
    /// Another run holds the lease.
    Lost,
    /// The cursor is already past the event: another run handled it, or an
    /// earlier attempt committed although its answer was lost.
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

type Shutdown<'s, F> = Pin<&'s mut Fuse<F>>;

/// How often a consumer of a remote source measures its lag.
const REMOTE_LAG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl<'c, M: Machine, B: Backend, D: Driven<M, B>> Driver<'c, M, B, D> {
    pub(super) fn new(consumer: &'c Consumer<M, B>, driven: D, mode: Mode) -> Self {
        let key = consumer.key();
        let store = consumer.store.clone();
        Self {
            consumer,
            driven,
            mode,
            cursor: Cursor::new(store.clone(), &key),
            lease: Lease::new(store.pool().clone(), M::DEF.name, M::DEF.events_table, &key),
            dead_letters: DeadLetters::new(store, &key),
            reader: None,
            metrics: ConsumerMetrics::new(M::DEF.events_table, &key),
            run: Run::new(),
            leased_at: None,
            reset: false,
            target: None,
            handled: 0,
            progress: Progress::hidden(),
            lag_at: None,
            key,
        }
    }

    /// Runs the states until [`State::Stop`], then gives the lease up;
    /// returns how many events were handled.
    pub(super) async fn drive<F: Future<Output = ()> + Send>(
        mut self,
        mut shutdown: Shutdown<'_, F>,
    ) -> Result<u64, Error> {
        let result = loop {
            let state = self.run.state();
            if state == State::Stop {
                break Ok(());
            }
            let outcome =
                if stopping(&mut shutdown) { Ok(Outcome::Shutdown) } else { self.step(state, shutdown.as_mut()).await };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(error) if ends_run(&error) => break Err(error),
                // Shutdown seen inside the failed step: no backoff before stopping.
                Err(_) if stopping(&mut shutdown) => Outcome::Shutdown,
                Err(error) => {
                    self.metrics.errors.increment(1);
                    tracing::warn!(consumer = %self.key, %error, "database error; retrying");
                    Outcome::Failed
                }
            };
            self.run.on(outcome);
        };
        self.progress.finish();
        if self.leased_at.is_some() {
            if let Err(error) = self.release().await {
                // Not worth failing a clean stop for: another run takes over when it expires.
                tracing::warn!(consumer = %self.key, %error, "lease not given up; it will expire");
            }
        }
        result.map(|()| self.handled)
    }

    async fn step<F: Future<Output = ()> + Send>(
        &mut self,
        state: State,
        mut shutdown: Shutdown<'_, F>,
    ) -> Result<Outcome, Error> {
        let ttl = self.consumer.lease_ttl;
        match state {
            State::Lease => self.lease().await,
            State::Standby => Ok(wait(shutdown, tokio::time::sleep(ttl / 3)).await),
            State::Load => self.load().await,
            State::Work => self.work(shutdown).await,
            State::Idle => {
                let reader = self.reader.as_mut().ok_or(Error::Database(sqlx::Error::PoolClosed))?;
                tokio::select! {
                    () = &mut shutdown => Ok(Outcome::Shutdown),
                    () = reader.wait(ttl / 3) => Ok(Outcome::Waited),
                }
            }
            State::Recover(failures) => {
                // The reader may be past events not handled: it starts again from the cursor.
                Ok(wait(shutdown, tokio::time::sleep(self.consumer.backoff.delay(failures))).await)
            }
            State::Stop => Ok(Outcome::Shutdown),
        }
    }

    /// Takes or renews the lease when due, or when the cursor must be read
    /// again (the lease is new, or an error left it in doubt).
    async fn lease(&mut self) -> Result<Outcome, Error> {
        let fresh = self.leased_at.is_some_and(|at| at.elapsed() < self.consumer.lease_ttl / 3);
        if self.run.loaded() && fresh {
            return Ok(Outcome::Leased);
        }
        tempt(&self.consumer.store)?;
        // The lease runs from before the request, which may have been slow.
        let asked = Instant::now();
        if self.lease.take(self.consumer.lease_ttl).await? {
            if self.leased_at.is_none() {
                tracing::info!(consumer = %self.key, owner = %self.lease.owner(), "lease taken");
            }
            self.leased_at = Some(asked);
            Ok(Outcome::Leased)
        } else {
            if self.leased_at.take().is_some() {
                tracing::warn!(consumer = %self.key, "lease lost to another run; waiting to take it back");
            }
            Ok(Outcome::Held)
        }
    }

    /// Puts the reader at the saved cursor; a rebuild first resets, once.
    async fn load(&mut self) -> Result<Outcome, Error> {
        let store = &self.consumer.store;
        if self.reader.is_none() {
            let options = self.consumer.options.clone();
            let input = match &self.consumer.source {
                Some(source) => Input::Remote(source.feed(&self.key, &options)),
                None => Input::Local(Reader::open(store.clone(), options, Start::Beginning, &self.key).await?),
            };
            self.reader = Some(input);
        }
        if self.mode == Mode::Rebuild && !self.reset {
            return self.reset().await;
        }
        tempt(&self.consumer.store)?;
        let position = self.cursor.load().await?;
        let reader = self.reader.as_mut().ok_or(Error::Database(sqlx::Error::PoolClosed))?;
        reader.seek(position);
        if self.mode == Mode::CatchUp && self.target.is_none() {
            tempt(&self.consumer.store)?;
            let end = reader.end().await?.map_or(Position::START, |(end, _)| end);
            self.target = Some(end);
        }
        match self.target {
            Some(target) if position >= target => Ok(Outcome::Reached),
            _ => Ok(Outcome::Ready),
        }
    }

    /// The start of a rebuild: the handler's reset and the cursor's, in one
    /// transaction; then the target is the log's present end.
    async fn reset(&mut self) -> Result<Outcome, Error> {
        let store = &self.consumer.store;
        tempt(&self.consumer.store)?;
        self.cursor.load().await?;
        let mut tx = store.begin().await?;
        if let Err(error) = self.driven.reset(&mut tx).await {
            // The reset's error is the one to report.
            let _ = tx.rollback().await;
            return Err(Error::Handler { consumer: self.key.clone(), message: error.to_string() });
        }
        self.cursor.reset(&mut tx).await?;
        tx.commit().await?;
        let reader = self.reader.as_mut().ok_or(Error::Database(sqlx::Error::PoolClosed))?;
        reader.seek(Position::START);
        tempt(&self.consumer.store)?;
        let until = reader.end().await?.map_or(Position::START, |(end, _)| end);
        tempt(&self.consumer.store)?;
        let total = reader.count_after(Position::START).await?;
        // Only now is the reset done: an error before this resets again,
        // which is harmless as nothing was handled since.
        self.reset = true;
        self.target = Some(until);
        self.progress = Progress::new(total);
        Ok(if until == Position::START { Outcome::Reached } else { Outcome::Ready })
    }

    /// Reads a batch and handles it; then the lag.
    async fn work<F: Future<Output = ()> + Send>(&mut self, mut shutdown: Shutdown<'_, F>) -> Result<Outcome, Error> {
        let reader = self.reader.as_mut().ok_or(Error::Database(sqlx::Error::PoolClosed))?;
        if self.target.is_some_and(|target| reader.cursor() >= target) {
            return Ok(Outcome::Reached);
        }
        tempt(&self.consumer.store)?;
        let batch = reader.fetch().await?;
        if batch.is_empty() {
            self.lag().await?;
            return Ok(Outcome::Empty);
        }
        let mut unsaved = None;
        let mut outcome = Outcome::Handled;
        for envelope in batch {
            if self.target.is_some_and(|target| envelope.position > target) {
                break;
            }
            if !self.consumer.selects(&envelope) {
                unsaved = Some(envelope.position);
                continue;
            }
            match self.handle(&envelope, shutdown.as_mut()).await? {
                Handled::Done => {
                    unsaved = None;
                    self.progress.inc();
                }
                Handled::Lost => {
                    self.leased_at = None;
                    tracing::warn!(consumer = %self.key, "lease lost to another run; waiting to take it back");
                    return Ok(Outcome::Lost);
                }
                Handled::Behind => {
                    tracing::debug!(consumer = %self.key, position = %envelope.position, "cursor already past; reading it again");
                    return Ok(Outcome::Lost);
                }
                Handled::Stopped => {
                    outcome = Outcome::Shutdown;
                    break;
                }
            }
            if stopping(&mut shutdown) {
                outcome = Outcome::Shutdown;
                break;
            }
        }
        if let Some(position) = unsaved {
            if !self.save(position).await? {
                return Ok(Outcome::Lost);
            }
        }
        if outcome == Outcome::Handled {
            self.lag().await?;
        }
        Ok(outcome)
    }

    /// The lag against the log's end: events committed after the cursor,
    /// and the age of the oldest of them.
    async fn lag(&mut self) -> Result<(), Error> {
        let reader = self.reader.as_mut().ok_or(Error::Database(sqlx::Error::PoolClosed))?;
        // A remote log's end is two calls to another service: measured at
        // most once a second, not after every batch on the way to the next.
        if matches!(reader, Input::Remote(_)) && self.lag_at.is_some_and(|at| at.elapsed() < REMOTE_LAG_EVERY) {
            return Ok(());
        }
        self.lag_at = Some(Instant::now());
        tempt(&self.consumer.store)?;
        let cursor = reader.cursor();
        let (events, seconds) = match reader.end().await? {
            Some((end, _)) if end > cursor => {
                let oldest = reader.first_after(cursor).await?;
                let age = oldest.map_or(0.0, |at| (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0);
                ((end.id() - cursor.id()).max(1) as f64, age)
            }
            _ => (0.0, 0.0),
        };
        self.metrics.lag_events.set(events);
        self.metrics.lag_seconds.set(seconds);
        Ok(())
    }

    /// Handles one event until it succeeds, is dead-lettered, or the run
    /// loses its lease or is asked to stop.
    async fn handle<F: Future<Output = ()> + Send>(
        &mut self,
        envelope: &Envelope<M>,
        mut shutdown: Shutdown<'_, F>,
    ) -> Result<Handled, Error> {
        let (mut failures, mut handler_failures) = (0_u32, 0_u32);
        loop {
            let span = tracing::info_span!(
                "statefold.handle",
                consumer = %self.key,
                position = %envelope.position,
                record_id = %envelope.record_id,
                kind = envelope.to.name(),
                attempt = failures + 1,
            );
            match self.attempt(envelope).instrument(span.clone()).await {
                Ok(true) => {
                    self.metrics.events.increment(1);
                    self.handled += 1;
                    return Ok(Handled::Done);
                }
                Ok(false) => return Ok(Handled::Behind),
                Err(Failed::Other(error)) if ends_run(&error) => return Err(error),
                Err(Failed::Other(error)) => {
                    self.metrics.errors.increment(1);
                    tracing::warn!(parent: &span, %error, "handling failed; retrying");
                    // The database may have been away longer than the lease.
                    self.leased_at = None;
                }
                Err(Failed::Handler(error)) => {
                    self.metrics.errors.increment(1);
                    handler_failures += 1;
                    if self.consumer.dead_letter_after.is_some_and(|n| handler_failures >= n) {
                        tracing::error!(parent: &span, %error, attempts = handler_failures, "handler gave up; dead letter");
                        let buried = self.bury(envelope, &error, handler_failures).await?;
                        self.metrics.dead_letters.increment(u64::from(buried));
                        return Ok(if buried { Handled::Done } else { Handled::Behind });
                    }
                    tracing::warn!(parent: &span, %error, attempts = handler_failures, "handler failed; retrying");
                }
            }
            failures += 1;
            tokio::select! {
                () = &mut shutdown => return Ok(Handled::Stopped),
                () = tokio::time::sleep(self.consumer.backoff.delay(failures)) => {}
            }
            tempt(&self.consumer.store)?;
            let asked = Instant::now();
            if !self.lease.take(self.consumer.lease_ttl).await? {
                return Ok(Handled::Lost);
            }
            self.leased_at = Some(asked);
        }
    }

    /// One attempt: the handler and the cursor in one transaction.
    /// `Ok(false)`: the cursor was already past the event (another run).
    async fn attempt(&mut self, envelope: &Envelope<M>) -> Result<bool, Failed> {
        let store = &self.consumer.store;
        let mut tx = store.begin().await.map_err(Failed::Other)?;
        if let Err(error) = self.driven.handle(&mut tx, envelope).await {
            let _ = tx.rollback().await;
            return Err(Failed::Handler(error));
        }
        if let Some(fault) = store.strike(FaultPoint::BeforeCursorSave) {
            let _ = tx.rollback().await;
            return Err(Failed::Other(fault));
        }
        if !self.cursor.advance(&mut tx, envelope.position).await.map_err(Failed::Other)? {
            let _ = tx.rollback().await;
            return Ok(false);
        }
        tx.commit().await.map_err(Failed::Other)?;
        Ok(true)
    }

    /// Records a dead letter and moves the cursor past it, in one transaction.
    async fn bury(&mut self, envelope: &Envelope<M>, error: &HandlerError, attempts: u32) -> Result<bool, Error> {
        tempt(&self.consumer.store)?;
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
        let mut tx = self.consumer.store.begin().await?;
        self.dead_letters.record(&mut tx, letter).await?;
        if !self.cursor.advance(&mut tx, envelope.position).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Moves the cursor past events this consumer does not handle.
    async fn save(&mut self, position: Position) -> Result<bool, Error> {
        tempt(&self.consumer.store)?;
        let mut tx = self.consumer.store.begin().await?;
        if self.cursor.advance(&mut tx, position).await? {
            tx.commit().await?;
            Ok(true)
        } else {
            tx.rollback().await?;
            Ok(false)
        }
    }

    /// Gives the lease up, if this run still holds it.
    async fn release(&mut self) -> Result<(), Error> {
        tempt(&self.consumer.store)?;
        self.lease.release().await
    }
}

/// A fault injected on purpose before a trip to the database, as when it
/// restarts or a connection drops ([`FaultPoint::BeforeConsumerQuery`]).
fn tempt<M: Machine, B: Backend>(store: &crate::store::Store<M, B>) -> Result<(), Error> {
    store.strike(FaultPoint::BeforeConsumerQuery).map_or(Ok(()), Err)
}

/// Waits for `until`, or shutdown.
async fn wait<F: Future<Output = ()> + Send>(shutdown: Shutdown<'_, F>, until: impl Future<Output = ()>) -> Outcome {
    tokio::select! {
        () = shutdown => Outcome::Shutdown,
        () = until => Outcome::Waited,
    }
}

/// Whether shutdown was asked for. A fused future that has completed stays
/// pending when polled again, so once one check (or a `select!`) has seen
/// it complete, only the fuse still knows.
fn stopping<F: Future<Output = ()>>(shutdown: &mut Shutdown<'_, F>) -> bool {
    shutdown.is_terminated() || shutdown.as_mut().now_or_never().is_some()
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
pub(crate) fn ends_run(error: &Error) -> bool {
    match error {
        // The consumer never takes the head; were it to, waiting more may settle it.
        Error::InjectedFault { .. } | Error::HeadNotSettled { .. } => false,
        Error::Remote { retryable, .. } => !retryable,
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
        | Error::NewerEvent { .. }
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
        | Error::Duplicate { .. }
        | Error::PrivilegeRequired { .. }
        | Error::InvalidPosition { .. }
        | Error::SchemaMismatch { .. }
        | Error::InvalidEffect { .. }
        | Error::UnregisteredMachine { .. }
        | Error::InvalidKey { .. }
        | Error::CorruptEffect { .. } => true,
    }
}
