//! The outbox dispatcher: sends what committed runs put in the outbox,
//! at least once, in order per key, with backoff and dead letters, one
//! active dispatcher per outbox across processes (a lease).

use super::decide::{self, Batch, Verdict};
use super::destination::{AnyDestination, Delivery, Destination, SendError};
use super::outgoing::Outgoing;
use super::sql::{Sql, OUTBOX_READ};
use crate::backend::render::OUTBOX;
use crate::backend::Backend;
use crate::error::Error;
use crate::fate::{Fate, FaultPoint};
use crate::schema::LogicalType;
use crate::store::Notifier;
use crate::stream::consumer::lease::Lease;
use crate::stream::Backoff;
use crate::value::Value;
use chrono::{DateTime, Utc};
use sqlx::Pool;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Delivers the outbox: every message and request that a committed
/// [`Runner`](super::Runner) run put there, **at least once**, with a
/// stable message id (the same on every attempt), in commit order per key.
///
/// - Messages go to the destination given by [`messages`](Self::messages),
///   requests to the one given by [`requests`](Self::requests) (e.g.
///   [`Http`](super::Http), feature `http`); a kind without a destination
///   waits in the outbox.
/// - A failed send is retried after [`backoff`](Self::backoff); the key's
///   later messages wait behind it, other keys go on. After
///   [`max_attempts`](Self::max_attempts) (10 by default), or at once for a
///   permanent failure (an HTTP `4xx`), the row becomes a **dead letter**
///   ([`dead_letters`](Self::dead_letters), [`requeue`](Self::requeue)).
/// - One dispatcher per outbox runs at a time, across processes: a lease in
///   `statefold_leases` on the database's clock; the others wait and take
///   over when it expires ([`lease_ttl`](Self::lease_ttl)).
/// - It wakes up after each commit of a runner in the process, and polls
///   ([`poll_interval`](Self::poll_interval)) for the others.
///
/// Reports `statefold_outbox_sent_total`, `statefold_outbox_retries_total`,
/// `statefold_outbox_dead_letters_total` and
/// `statefold_outbox_commit_to_send_seconds` (label `kind`) through
/// `metrics`, and a `tracing` warning per failed attempt.
///
/// ```
/// use statefold::effects::{Channel, Dispatcher, Effects, Message, Runner};
/// use statefold::{Backend, Sqlite};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefold::Error> {
/// # let pool = Sqlite::connect("sqlite::memory:").await?;
/// # for sql in Sqlite::support_tables_sql() { sqlx::query(&sql).execute(&pool).await?; }
/// let runner = Runner::<Sqlite>::new(pool.clone());
/// runner.run("greet-ada", &Effects::new().message(Message::new("greetings", "ada", &"hello"))).await?;
///
/// let (channel, mut deliveries) = Channel::new();
/// let dispatcher = Dispatcher::<Sqlite>::new(pool).messages(channel);
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(async move { dispatcher.run(async { drop(stopped.await) }).await });
///
/// let delivery = deliveries.recv().await.expect("delivered");
/// assert_eq!(delivery.attempt, 1);
/// drop(stop);
/// running.await.expect("no panic")?;
/// # Ok(())
/// # }
/// ```
pub struct Dispatcher<B: Backend> {
    pool: Pool<B::Db>,
    sql: Arc<Sql>,
    messages: Option<Arc<dyn AnyDestination>>,
    requests: Option<Arc<dyn AnyDestination>>,
    batch_size: u32,
    poll_interval: Duration,
    backoff: Backoff,
    max_attempts: u32,
    lease_ttl: Duration,
    fate: Option<Arc<Fate>>,
    notifier: Notifier,
}

impl<B: Backend> fmt::Debug for Dispatcher<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("backend", &B::NAME)
            .field("messages", &self.messages.is_some())
            .field("requests", &self.requests.is_some())
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// A message or request the dispatcher gave up on, kept in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The outbox row (for [`Dispatcher::requeue`]).
    pub row: i64,
    /// The message id.
    pub id: String,
    /// What was to be sent.
    pub outgoing: Outgoing,
    /// The attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When its run committed.
    pub created_at: DateTime<Utc>,
}

/// What one batch did.
#[derive(Debug, Default)]
struct Pass {
    /// The batch was full: more may be waiting.
    full: bool,
    /// How long until a held row is due.
    wait: Option<Duration>,
}

