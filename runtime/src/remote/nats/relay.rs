//! The relay: a machine's log published to its JetStream stream, in order,
//! without holes, each event once.
//!
//! [`Run`] is the protocol as a state machine without I/O; [`Driver`] does
//! each state's I/O and feeds the outcome back.

use super::config::StreamConfig;
use super::metrics::RelayMetrics;
use super::{wire, Error, POSITION};
use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::fate::FaultPoint;
use crate::machine::Machine;
use crate::store::Store;
use crate::stream::consumer::cursor::Cursor;
use crate::stream::consumer::driver::ends_run;
use crate::stream::consumer::lease::Lease;
use crate::stream::reader::Reader;
use crate::stream::{Backoff, Position, Start, StreamOptions};
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use futures::future::{Fuse, FusedFuture};
use futures::FutureExt;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::{pin, Pin};
use std::time::{Duration, Instant};

/// Publishes a machine's events to its JetStream stream ([`StreamConfig`]),
/// one relay at a time per stream across processes.
///
/// - Reads the log gap-safely from its cursor (`statefold_cursors`, key
///   [`key`](Self::key)), as a local consumer does.
/// - Publishes up to [`window`](Self::window) events ahead of their
///   acknowledgements, awaited in order; the cursor moves only past
///   acknowledged events (saved at most every 200 ms while running, and
///   when it stops).
/// - Each publish has `Nats-Msg-Id` `<events table>:<position>`, and
///   `Nats-Expected-Last-Sequence` the stream sequence its predecessor
///   gets: a publish lost in the middle of the pipeline makes JetStream
///   refuse every later one, so the stream never holds an event ahead of
///   one missing.
/// - After any failure, and when it starts, the relay reads the stream's
///   last message and goes on after its event (or after its own cursor,
///   whichever is later): a relay that died after JetStream stored events
///   but before saving its cursor publishes none of them again, however
///   long ago it died.
/// - A lease in `statefold_leases` lets one run work at a time: others
///   wait and take over when it stops or its lease expires.
///
/// Needs the shared tables ([`Store::create_support_tables`]).
///
/// ```no_run
/// # use statefold::{Machine, Sqlite, Store};
/// # #[derive(Debug, Clone, Machine)]
/// # #[machine(table = "doors")]
/// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
/// use statefold::remote::nats::{async_nats, Relay, StreamConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::<Door, Sqlite>::connect("sqlite://doors.db").await?;
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let relay = Relay::new(&store, client, StreamConfig::new("DOORS"));
/// // Runs until `stop` is sent or dropped.
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// relay.run(async { stopped.await.ok(); }).await?;
/// # drop(stop);
/// # Ok(())
/// # }
/// ```
pub struct Relay<M: Machine, B: Backend> {
    store: Store<M, B>,
    js: Context,
    config: StreamConfig,
    key: String,
    window: usize,
    options: StreamOptions,
    lease_ttl: Duration,
    backoff: Backoff,
}

