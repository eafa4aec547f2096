//! A consumer fed from JetStream: the same [`Handler`] as a local
//! consumer, exactly once into the handler's database.

use super::metrics::SourceMetrics;
use super::{wire, Error, DEAD_LETTER_ERROR, DEAD_LETTER_SEQUENCE};
use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::fate::FaultPoint;
use crate::machine::Machine;
use crate::store::Store;
use crate::stream::consumer::cursor::Cursor;
use crate::stream::consumer::driver::ends_run;
use crate::stream::consumer::lease::Lease;
use crate::stream::metrics::ConsumerMetrics;
use crate::stream::{Backoff, Handler, Position};
use async_nats::jetstream::consumer::pull::{Config, Stream as Messages};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::{Context, Message};
use futures::future::{Fuse, FusedFuture};
use futures::{FutureExt, StreamExt};
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A consumer of a machine's events relayed to JetStream ([`Relay`](super::Relay)),
/// running a [`Handler`] in a transaction of `store`'s database (the
/// consuming service's, which need not be the one the events were written in).
///
/// Exactly once into that database: the cursor is each event's own log
/// position (header [`POSITION`](super::POSITION)), saved in
/// `statefold_cursors` (key [`key`](Self::key)) in the handler's
/// transaction; the message is acknowledged after the commit. Anything at
/// or below the cursor is acknowledged and skipped: a redelivery, or an
/// event a relay published again under a new sequence after the duplicate
/// window.
///
/// The JetStream consumer is durable (its name is given). Each run takes a
/// lease (one run per name at a time across processes), then re-creates
/// the durable consumer from its acknowledgement floor, so that messages
/// delivered to a run that died come again before later ones: events are
/// handled in log order. Shards are subject filters
/// ([`StreamConfig::shard_filter`](super::StreamConfig::shard_filter)), one
/// durable name each.
///
/// A message that is not a relayed event of the machine stops the run
/// with [`Error::Malformed`] naming its stream sequence, unacknowledged;
/// with a [`dead_letter_subject`](Self::dead_letter_subject) it is
/// published there (with headers [`DEAD_LETTER_ERROR`] and
/// [`DEAD_LETTER_SEQUENCE`]) and acknowledged instead. A failing handler is
/// retried with backoff, never skipped.
///
/// ```no_run
/// # use statefold::{Envelope, Handler, HandlerError, Machine, Sqlite, Store, Tx};
/// # #[derive(Debug, Clone, Machine)]
/// # #[machine(table = "doors")]
/// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
/// # struct Count;
/// # impl Handler<Door, Sqlite> for Count {
/// #     async fn handle(&mut self, _: &mut Tx<'static, Sqlite>, _: &Envelope<Door>) -> Result<(), HandlerError> { Ok(()) }
/// # }
/// use statefold::remote::nats::{async_nats, Source};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The consuming service's own database, with the shared tables.
/// let views = Store::<Door, Sqlite>::connect("sqlite://views.db").await?;
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let source = Source::new(&views, client, "DOORS", "door-counter");
/// source.run(&mut Count, std::future::pending()).await?;
/// # Ok(())
/// # }
/// ```
pub struct Source<M: Machine, B: Backend> {
    store: Store<M, B>,
    js: Context,
    stream: String,
    durable: String,
    filter: Option<String>,
    key: String,
    backoff: Backoff,
    lease_ttl: Duration,
    ack_wait: Duration,
    dead_letters: Option<String>,
}