/// The types of a pending row as read: [`OUTBOX_READ`], then the clock.
const PENDING_TYPES: [LogicalType; 9] = [
    LogicalType::I64,
    LogicalType::Text,
    LogicalType::Text,
    LogicalType::Text,
    LogicalType::Json,
    LogicalType::I64,
    LogicalType::I64,
    LogicalType::Timestamp,
    LogicalType::I64,
];

impl<B: Backend> Dispatcher<B> {
    /// A dispatcher of the outbox in `pool`'s database, with no destinations yet.
    pub fn new(pool: Pool<B::Db>) -> Self {
        debug_assert_eq!(OUTBOX_READ.len() + 1, PENDING_TYPES.len());
        Self {
            pool,
            sql: Arc::new(Sql::new::<B>()),
            messages: None,
            requests: None,
            batch_size: 100,
            poll_interval: Duration::from_millis(500),
            backoff: Backoff::default(),
            max_attempts: 10,
            lease_ttl: Duration::from_secs(10),
            fate: None,
            notifier: Notifier::named(OUTBOX),
        }
    }

    /// Sends messages to `destination`.
    #[must_use]
    pub fn messages(mut self, destination: impl Destination) -> Self {
        self.messages = Some(Arc::new(destination));
        self
    }

    /// Sends requests to `destination`.
    #[must_use]
    pub fn requests(mut self, destination: impl Destination) -> Self {
        self.requests = Some(Arc::new(destination));
        self
    }

    /// Reads at most `n` rows at a time (100 by default).
    #[must_use]
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Looks at the outbox at least this often (500 ms by default), for
    /// rows committed by other processes.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Waits between attempts at one row, and after a database error.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Dead-letters a row after `n` failed attempts (10 by default; at least 1).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// How long the lease lasts unless renewed (10 s by default): another
    /// process's dispatcher takes over this long after this one stops.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Injects faults before and after each send ([`FaultPoint::BeforeSend`],
    /// [`FaultPoint::AfterSend`]; tests only, usually).
    #[must_use]
    pub fn with_fate(mut self, fate: Fate) -> Self {
        self.fate = Some(Arc::new(fate));
        self
    }

    /// The fault injector, if any: how many faults it injected.
    pub fn fate(&self) -> Option<&Fate> {
        self.fate.as_deref()
    }