impl<M: Machine, B: Backend> fmt::Debug for Relay<M, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("machine", &M::DEF.name)
            .field("stream", &self.config.name())
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, B: Backend> Relay<M, B> {
    /// The relay of the store's machine to the stream `config` describes,
    /// through `client`: 256 publishes in flight, a 30 s lease,
    /// [`Backoff::default`].
    pub fn new(store: &Store<M, B>, client: async_nats::Client, config: StreamConfig) -> Self {
        Self {
            store: store.clone(),
            js: async_nats::jetstream::new(client),
            key: format!("nats-relay:{}", config.name()),
            config,
            window: 256,
            options: StreamOptions::default(),
            lease_ttl: Duration::from_secs(30),
            backoff: Backoff::default(),
        }
    }

    /// How many publishes may await their acknowledgement (at least 1).
    #[must_use]
    pub fn window(mut self, publishes: usize) -> Self {
        self.window = publishes.max(1);
        self
    }

    /// How the relay reads the log.
    #[must_use]
    pub fn stream_options(mut self, options: StreamOptions) -> Self {
        self.options = options;
        self
    }

    /// How long the lease lasts unless renewed (every third of it).
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Waits between attempts after a failure.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The key of the relay's cursor and lease: `nats-relay:<stream>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The stream's configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The saved cursor: every event up to it is in the stream.
    ///
    /// # Errors
    /// [`Error::Store`] when the database fails or lacks the shared tables.
    pub async fn position(&self) -> Result<Position, Error> {
        Ok(Cursor::new(self.store.clone(), &self.key).load().await?)
    }

    /// Creates the stream, or checks that the one there agrees with the
    /// configuration (as [`run`](Self::run) does first).
    ///
    /// # Errors
    /// [`Error::StreamMismatch`], [`Error::InvalidName`], [`Error::Nats`].
    pub async fn ensure_stream(&self) -> Result<(), Error> {
        self.config.ensure::<M>(&self.js).await.map(drop)
    }

    /// Runs until `shutdown` completes: creates or checks the stream, takes
    /// the lease (waiting while another run holds it), then publishes the
    /// log from where the stream ends, as it is committed. On shutdown it
    /// awaits the acknowledgements in flight, saves its cursor and gives
    /// the lease up.
    ///
    /// # Errors
    /// What retrying cannot fix: [`Error::StreamMismatch`] or
    /// [`Error::InvalidName`] at the start, [`Error::ForeignMessage`] when
    /// the stream's last message is not this relay's, an event that cannot
    /// be decoded or encoded, a database error that ends a consumer's run
    /// too ([`Consumer::run`](crate::Consumer::run)). NATS being away, a
    /// publish lost or refused, a database restart: all are logged, counted
    /// (`statefold_relay_errors_total`) and retried with backoff.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let stream = self.config.ensure::<M>(&self.js).await?;
        Driver::new(self, stream, false).drive(pin!(shutdown.fuse())).await.map(drop)
    }

    /// Publishes the log up to its end as it is when called (or later),
    /// waits for every acknowledgement, saves the cursor, and returns how
    /// many events it published: for tests, tools and batch jobs.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn catch_up(&self) -> Result<u64, Error> {
        let stream = self.config.ensure::<M>(&self.js).await?;
        Driver::new(self, stream, true).drive(pin!(std::future::pending::<()>().fuse())).await
    }
}

/// How often a running relay saves its cursor.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// A relay's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Takes or renews the lease.
    Lease,
    /// Another run holds the lease: waits a third of its ttl.
    Standby,
    /// Reads the stream's end and the cursor; puts the reader after them.
    Sync,
    /// Reads a batch and publishes it, awaiting acknowledgements as the
    /// window fills; saves the cursor.
    Publish,
    /// Caught up: waits for commits.
    Idle,
    /// After a failure: waits (backoff), then leases and syncs again.
    Recover(u32),
    /// Done.
    Stop,
}

/// What a state's I/O ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Leased,
    Held,
    Waited,
    Synced,
    Published,
    Empty,
    Reached,
    Lost,
    Failed,
    Shutdown,
}

/// The protocol, without I/O.
struct Run {
    state: State,
    failures: u32,
}

impl Run {
    fn new() -> Self {
        Self { state: State::Lease, failures: 0 }
    }

    fn on(&mut self, outcome: Outcome) {
        use Outcome as O;
        use State as S;
        if matches!(outcome, O::Synced | O::Published) {
            self.failures = 0;
        }
        self.state = match (self.state, outcome) {
            (_, O::Shutdown | O::Reached) => S::Stop,
            (_, O::Failed) => {
                self.failures += 1;
                S::Recover(self.failures)
            }
            (S::Lease, O::Leased) => S::Sync,
            (S::Lease, _) => S::Standby,
            (S::Standby | S::Recover(_), _) => S::Lease,
            (S::Sync, _) => S::Publish,
            (S::Publish, O::Empty) => S::Idle,
            (S::Publish, O::Lost) => S::Lease,
            (S::Publish | S::Idle, _) => S::Publish,
            (S::Stop, _) => S::Stop,
        };
    }
}

/// Why a step failed.
enum Failure {
    /// The database (or a fault injected before one of its trips).
    Store(crate::Error),
    /// NATS, or a publish lost or refused: the pipeline starts again.
    Nats(String),
    /// Ends the run.
    Fatal(Error),
}

impl From<crate::Error> for Failure {
    fn from(error: crate::Error) -> Self {
        Self::Store(error)
    }
}

/// A publish awaiting its acknowledgement.
struct InFlight {
    position: Position,
    created_at: DateTime<Utc>,
    /// The stream sequence it must get.
    sequence: u64,
    sent: Instant,
    ack: Ack,
}

/// An acknowledgement to come.
type Pending = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

enum Ack {
    Pending(Pending),
    /// Never sent ([`FaultPoint::BeforePublish`]).
    Lost(crate::Error),
}

type Shutdown<'s, F> = Pin<&'s mut Fuse<F>>;