impl<M: Machine, B: Backend> fmt::Debug for Source<M, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("machine", &M::DEF.name)
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, B: Backend> Source<M, B> {
    /// The durable consumer `durable` of the JetStream stream `stream`,
    /// handling into `store`'s database: every subject, [`Backoff::default`],
    /// a 30 s lease and acknowledgement wait, no dead letters.
    pub fn new(
        store: &Store<M, B>,
        client: async_nats::Client,
        stream: impl Into<String>,
        durable: impl Into<String>,
    ) -> Self {
        let (stream, durable) = (stream.into(), durable.into());
        Self {
            store: store.clone(),
            js: async_nats::jetstream::new(client),
            key: format!("nats:{stream}:{durable}"),
            stream,
            durable,
            filter: None,
            backoff: Backoff::default(),
            lease_ttl: Duration::from_secs(30),
            ack_wait: Duration::from_secs(30),
            dead_letters: None,
        }
    }

    /// Handles only the subjects matching `filter` (a shard, a state).
    #[must_use]
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Publishes messages that are not relayed events to `subject` (which
    /// a stream must take) and goes on, rather than stopping.
    #[must_use]
    pub fn dead_letter_subject(mut self, subject: impl Into<String>) -> Self {
        self.dead_letters = Some(subject.into());
        self
    }

    /// Waits between attempts at a failing event.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long the lease lasts unless renewed (every third of it).
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long JetStream waits for an acknowledgement before delivering
    /// a message again (a redelivery of a handled event is skipped).
    #[must_use]
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// The key of the cursor and lease: `nats:<stream>:<durable>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The saved cursor: every event up to it has been handled.
    ///
    /// # Errors
    /// [`Error::Store`] when the database fails or lacks the shared tables.
    pub async fn position(&self) -> Result<Position, Error> {
        Ok(Cursor::new(self.store.clone(), &self.key).load().await?)
    }

    /// Runs until `shutdown` completes: takes the lease, re-creates the
    /// durable consumer from its acknowledgement floor, and handles each
    /// message as it comes. On shutdown it finishes the event in hand and
    /// gives the lease up.
    ///
    /// # Errors
    /// [`Error::Malformed`] (without dead letters), [`Error::InvalidName`],
    /// and database errors that end a local consumer's run too. NATS being
    /// away, the stream missing, a failing handler or a database restart
    /// are logged and retried with backoff.
    pub async fn run<H: Handler<M, B>>(
        &self,
        handler: &mut H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        Driver::new(self, handler, false).drive(pin!(shutdown.fuse())).await.map(drop)
    }

    /// Handles messages until none is pending, then returns how many
    /// events it handled: for tests, tools and batch jobs.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn catch_up<H: Handler<M, B>>(&self, handler: &mut H) -> Result<u64, Error> {
        Driver::new(self, handler, true).drive(pin!(std::future::pending::<()>().fuse())).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Lease,
    Standby,
    /// Re-creates the durable consumer and reads the cursor.
    Setup,
    /// Handles the next message.
    Consume,
    Recover(u32),
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Leased,
    Held,
    Waited,
    Ready,
    Handled,
    Lost,
    Reached,
    Failed,
    Shutdown,
}

struct Run {
    state: State,
    failures: u32,
}

impl Run {
    fn on(&mut self, outcome: Outcome) {
        use Outcome as O;
        use State as S;
        if outcome == O::Handled {
            self.failures = 0;
        }
        self.state = match (self.state, outcome) {
            (_, O::Shutdown | O::Reached) => S::Stop,
            (_, O::Failed) => {
                self.failures += 1;
                S::Recover(self.failures)
            }
            (S::Lease, O::Leased) => S::Setup,
            (S::Lease, _) => S::Standby,
            (S::Standby | S::Recover(_), _) => S::Lease,
            (_, O::Lost) => S::Lease,
            (S::Setup | S::Consume, _) => S::Consume,
            (S::Stop, _) => S::Stop,
        };
    }
}

enum Failure {
    /// The database (or a fault injected before one of its trips).
    Store(crate::Error),
    /// NATS: the subscription starts again from the acknowledgement floor.
    Nats(String),
    /// The handler: retried on the same event.
    Handler(String),
    /// Ends the run.
    Fatal(Error),
}

impl From<crate::Error> for Failure {
    fn from(error: crate::Error) -> Self {
        Self::Store(error)
    }
}

type Shutdown<'s, F> = Pin<&'s mut Fuse<F>>;

struct Driver<'s, M: Machine, B: Backend, H> {
    source: &'s Source<M, B>,
    handler: &'s mut H,
    cursor: Cursor<M, B>,
    lease: Lease<B>,
    messages: Option<Messages>,
    position: Position,
    consumer_metrics: ConsumerMetrics,
    metrics: SourceMetrics,
    run: Run,
    leased_at: Option<Instant>,
    catch_up: bool,
    handled: u64,
}