    /// Dispatches until `shutdown` completes, then gives up the lease.
    ///
    /// Database errors are logged and retried with backoff; only a missing
    /// table ends the run.
    ///
    /// # Errors
    /// [`Error::MissingTable`]: create the support tables first.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let lease = Lease::<B>::new(self.pool.clone(), "outbox", OUTBOX, "dispatcher");
        let mut wake = self.notifier.subscribe();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0u32;
        let result = loop {
            wake.borrow_and_update();
            let pause = match lease.take(self.lease_ttl).await {
                Ok(true) => match self.pass(&lease).await {
                    Ok(pass) => {
                        failures = 0;
                        if pass.full {
                            continue;
                        }
                        pass.wait.map_or(self.poll_interval, |wait| wait.min(self.poll_interval))
                    }
                    Err(error @ Error::MissingTable { .. }) => break Err(error),
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(%error, failures, "outbox dispatcher: database error, retrying");
                        self.backoff.delay(failures)
                    }
                },
                Ok(false) => {
                    tracing::debug!("outbox dispatcher: another process holds the outbox's lease; waiting");
                    self.lease_ttl / 3
                }
                Err(error @ Error::MissingTable { .. }) => break Err(error),
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "outbox dispatcher: cannot take its lease, retrying");
                    self.backoff.delay(failures)
                }
            };
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                _ = wake.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
        };
        if let Err(error) = lease.release().await {
            tracing::warn!(%error, "outbox dispatcher: could not give up its lease; it expires by itself");
        }
        result
    }

    /// The rows given up on, oldest first.
    ///
    /// # Errors
    /// [`Error::Database`], [`Error::CorruptEffect`] for a row that does not decode.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, Error> {
        let mut conn = self.pool.acquire().await?;
        let types = [
            LogicalType::I64,
            LogicalType::Text,
            LogicalType::Json,
            LogicalType::I64,
            LogicalType::Text,
            LogicalType::Timestamp,
        ];
        let rows = B::fetch_all(&mut conn, &self.sql.dead_letters, &[], &types).await.map_err(fail::<B>)?;
        rows.into_iter()
            .map(|row| match <[Value; 6]>::try_from(row) {
                Ok([Value::I64(row), Value::Text(id), Value::Json(body), Value::I64(attempts), error, Value::Timestamp(at)]) => {
                    Ok(DeadLetter {
                        row,
                        id,
                        outgoing: decode(row, body)?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        error: match error {
                            Value::Text(error) => error,
                            _ => String::new(),
                        },
                        created_at: at,
                    })
                }
                _ => Err(Error::CorruptEffect { what: "a dead letter".to_owned(), message: "unexpected columns".to_owned() }),
            })
            .collect()
    }

    /// Puts dead letter `row` back in line, with its attempts reset; `false`
    /// when there is no such dead letter.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn requeue(&self, row: i64) -> Result<bool, Error> {
        let mut conn = self.pool.acquire().await?;
        let id = Value::I64(row);
        let n = B::execute_with(&mut conn, &self.sql.requeue, &[(&id, LogicalType::I64)]).await.map_err(fail::<B>)?;
        if n > 0 {
            self.notifier.wake();
        }
        Ok(n > 0)
    }

    /// How many rows wait to be sent (dead letters not included).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn pending(&self) -> Result<u64, Error> {
        let mut conn = self.pool.acquire().await?;
        let rows =
            B::fetch_all(&mut conn, &self.sql.count_pending, &[], &[LogicalType::I64]).await.map_err(fail::<B>)?;
        Ok(crate::backend::log::count(&rows))
    }

    /// Reads a batch of pending rows and sends those that may go now,
    /// renewing the lease while it sends (slow receivers can make a batch
    /// outlast it); stops early if another process took it meanwhile.
    async fn pass(&self, lease: &Lease<B>) -> Result<Pass, Error> {
        let kinds = match (&self.messages, &self.requests) {
            (Some(_), Some(_)) => ["message", "request"],
            (Some(_), None) => ["message", "message"],
            (None, Some(_)) => ["request", "request"],
            (None, None) => return Ok(Pass::default()),
        };
        let (k1, k2) = (Value::Text(kinds[0].to_owned()), Value::Text(kinds[1].to_owned()));
        let limit = Value::I64(i64::from(self.batch_size));
        let binds = [(&k1, LogicalType::Text), (&k2, LogicalType::Text), (&limit, LogicalType::I64)];
        let rows = {
            let mut conn = self.pool.acquire().await?;
            B::fetch_all(&mut conn, &self.sql.pending, &binds, &PENDING_TYPES).await.map_err(fail::<B>)?
        };
        let full = rows.len() >= self.batch_size as usize;
        let mut batch = Batch::default();
        let mut now = 0;
        let mut sent = Vec::new();
        let mut renewed = Instant::now();
        for row in rows {
            if renewed.elapsed() > self.lease_ttl / 3 {
                if !lease.take(self.lease_ttl).await? {
                    tracing::warn!("outbox dispatcher: lost its lease during a batch (sends outlasted it); stopping");
                    break;
                }
                renewed = Instant::now();
            }
            let Ok(
                [Value::I64(row), Value::Text(id), Value::Text(kind), Value::Text(key), body, Value::I64(attempts), Value::I64(due), Value::Timestamp(created), Value::I64(clock)],
            ) = <[Value; 9]>::try_from(row)
            else {
                return Err(Error::CorruptEffect {
                    what: "an outbox row".to_owned(),
                    message: "unexpected columns".to_owned(),
                });
            };
            now = clock;
            if !batch.admit(&key, due, now) {
                continue;
            }
            let attempt = u32::try_from(attempts).unwrap_or(u32::MAX - 1).saturating_add(1);
            let outgoing = match body {
                Value::Json(body) => decode(row, body),
                _ => Err(Error::CorruptEffect { what: format!("outbox row {row}"), message: "no body".to_owned() }),
            };
            let outgoing = match outgoing {
                Ok(outgoing) => outgoing,
                Err(error) => {
                    self.record(row, &kind, Verdict::Dead { attempts: attempt }, &error.to_string()).await?;
                    continue;
                }
            };
            let destination = match &outgoing {
                Outgoing::Message(_) => self.messages.as_ref(),
                Outgoing::Request(_) => self.requests.as_ref(),
            };
            let Some(destination) = destination else { continue };
            let delivery = Delivery { id, attempt, outgoing };
            let result = match self.strike(FaultPoint::BeforeSend) {
                Some(fault) => Err(SendError::retryable(fault.to_string())),
                None => destination.send_dyn(&delivery).await,
            };
            if result.is_ok() && self.strike(FaultPoint::AfterSend).is_some() {
                // As if the process died here: the row stays, and is sent again.
                batch.hold(&key, None);
                continue;
            }
            let verdict = decide::verdict(
                result.is_ok(),
                result.as_ref().err().is_none_or(SendError::is_retryable),
                attempt,
                self.max_attempts,
                &self.backoff,
            );
            match (&verdict, result) {
                (Verdict::Sent, _) => {
                    let latency = (Utc::now() - created).to_std().unwrap_or_default();
                    metrics::histogram!("statefold_outbox_commit_to_send_seconds", "kind" => kind.clone())
                        .record(latency.as_secs_f64());
                    metrics::counter!("statefold_outbox_sent_total", "kind" => kind).increment(1);
                    sent.push(Value::I64(row));
                }
                (Verdict::Retry { delay, .. }, Err(error)) => {
                    tracing::warn!(
                        message_id = %delivery.id, kind = %kind, key = %key, attempt, retry_in = ?delay, %error,
                        "outbox dispatcher: a send failed; it will be retried (the key's later messages wait)"
                    );
                    let due = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
                    batch.hold(&key, Some(due));
                    self.record(row, &kind, verdict, error.message()).await?;
                }
                (Verdict::Dead { .. }, Err(error)) => {
                    tracing::error!(
                        message_id = %delivery.id, kind = %kind, key = %key, attempt, %error,
                        "outbox dispatcher: gave up on a message: it is a dead letter (see Dispatcher::dead_letters)"
                    );
                    self.record(row, &kind, verdict, error.message()).await?;
                }
                (_, Ok(())) => {}
            }
        }
        if !sent.is_empty() {
            let mut conn = self.pool.acquire().await?;
            let binds: Vec<_> = sent.iter().map(|id| (id, LogicalType::I64)).collect();
            B::execute_with(&mut conn, &self.sql.delete::<B>(sent.len()), &binds).await.map_err(fail::<B>)?;
        }
        Ok(Pass { full, wait: batch.wait(now) })
    }

    /// Writes a failed attempt's verdict to its row.
    async fn record(&self, row: i64, kind: &str, verdict: Verdict, error: &str) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        let (id, error) = (Value::I64(row), Value::Text(error.to_owned()));
        match verdict {
            Verdict::Retry { attempts, delay } => {
                metrics::counter!("statefold_outbox_retries_total", "kind" => kind.to_owned()).increment(1);
                let (attempts, delay) = (
                    Value::I64(i64::from(attempts)),
                    Value::I64(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4)),
                );
                let binds = [
                    (&attempts, LogicalType::I64),
                    (&delay, LogicalType::I64),
                    (&error, LogicalType::Text),
                    (&id, LogicalType::I64),
                ];
                B::execute_with(&mut conn, &self.sql.retry, &binds).await.map_err(fail::<B>)?;
            }
            Verdict::Dead { attempts } => {
                metrics::counter!("statefold_outbox_dead_letters_total", "kind" => kind.to_owned()).increment(1);
                let attempts = Value::I64(i64::from(attempts));
                let binds = [(&attempts, LogicalType::I64), (&error, LogicalType::Text), (&id, LogicalType::I64)];
                B::execute_with(&mut conn, &self.sql.dead, &binds).await.map_err(fail::<B>)?;
            }
            Verdict::Sent => {}
        }
        Ok(())
    }

    fn strike(&self, point: FaultPoint) -> Option<Error> {
        self.fate.as_ref().and_then(|fate| fate.strike(point).err())
    }
}

fn decode(row: i64, body: serde_json::Value) -> Result<Outgoing, Error> {
    serde_json::from_value(body)
        .map_err(|e| Error::CorruptEffect { what: format!("outbox row {row}"), message: e.to_string() })
}

fn fail<B: Backend>(error: sqlx::Error) -> Error {
    crate::backend::failure::<B>(error, "outbox", None)
}