/// One run of a relay.
struct Driver<'r, M: Machine, B: Backend> {
    relay: &'r Relay<M, B>,
    stream: Stream,
    cursor: Cursor<M, B>,
    lease: Lease<B>,
    reader: Option<Reader<M, B>>,
    metrics: RelayMetrics,
    run: Run,
    pipeline: VecDeque<InFlight>,
    /// The next batch, read while the last one was published.
    ahead: Option<Vec<Envelope<M>>>,
    /// The stream's last sequence once everything sent is stored.
    sequence: u64,
    /// The last event JetStream acknowledged (or the cursor).
    acked: Position,
    /// The saved cursor.
    saved: Position,
    /// When the cursor was last saved.
    saved_at: Option<Instant>,
    leased_at: Option<Instant>,
    /// Where a catch-up stops.
    target: Option<Position>,
    catch_up: bool,
    published: u64,
    lag_at: Option<Instant>,
}

impl<'r, M: Machine, B: Backend> Driver<'r, M, B> {
    fn new(relay: &'r Relay<M, B>, stream: Stream, catch_up: bool) -> Self {
        let store = relay.store.clone();
        Self {
            relay,
            stream,
            cursor: Cursor::new(store.clone(), &relay.key),
            lease: Lease::new(store.pool().clone(), M::DEF.name, M::DEF.events_table, &relay.key),
            reader: None,
            metrics: RelayMetrics::new(M::DEF.events_table, relay.config.name()),
            run: Run::new(),
            pipeline: VecDeque::new(),
            ahead: None,
            sequence: 0,
            acked: Position::START,
            saved: Position::START,
            saved_at: None,
            leased_at: None,
            target: None,
            catch_up,
            published: 0,
            lag_at: None,
        }
    }