impl<'s, M: Machine, B: Backend, H: Handler<M, B>> Driver<'s, M, B, H> {
    fn new(source: &'s Source<M, B>, handler: &'s mut H, catch_up: bool) -> Self {
        let store = source.store.clone();
        Self {
            cursor: Cursor::new(store.clone(), &source.key),
            lease: Lease::new(store.pool().clone(), M::DEF.name, M::DEF.events_table, &source.key),
            messages: None,
            position: Position::START,
            consumer_metrics: ConsumerMetrics::new(M::DEF.events_table, &source.key),
            metrics: SourceMetrics::new(&source.stream, &source.key),
            run: Run { state: State::Lease, failures: 0 },
            leased_at: None,
            catch_up,
            handled: 0,
            source,
            handler,
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
                    self.consumer_metrics.errors.increment(1);
                    let message = match failure {
                        Failure::Store(error) => error.to_string(),
                        Failure::Nats(message) | Failure::Handler(message) => message,
                        Failure::Fatal(_) => String::new(),
                    };
                    tracing::warn!(source = %self.source.key, error = %message, "JetStream source failed; retrying");
                    // Messages delivered to this run come again from the floor.
                    self.messages = None;
                    Outcome::Failed
                }
            };
            self.run.on(outcome);
        };
        self.messages = None;
        if self.leased_at.is_some() {
            if let Err(error) = self.lease.release().await {
                tracing::warn!(source = %self.source.key, %error, "lease not given up; it will expire");
            }
        }
        result.map(|()| self.handled)
    }

    async fn step<F: Future<Output = ()> + Send>(
        &mut self,
        state: State,
        shutdown: Shutdown<'_, F>,
    ) -> Result<Outcome, Failure> {
        match state {
            State::Lease => self.take_lease().await,
            State::Standby => Ok(wait(shutdown, tokio::time::sleep(self.source.lease_ttl / 3)).await),
            State::Setup => self.setup().await,
            State::Consume => self.consume(shutdown).await,
            State::Recover(failures) => {
                Ok(wait(shutdown, tokio::time::sleep(self.source.backoff.delay(failures))).await)
            }
            State::Stop => Ok(Outcome::Shutdown),
        }
    }

    fn tempt(&self) -> Result<(), Failure> {
        self.source.store.strike(FaultPoint::BeforeConsumerQuery).map_or(Ok(()), |e| Err(Failure::Store(e)))
    }

    async fn take_lease(&mut self) -> Result<Outcome, Failure> {
        self.tempt()?;
        let asked = Instant::now();
        if self.lease.take(self.source.lease_ttl).await? {
            self.leased_at = Some(asked);
            Ok(Outcome::Leased)
        } else {
            if self.leased_at.take().is_some() {
                tracing::warn!(source = %self.source.key, "lease lost to another run; waiting to take it back");
            }
            Ok(Outcome::Held)
        }
    }

    /// Re-creates the durable consumer at its acknowledgement floor (what
    /// is at or below it is handled), so that nothing delivered to an
    /// earlier run comes after a later message; reads the cursor.
    async fn setup(&mut self) -> Result<Outcome, Failure> {
        let source = self.source;
        if let Some(filter) = &source.filter {
            if !super::valid_subject(&filter.replace(['*', '>'], "x")) {
                return Err(Failure::Fatal(Error::InvalidName { what: "subject filter", value: filter.clone() }));
            }
        }
        self.messages = None;
        self.tempt()?;
        self.position = self.cursor.load().await?;
        let stream = source
            .js
            .get_stream(&source.stream)
            .await
            .map_err(|e| Failure::Nats(format!("stream `{}` (is its relay running?): {e}", source.stream)))?;
        let floor = match stream.consumer_info(&source.durable).await {
            Ok(info) => {
                let floor = info.ack_floor.stream_sequence;
                stream
                    .delete_consumer(&source.durable)
                    .await
                    .map_err(|e| Failure::Nats(format!("re-creating the consumer: {e}")))?;
                floor
            }
            Err(error) if error.to_string().contains("10014") || error.to_string().contains("consumer not found") => 0,
            Err(error) => return Err(Failure::Nats(format!("reading the consumer: {error}"))),
        };
        let config = Config {
            durable_name: Some(source.durable.clone()),
            filter_subject: source.filter.clone().unwrap_or_default(),
            deliver_policy: match floor {
                0 => DeliverPolicy::All,
                floor => DeliverPolicy::ByStartSequence { start_sequence: floor + 1 },
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: source.ack_wait,
            max_deliver: -1,
            ..Config::default()
        };
        let consumer =
            stream.create_consumer(config).await.map_err(|e| Failure::Nats(format!("creating the consumer: {e}")))?;
        if self.catch_up {
            let mut consumer = consumer.clone();
            let info = consumer.info().await.map_err(|e| Failure::Nats(format!("reading the consumer: {e}")))?;
            if info.num_pending == 0 {
                return Ok(Outcome::Reached);
            }
        }
        let messages = consumer.messages().await.map_err(|e| Failure::Nats(format!("pulling messages: {e}")))?;
        self.messages = Some(messages);
        Ok(Outcome::Ready)
    }

    async fn consume<F: Future<Output = ()> + Send>(
        &mut self,
        mut shutdown: Shutdown<'_, F>,
    ) -> Result<Outcome, Failure> {
        let ttl = self.source.lease_ttl;
        if self.leased_at.is_none_or(|at| at.elapsed() >= ttl / 3) {
            self.tempt()?;
            let asked = Instant::now();
            if !self.lease.take(ttl).await? {
                self.leased_at = None;
                self.messages = None;
                tracing::warn!(source = %self.source.key, "lease lost to another run; waiting to take it back");
                return Ok(Outcome::Lost);
            }
            self.leased_at = Some(asked);
        }
        let messages = self.messages.as_mut().ok_or_else(|| Failure::Nats("no subscription".into()))?;
        let message = tokio::select! {
            () = &mut shutdown => return Ok(Outcome::Shutdown),
            () = tokio::time::sleep(ttl / 3) => return Ok(Outcome::Waited),
            message = messages.next() => message,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => return Err(Failure::Nats(format!("pulling messages: {error}"))),
            None => return Err(Failure::Nats("the subscription ended".into())),
        };
        let (sequence, delivered, pending) = {
            let info =
                message.info().map_err(|e| Failure::Nats(format!("a message without JetStream metadata: {e}")))?;
            (info.stream_sequence, info.delivered, info.pending)
        };
        if delivered > 1 {
            self.metrics.redeliveries.increment(1);
        }
        self.metrics.pending.set(pending as f64);
        match wire::decode::<M>(message.headers.as_ref(), &message.payload) {
            Err(reason) => self.reject(&message, sequence, reason).await?,
            Ok(envelope) if envelope.position <= self.position => {
                tracing::debug!(source = %self.source.key, position = %envelope.position, sequence, "at or below the cursor; skipped");
                ack(&message).await;
            }
            Ok(envelope) => {
                if !self.handle(&envelope, sequence, shutdown).await? {
                    return Ok(Outcome::Shutdown);
                }
                ack(&message).await;
            }
        }
        Ok(if self.catch_up && pending == 0 { Outcome::Reached } else { Outcome::Handled })
    }

    /// A message that is not an event: dead-lettered, or the end of the run.
    async fn reject(&mut self, message: &Message, sequence: u64, reason: String) -> Result<(), Failure> {
        let source = self.source;
        let Some(subject) = &source.dead_letters else {
            return Err(Failure::Fatal(Error::Malformed {
                stream: source.stream.clone(),
                sequence,
                machine: M::DEF.name,
                reason,
            }));
        };
        tracing::error!(source = %source.key, sequence, %reason, dead_letters = %subject, "not a relayed event; dead letter");
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(DEAD_LETTER_ERROR, reason.as_str());
        headers.insert(DEAD_LETTER_SEQUENCE, sequence.to_string().as_str());
        headers.insert("Nats-Msg-Id", format!("dead:{}:{sequence}", source.stream).as_str());
        let published = source
            .js
            .publish_with_headers(subject.clone(), headers, message.payload.clone())
            .await
            .map_err(|e| Failure::Nats(format!("dead-lettering sequence {sequence}: {e}")))?;
        published.await.map_err(|e| Failure::Nats(format!("dead-lettering sequence {sequence}: {e}")))?;
        self.consumer_metrics.dead_letters.increment(1);
        ack(message).await;
        Ok(())
    }

    /// Handles one event until it commits; `false` when asked to stop first.
    async fn handle<F: Future<Output = ()> + Send>(
        &mut self,
        envelope: &Envelope<M>,
        sequence: u64,
        mut shutdown: Shutdown<'_, F>,
    ) -> Result<bool, Failure> {
        let mut failures = 0;
        loop {
            let span = tracing::info_span!(
                "statefold.jetstream.handle",
                source = %self.source.key,
                position = %envelope.position,
                sequence,
                attempt = failures + 1,
            );
            match self.attempt(envelope).instrument(span.clone()).await {
                Ok(true) => {
                    self.position = envelope.position;
                    self.consumer_metrics.events.increment(1);
                    self.handled += 1;
                    return Ok(true);
                }
                // Another run moved the cursor: this one lost its lease.
                Ok(false) => return Err(Failure::Nats("the cursor moved under this run".into())),
                Err(Failure::Store(error)) if ends_run(&error) => return Err(Failure::Store(error)),
                Err(Failure::Store(error)) => {
                    tracing::warn!(parent: &span, %error, "handling failed; retrying");
                }
                Err(Failure::Handler(message)) => {
                    tracing::warn!(parent: &span, error = %message, "handler failed; retrying");
                }
                Err(fatal) => return Err(fatal),
            }
            self.consumer_metrics.errors.increment(1);
            failures += 1;
            tokio::select! {
                () = &mut shutdown => return Ok(false),
                () = tokio::time::sleep(self.source.backoff.delay(failures)) => {}
            }
        }
    }

    /// The handler and the cursor in one transaction.
    async fn attempt(&mut self, envelope: &Envelope<M>) -> Result<bool, Failure> {
        let store = &self.source.store;
        let mut tx = store.begin().await?;
        if let Err(error) = self.handler.handle(&mut tx, envelope).await {
            let _ = tx.rollback().await;
            return Err(Failure::Handler(error.to_string()));
        }
        if let Some(fault) = store.strike(FaultPoint::BeforeCursorSave) {
            let _ = tx.rollback().await;
            return Err(Failure::Store(fault));
        }
        if !self.cursor.advance(&mut tx, envelope.position).await? {
            let _ = tx.rollback().await;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// Acknowledges a message; a lost acknowledgement only means a redelivery,
/// which the cursor skips.
async fn ack(message: &Message) {
    if let Err(error) = message.ack().await {
        tracing::debug!(%error, "acknowledgement not sent; the message will be skipped when delivered again");
    }
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

    #[test]
    fn a_source_sets_up_after_each_lease_and_failure() {
        use Outcome as O;
        use State as S;
        let mut run = Run { state: S::Lease, failures: 0 };
        let states: Vec<State> = [O::Leased, O::Ready, O::Handled, O::Failed, O::Waited, O::Leased, O::Lost, O::Held]
            .into_iter()
            .map(|outcome| {
                run.on(outcome);
                run.state
            })
            .collect();
        assert_eq!(states, [S::Setup, S::Consume, S::Consume, S::Recover(1), S::Lease, S::Setup, S::Lease, S::Standby]);
    }
}
