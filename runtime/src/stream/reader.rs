//! The reader under every stream and consumer: batched reads from a
//! position through the backend's [`Log`] (which never hands out an event
//! before one that may still commit), waiting for the next commit, and
//! saying so when it waits behind a transaction that does not end.

use super::metrics;
use super::position::{Position, Start};
use super::StreamOptions;
use crate::backend::log::{Blocker, Ctx, Log};
use crate::backend::{Backend, DbRow, WakeUps};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::Machine;
use crate::store::Store;
use crate::value::Value;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Reads a machine's events in position order, a batch at a time, never
/// past an event whose transaction may still commit.
pub(crate) struct Reader<M: Machine, B: Backend> {
    store: Store<M, B>,
    log: Arc<B::Log>,
    gaps: <B::Log as Log<B>>::Gaps,
    options: StreamOptions,
    /// The last position handed out.
    cursor: Position,
    /// An error found after the events already handed out, reported next.
    pending: Option<Error>,
    wake: Wake,
    stall: Stall,
    /// The read of the batch after a full one, started before it is asked
    /// for, so that the database works while the caller decodes and
    /// handles: the raw rows after the position it starts from.
    ahead: Option<ReadAhead<B>>,
}

/// A batch being read in the background.
struct ReadAhead<B: Backend> {
    after: Position,
    rows: tokio::task::JoinHandle<Result<Vec<DbRow<B>>, sqlx::Error>>,
}

impl<B: Backend> Drop for ReadAhead<B> {
    /// A read ahead nobody will use is not worth finishing.
    fn drop(&mut self) {
        self.rows.abort();
    }
}

impl<M: Machine, B: Backend> Reader<M, B> {
    /// A reader from `start`, whose metrics and warnings name `consumer`
    /// (empty for a plain stream); resolving [`Start::Head`] reads the database.
    pub(crate) async fn open(
        store: Store<M, B>,
        options: StreamOptions,
        start: Start,
        consumer: &str,
    ) -> Result<Self, Error> {
        let log = Arc::new(B::Log::new(M::DEF));
        let gaps = log.gaps();
        let wake = Wake::new(&store, &options).await?;
        let stall = Stall::new(M::DEF.events_table, consumer);
        let mut reader =
            Self { store, log, gaps, options, cursor: Position::START, pending: None, wake, stall, ahead: None };
        let ctx = reader.ctx();
        reader.log.check_start(&ctx, start == Start::Head).await?;
        reader.cursor = match start {
            Start::Beginning => Position::START,
            Start::After(position) => {
                reader.check(position)?;
                position
            }
            Start::Head => reader.head().await?,
        };
        Ok(reader)
    }