    async fn drive<F: Future<Output = ()> + Send>(mut self, mut shutdown: Shutdown<'_, F>) -> Result<u64, Error> {
        let result = loop {
            let state = self.run.state;
            if state == State::Stop {
                break Ok(());
            }
            let outcome =
                if stopping(&mut shutdown) { Ok(Outcome::Shutdown) } else { self.step(state, shutdown.as_mut()).await };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(Failure::Fatal(error)) => break Err(error),
                Err(Failure::Store(error)) if ends_run(&error) => break Err(Error::Store(error)),
                Err(_) if stopping(&mut shutdown) => Outcome::Shutdown,
                Err(failure) => {
                    self.metrics.errors.increment(1);
                    if !self.pipeline.is_empty() || matches!(failure, Failure::Nats(_)) {
                        self.metrics.restarts.increment(1);
                    }
                    self.pipeline.clear();
                    self.ahead = None;
                    let message = match failure {
                        Failure::Store(error) => error.to_string(),
                        Failure::Nats(message) => message,
                        Failure::Fatal(_) => String::new(),
                    };
                    tracing::warn!(relay = %self.relay.key, error = %message, "relay failed; starting again from the stream's end");
                    Outcome::Failed
                }
            };
            self.run.on(outcome);
        };
        if self.leased_at.is_some() {
            // What is in flight when asked to stop: awaited, then saved.
            while !self.pipeline.is_empty() {
                if self.settle().await.is_err() {
                    self.pipeline.clear();
                }
            }
            if self.save().await.is_err() {
                tracing::warn!(relay = %self.relay.key, "cursor not saved on shutdown; the next run reads the stream's end");
            }
            if let Err(error) = self.lease.release().await {
                tracing::warn!(relay = %self.relay.key, %error, "lease not given up; it will expire");
            }
        }
        result.map(|()| self.published)
    }

    async fn step<F: Future<Output = ()> + Send>(
        &mut self,
        state: State,
        mut shutdown: Shutdown<'_, F>,
    ) -> Result<Outcome, Failure> {
        let ttl = self.relay.lease_ttl;
        match state {
            State::Lease => self.take_lease().await,
            State::Standby => Ok(wait(shutdown, tokio::time::sleep(ttl / 3)).await),
            State::Sync => self.sync().await,
            State::Publish => self.publish().await,
            State::Idle => {
                let reader =
                    self.reader.as_mut().ok_or(Failure::Store(crate::Error::Database(sqlx::Error::PoolClosed)))?;
                tokio::select! {
                    () = &mut shutdown => Ok(Outcome::Shutdown),
                    () = reader.wait(ttl / 3) => Ok(Outcome::Waited),
                }
            }
            State::Recover(failures) => {
                Ok(wait(shutdown, tokio::time::sleep(self.relay.backoff.delay(failures))).await)
            }
            State::Stop => Ok(Outcome::Shutdown),
        }
    }

    fn tempt(&self) -> Result<(), Failure> {
        self.relay.store.strike(FaultPoint::BeforeConsumerQuery).map_or(Ok(()), |e| Err(Failure::Store(e)))
    }

    async fn take_lease(&mut self) -> Result<Outcome, Failure> {
        self.tempt()?;
        let asked = Instant::now();
        if self.lease.take(self.relay.lease_ttl).await? {
            if self.leased_at.is_none() {
                tracing::info!(relay = %self.relay.key, owner = %self.lease.owner(), "lease taken");
            }
            self.leased_at = Some(asked);
            Ok(Outcome::Leased)
        } else {
            if self.leased_at.take().is_some() {
                tracing::warn!(relay = %self.relay.key, "lease lost to another run; waiting to take it back");
            }
            Ok(Outcome::Held)
        }
    }

    /// Reads where the stream ends and where the cursor is, and puts the
    /// reader after the later of the two.
    async fn sync(&mut self) -> Result<Outcome, Failure> {
        let store = &self.relay.store;
        self.pipeline.clear();
        self.ahead = None;
        if self.reader.is_none() {
            self.tempt()?;
            let reader =
                Reader::open(store.clone(), self.relay.options.clone(), Start::Beginning, &self.relay.key).await?;
            self.reader = Some(reader);
        }
        self.tempt()?;
        let cursor = self.cursor.load().await?;
        let info =
            self.stream.get_info().await.map_err(|e| Failure::Nats(format!("reading the stream's state: {e}")))?;
        let last = info.state.last_sequence;
        let stored =
            if last == 0 { None } else { last_position::<M>(&self.stream, self.relay.config.name(), last).await? };
        let resume = stored.map_or(cursor, |stored| stored.max(cursor));
        self.sequence = last;
        self.acked = resume;
        self.saved = cursor;
        if resume > cursor {
            tracing::info!(relay = %self.relay.key, %cursor, stored = %resume, "the stream is ahead of the cursor: going on after its last event");
            self.save().await?;
        }
        if self.catch_up && self.target.is_none() {
            self.tempt()?;
        }
        let reader = self.reader.as_mut().ok_or(Failure::Store(crate::Error::Database(sqlx::Error::PoolClosed)))?;
        reader.seek(resume);
        if self.catch_up && self.target.is_none() {
            self.target = Some(reader.end().await?.map_or(Position::START, |(end, _)| end));
        }
        Ok(match self.target {
            Some(target) if resume >= target => Outcome::Reached,
            _ => Outcome::Synced,
        })
    }

    /// One batch: published, its acknowledgements awaited as the window
    /// fills, the cursor saved past what is acknowledged.
    async fn publish(&mut self) -> Result<Outcome, Failure> {
        let ttl = self.relay.lease_ttl;
        if self.leased_at.is_none_or(|at| at.elapsed() >= ttl / 3) {
            self.tempt()?;
            let asked = Instant::now();
            if !self.lease.take(ttl).await? {
                self.leased_at = None;
                self.pipeline.clear();
                tracing::warn!(relay = %self.relay.key, "lease lost to another run; waiting to take it back");
                return Ok(Outcome::Lost);
            }
            self.leased_at = Some(asked);
        }
        let batch = match self.ahead.take() {
            Some(batch) => batch,
            None => {
                self.tempt()?;
                let reader =
                    self.reader.as_mut().ok_or(Failure::Store(crate::Error::Database(sqlx::Error::PoolClosed)))?;
                reader.fetch().await?
            }
        };
        let reached = if batch.is_empty() {
            false
        } else {
            // The next batch is read while this one is published.
            self.tempt()?;
            let mut reader =
                self.reader.take().ok_or(Failure::Store(crate::Error::Database(sqlx::Error::PoolClosed)))?;
            let (next, sent) = futures::join!(reader.fetch(), self.send_all(&batch));
            self.reader = Some(reader);
            let reached = sent?;
            self.ahead = Some(next?).filter(|next| !next.is_empty() && !reached);
            reached
        };
        if batch.is_empty() || reached {
            while !self.pipeline.is_empty() {
                self.settle().await?;
            }
        }
        // What is acknowledged already, without waiting.
        while self.pipeline.front().is_some_and(|f| matches!(&f.ack, Ack::Pending(_))) && self.settle_ready()? {}
        // The cursor only saves work at the next start (the stream's end is
        // read then anyway): saved at most every `SAVE_EVERY`, and at the end.
        let done = self.target.is_some_and(|target| self.acked >= target);
        let due = reached || done || self.saved_at.is_none_or(|at| at.elapsed() >= SAVE_EVERY);
        if due && !self.save().await? {
            return Ok(Outcome::Lost);
        }
        if self.lag_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) || batch.is_empty() {
            self.lag().await?;
        }
        Ok(match (batch.is_empty(), done || reached) {
            (_, true) if self.pipeline.is_empty() => Outcome::Reached,
            (true, _) => Outcome::Empty,
            _ => Outcome::Published,
        })
    }

    /// Hands a batch to JetStream, awaiting acknowledgements as the window
    /// fills; `true` when it reached a catch-up's target.
    async fn send_all(&mut self, batch: &[Envelope<M>]) -> Result<bool, Failure> {
        for envelope in batch {
            if self.target.is_some_and(|target| envelope.position > target) {
                return Ok(true);
            }
            while self.pipeline.len() >= self.relay.window {
                self.settle().await?;
            }
            self.send(envelope).await?;
        }
        Ok(false)
    }

    /// Hands one event to JetStream.
    async fn send(&mut self, envelope: &Envelope<M>) -> Result<(), Failure> {
        let sequence = self.sequence + 1;
        let ack = if let Some(fault) = self.relay.store.strike(FaultPoint::BeforePublish) {
            Ack::Lost(fault)
        } else {
            let body = wire::encode(envelope).map_err(|source| {
                Failure::Fatal(Error::Store(crate::Error::Encode { machine: M::DEF.name, source }))
            })?;
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{}:{}", M::DEF.events_table, envelope.position).as_str());
            headers.insert("Nats-Expected-Last-Sequence", self.sequence.to_string().as_str());
            headers.insert(POSITION, envelope.position.to_string().as_str());
            let subject = self.relay.config.subject(envelope);
            let pending = self
                .relay
                .js
                .publish_with_headers(subject, headers, body.into())
                .await
                .map_err(|e| Failure::Nats(format!("publishing {}: {e}", envelope.position)))?;
            Ack::Pending(Box::pin(pending.into_future()))
        };
        self.pipeline.push_back(InFlight {
            position: envelope.position,
            created_at: envelope.created_at,
            sequence,
            sent: Instant::now(),
            ack,
        });
        self.sequence = sequence;
        Ok(())
    }

    /// Awaits the oldest acknowledgement.
    async fn settle(&mut self) -> Result<(), Failure> {
        let Some(front) = self.pipeline.pop_front() else { return Ok(()) };
        let result = match front.ack {
            Ack::Pending(pending) => pending.await.map_err(|e| e.to_string()),
            Ack::Lost(fault) => Err(fault.to_string()),
        };
        self.acknowledged(front.position, front.sequence, front.sent, front.created_at, result)
    }

    /// Takes the oldest acknowledgement if it has arrived; `false` if not.
    fn settle_ready(&mut self) -> Result<bool, Failure> {
        let Some(front) = self.pipeline.front_mut() else { return Ok(false) };
        let Ack::Pending(pending) = &mut front.ack else { return Ok(false) };
        let Some(result) = pending.as_mut().now_or_never() else { return Ok(false) };
        let front = self.pipeline.pop_front().ok_or(Failure::Nats(String::new()))?;
        self.acknowledged(
            front.position,
            front.sequence,
            front.sent,
            front.created_at,
            result.map_err(|e| e.to_string()),
        )?;
        Ok(true)
    }

    fn acknowledged(
        &mut self,
        position: Position,
        sequence: u64,
        sent: Instant,
        created_at: DateTime<Utc>,
        result: Result<PublishAck, String>,
    ) -> Result<(), Failure> {
        let ack = result.map_err(|e| Failure::Nats(format!("publish of {position} failed: {e}")))?;
        if ack.duplicate || ack.sequence != sequence {
            return Err(Failure::Nats(format!(
                "publish of {position}: JetStream has it at sequence {}{}, not {sequence}",
                ack.sequence,
                if ack.duplicate { " (a duplicate)" } else { "" }
            )));
        }
        self.metrics.publish.record(sent.elapsed().as_secs_f64());
        if let Some(fault) = self.relay.store.strike(FaultPoint::AfterPublishAck) {
            return Err(Failure::Store(fault));
        }
        self.metrics.events.increment(1);
        self.published += 1;
        self.acked = position;
        let age = (Utc::now() - created_at).num_milliseconds().max(0) as f64 / 1000.0;
        tracing::trace!(relay = %self.relay.key, %position, sequence, age, "acknowledged");
        Ok(())
    }

    /// Saves the cursor at the last acknowledged event; `false` when it is
    /// already beyond (another run got there).
    async fn save(&mut self) -> Result<bool, Failure> {
        self.saved_at = Some(Instant::now());
        if self.acked <= self.saved {
            return Ok(true);
        }
        self.tempt()?;
        let mut tx = self.relay.store.begin().await?;
        if self.cursor.advance(&mut tx, self.acked).await? {
            tx.commit().await?;
            self.saved = self.acked;
            Ok(true)
        } else {
            let _ = tx.rollback().await;
            Ok(false)
        }
    }

    /// The lag against the log's end.
    async fn lag(&mut self) -> Result<(), Failure> {
        self.lag_at = Some(Instant::now());
        let acked = self.acked;
        let reader = self.reader.as_mut().ok_or(Failure::Store(crate::Error::Database(sqlx::Error::PoolClosed)))?;
        let (events, seconds) = match reader.end().await? {
            Some((end, _)) if end > acked => {
                let oldest = reader.first_after(acked).await?;
                let age = oldest.map_or(0.0, |at| (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0);
                ((end.id() - acked.id()).max(1) as f64, age)
            }
            _ => (0.0, 0.0),
        };
        self.metrics.lag_events.set(events);
        self.metrics.lag_seconds.set(seconds);
        Ok(())
    }
}