    fn ctx(&self) -> Ctx<'_, B> {
        Ctx {
            pool: self.store.pool(),
            machine: M::DEF.name,
            gap_retry: self.options.gap_retry,
            gap_grace: self.options.gap_grace,
        }
    }

    /// Refuses a position of another backend's form.
    pub(crate) fn check(&self, position: Position) -> Result<(), Error> {
        <B::Log as Log<B>>::check(position).map_err(|reason| Error::InvalidPosition {
            machine: M::DEF.name,
            backend: B::NAME,
            reason,
        })
    }

    /// The last position handed out.
    pub(crate) fn cursor(&self) -> Position {
        self.cursor
    }

    /// Continues after `position` (a cursor read back from the database).
    pub(crate) fn seek(&mut self, position: Position) {
        self.cursor = position;
        self.pending = None;
        self.stall.clear();
        self.ahead = None;
        self.gaps = self.log.gaps();
    }

    /// A position after which a stream misses nothing committed once this
    /// returns ([`Position::START`] for an empty log).
    pub(crate) async fn head(&mut self) -> Result<Position, Error> {
        let ctx = Ctx {
            pool: self.store.pool(),
            machine: M::DEF.name,
            gap_retry: self.options.gap_retry,
            gap_grace: self.options.gap_grace,
        };
        self.log.head(&mut self.gaps, &ctx).await
    }

    /// The last committed event's position and time, even if a stream
    /// cannot hand it out yet: where the log ends now, for lag and rebuilds.
    pub(crate) async fn end(&mut self) -> Result<Option<(Position, DateTime<Utc>)>, Error> {
        self.log.end(&self.ctx()).await
    }

    /// The time of the first committed event after `after`.
    pub(crate) async fn first_after(&mut self, after: Position) -> Result<Option<DateTime<Utc>>, Error> {
        self.log.first_after(&self.ctx(), after).await
    }

    /// How many events follow `after`, up to the present end of the log.
    pub(crate) async fn count_after(&mut self, after: Position) -> Result<u64, Error> {
        self.log.count_after(&self.ctx(), after).await
    }

    /// The next events after the cursor, at most one batch; empty when none
    /// can be handed out yet. Moves the cursor past them.
    ///
    /// # Errors
    /// An event that cannot be decoded ([`Error::Decode`], naming its
    /// position) is reported after the events before it, and again on every
    /// later call: the reader never skips it.
    pub(crate) async fn fetch(&mut self) -> Result<Vec<Envelope<M>>, Error> {
        if let Some(error) = &self.pending {
            return Err(clone_decode(error));
        }
        let rows = self.read().await?;
        let mut events = Vec::with_capacity(rows.len());
        for values in rows {
            match self.store.event(values) {
                Ok(envelope) => {
                    self.cursor = envelope.position;
                    events.push(envelope);
                }
                Err(error) => {
                    if events.is_empty() {
                        self.pending = Some(clone_decode(&error));
                        return Err(error);
                    }
                    self.pending = Some(error);
                    break;
                }
            }
        }
        if !events.is_empty() && !self.stall.held_back {
            self.stall.clear();
        }
        Ok(events)
    }

    /// Waits for a reason to look again: a commit in this process, a
    /// notification from another, the next look at events held back (which
    /// backs off towards the poll interval while they stay held), or the
    /// poll interval; at most `max`.
    pub(crate) async fn wait(&mut self, max: Duration) {
        let pause = if self.stall.held_back { self.stall.retry(&self.options) } else { self.options.poll_interval };
        self.wake.wait(pause.min(max)).await;
    }

    async fn read(&mut self) -> Result<Vec<Vec<Value>>, Error> {
        // The rows are read into values here, not in the read ahead's task:
        // the database answers the next read meanwhile.
        let rows = match self.ahead.take() {
            Some(mut ahead) if ahead.after == self.cursor => match (&mut ahead.rows).await {
                Ok(rows) => rows.map_err(|e| self.store.failure(e, None))?,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(join) => return Err(Error::Database(sqlx::Error::Protocol(format!("read-ahead failed: {join}")))),
            },
            _ => {
                // Commits before this point need no wake-up: the query sees them.
                self.wake.mark_seen();
                let mut conn = self.store.pool().acquire().await?;
                let batch = self.options.batch_size;
                self.log.read(&mut conn, self.cursor, batch).await.map_err(|e| self.store.failure(e, None))?
            }
        };
        if rows.len() >= self.options.batch_size as usize {
            self.read_ahead(&rows)?;
        }
        // The driver's rows go as soon as they are read: two batches at most.
        let rows = B::read_rows(&{ rows }, self.log.types()).map_err(|e| self.store.failure(e, None))?;
        let ctx = Ctx {
            pool: self.store.pool(),
            machine: M::DEF.name,
            gap_retry: self.options.gap_retry,
            gap_grace: self.options.gap_grace,
        };
        let settled = self.log.settle(&mut self.gaps, &ctx, self.cursor, rows).await?;
        if settled.held_back {
            self.stall.hold();
            self.report_stall().await;
        } else {
            self.stall.held_back = false;
        }
        Ok(settled.rows)
    }

    /// Starts reading the batch after `rows`, a full batch: more is likely
    /// to follow. Wasted (and dropped) if the caller does not go on from
    /// the last of `rows` (a hole, an undecodable event, a seek).
    fn read_ahead(&mut self, rows: &[DbRow<B>]) -> Result<(), Error> {
        let Some(last) = rows.last() else { return Ok(()) };
        let last =
            B::read_rows(std::slice::from_ref(last), self.log.types()).map_err(|e| self.store.failure(e, None))?;
        let Some(after) = last.first().map(|row| <B::Log as Log<B>>::position(row)) else { return Ok(()) };
        if !<B::Log as Log<B>>::can_read_ahead(self.cursor, rows.len(), after) {
            return Ok(());
        }
        self.wake.mark_seen();
        let (pool, log, batch) = (self.store.pool().clone(), Arc::clone(&self.log), self.options.batch_size);
        let rows = tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            log.read(&mut conn, after, batch).await
        });
        self.ahead = Some(ReadAhead { after, rows });
        Ok(())
    }

    /// While events are held back: the stall gauge, and now and then a
    /// warning naming the transactions they wait behind.
    async fn report_stall(&mut self) {
        let Some(stalled) = self.stall.since.map(|since| since.elapsed()) else { return };
        self.stall.gauge.set(stalled.as_secs_f64());
        if !self.stall.warning_due(&self.options, stalled) {
            return;
        }
        let blockers = match self.log.blockers(&self.ctx()).await {
            Ok(blockers) if blockers.is_empty() => "no running transaction found (it may have just ended)".to_owned(),
            Ok(blockers) => blockers.iter().map(Blocker::to_string).collect::<Vec<_>>().join("; "),
            Err(error) => format!("could not be looked up: {error}"),
        };
        tracing::warn!(
            stream = M::DEF.events_table,
            consumer = %self.stall.consumer,
            stalled_for = ?stalled,
            position = %self.cursor,
            blockers = %blockers,
            "stream stalled: committed events wait behind a transaction that is still running; \
             end it (commit or roll back) to let the stream go on"
        );
    }
}