/// The position of the event at stream sequence `sequence`; `None` when
/// that message is gone (deleted, or aged out).
async fn last_position<M: Machine>(stream: &Stream, name: &str, sequence: u64) -> Result<Option<Position>, Failure> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => {
            let position = wire::position(Some(&message.headers)).map_err(|reason| {
                Failure::Fatal(Error::ForeignMessage {
                    stream: name.to_owned(),
                    sequence,
                    machine: M::DEF.name,
                    reason,
                })
            })?;
            Ok(Some(position))
        }
        Err(error) if is_gone(&error.to_string()) => Ok(None),
        Err(error) => Err(Failure::Nats(format!("reading the stream's last message: {error}"))),
    }
}

/// Whether a JetStream error says the message is gone (code 10037).
fn is_gone(message: &str) -> bool {
    message.contains("10037") || message.contains("no message found")
}

async fn wait<F: Future<Output = ()> + Send>(shutdown: Shutdown<'_, F>, until: impl Future<Output = ()>) -> Outcome {
    tokio::select! {
        () = shutdown => Outcome::Shutdown,
        () = until => Outcome::Waited,
    }
}

fn stopping<F: Future<Output = ()>>(shutdown: &mut Shutdown<'_, F>) -> bool {
    shutdown.is_terminated() || shutdown.as_mut().now_or_never().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(outcomes: &[Outcome]) -> Vec<State> {
        let mut run = Run::new();
        outcomes
            .iter()
            .map(|&outcome| {
                run.on(outcome);
                run.state
            })
            .collect()
    }

    #[test]
    fn a_relay_syncs_after_the_lease_and_after_every_failure() {
        use Outcome as O;
        use State as S;
        assert_eq!(
            walk(&[O::Held, O::Waited, O::Leased, O::Synced, O::Published, O::Empty, O::Waited, O::Failed]),
            [S::Standby, S::Lease, S::Sync, S::Publish, S::Publish, S::Idle, S::Publish, S::Recover(1)]
        );
        assert_eq!(
            walk(&[O::Leased, O::Failed, O::Waited, O::Leased, O::Failed, O::Waited]),
            [S::Sync, S::Recover(1), S::Lease, S::Sync, S::Recover(2), S::Lease]
        );
        assert_eq!(walk(&[O::Leased, O::Synced, O::Lost, O::Held]), [S::Sync, S::Publish, S::Lease, S::Standby]);
        assert_eq!(walk(&[O::Leased, O::Synced, O::Reached]), [S::Sync, S::Publish, S::Stop]);
        assert_eq!(walk(&[O::Leased, O::Synced, O::Shutdown, O::Leased]), [S::Sync, S::Publish, S::Stop, S::Stop]);
    }

    #[test]
    fn a_success_resets_the_backoff() {
        use Outcome as O;
        assert_eq!(walk(&[O::Leased, O::Failed, O::Waited, O::Leased, O::Synced, O::Failed])[5], State::Recover(1));
    }
}