/// How long, and behind what, a reader has waited on events held back by a
/// transaction still running (a MySQL hole, the PostgreSQL fence).
struct Stall {
    /// Whether the last read held events back.
    held_back: bool,
    /// Since when events have been held back, until some are handed out.
    since: Option<Instant>,
    /// Looks again at held-back events so far in this stall.
    retries: u32,
    /// When the last warning was given.
    warned: Option<Instant>,
    consumer: String,
    stream: &'static str,
    gauge: ::metrics::Gauge,
}

impl Stall {
    fn new(stream: &'static str, consumer: &str) -> Self {
        Self {
            held_back: false,
            since: None,
            retries: 0,
            warned: None,
            consumer: consumer.to_owned(),
            stream,
            gauge: metrics::stalled(stream, consumer),
        }
    }

    fn hold(&mut self) {
        self.held_back = true;
        self.since.get_or_insert_with(Instant::now);
    }

    /// Events were handed out: the stall, if any, is over.
    fn clear(&mut self) {
        if let Some(since) = self.since.take() {
            metrics::gap_waited(self.stream, since.elapsed());
            self.gauge.set(0.0);
        }
        self.held_back = false;
        self.retries = 0;
        self.warned = None;
    }

    /// The wait before looking again at held-back events: the gap retry,
    /// doubling with each look in a stall, up to the poll interval.
    fn retry(&mut self, options: &StreamOptions) -> Duration {
        let wait = options.gap_retry.saturating_mul(1 << self.retries.min(16)).min(options.poll_interval);
        self.retries = self.retries.saturating_add(1);
        wait
    }

    /// Whether to warn now: once the stall lasts the warning threshold, then
    /// at most once per that long again.
    fn warning_due(&mut self, options: &StreamOptions, stalled: Duration) -> bool {
        let due =
            stalled >= options.stall_warning && self.warned.is_none_or(|at| at.elapsed() >= options.stall_warning);
        if due {
            self.warned = Some(Instant::now());
        }
        due
    }
}

/// The same decode error again (the reader reports it on every call).
fn clone_decode(error: &Error) -> Error {
    match error {
        Error::Decode { machine, position, id, message } => {
            Error::Decode { machine, position: *position, id: id.clone(), message: message.clone() }
        }
        Error::CorruptRow { machine, id, message } => {
            Error::CorruptRow { machine, id: id.clone(), message: message.clone() }
        }
        Error::NewerEvent { machine, position, id, state, version, current } => Error::NewerEvent {
            machine,
            position: *position,
            id: id.clone(),
            state,
            version: *version,
            current: *current,
        },
        other => Error::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// Why a waiting reader looks again.
struct Wake {
    commits: watch::Receiver<u64>,
    remote: Option<WakeUps>,
}

impl Wake {
    async fn new<M: Machine, B: Backend>(store: &Store<M, B>, options: &StreamOptions) -> Result<Self, Error> {
        let remote = if options.listen {
            B::listen(store.pool(), &super::channel(M::DEF)).await.map_err(|e| store.failure(e, None))?
        } else {
            None
        };
        Ok(Self { commits: store.notifier().subscribe(), remote })
    }

    /// Commits before this call need no wake-up: the read after it sees them.
    fn mark_seen(&mut self) {
        self.commits.borrow_and_update();
    }

    async fn wait(&mut self, pause: Duration) {
        let Self { commits, remote } = self;
        let remote = async {
            match remote {
                Some(wake_ups) => {
                    if wake_ups.next().await.is_none() {
                        *remote = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The notifier lives as long as the process: no error to expect.
            _ = commits.changed() => {}
            () = remote => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
