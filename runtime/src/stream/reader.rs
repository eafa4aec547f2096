//! The reader under every stream and consumer: batched, gap-safe reads from
//! a position, and waiting for the next commit.

use super::metrics;
use super::position::{Envelope, Position, Start};
use super::sql::StreamSql;
use super::StreamOptions;
use crate::backend::{Backend, Bind, Conn, Failure, GapSafety, WakeUps};
use crate::error::Error;
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::store::{Store, StoredEvent};
use crate::value::Value;
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Reads a machine's events in position order, a batch at a time, never
/// past an event whose transaction may still commit.
pub(crate) struct Reader<M: Machine, B: Backend> {
    store: Store<M, B>,
    sql: Arc<StreamSql>,
    options: StreamOptions,
    /// The last position handed out.
    cursor: Position,
    /// An error found after the events already handed out, reported next.
    pending: Option<Error>,
    wake: Wake,
    /// When the reader started waiting on a hole or the fence, if it is.
    stalled: Option<Instant>,
    /// Whether to look again soon rather than wait for a commit: events are
    /// held back by a transaction that may end without waking anyone.
    retry_soon: bool,
    /// MySQL: `(largest id seen, when first seen)`, increasing. Every id
    /// below a seen id had been handed out by then.
    seen: VecDeque<(i64, Instant)>,
}

impl<M: Machine, B: Backend> Reader<M, B> {
    /// A reader from `start`; resolving [`Start::Head`] reads the database.
    pub(crate) async fn open(store: Store<M, B>, options: StreamOptions, start: Start) -> Result<Self, Error> {
        let sql = Arc::new(StreamSql::new::<B>(M::DEF));
        let wake = Wake::new(&store, &options).await?;
        let mut reader = Self {
            store,
            sql,
            options,
            cursor: Position::START,
            pending: None,
            wake,
            stalled: None,
            retry_soon: false,
            seen: VecDeque::new(),
        };
        reader.cursor = match start {
            Start::Beginning => Position::START,
            Start::After(position) => position,
            Start::Head => reader.head().await?,
        };
        Ok(reader)
    }

    /// The last position handed out.
    pub(crate) fn cursor(&self) -> Position {
        self.cursor
    }

    /// Continues after `position` (a cursor read back from the database).
    pub(crate) fn seek(&mut self, position: Position) {
        self.cursor = position;
        self.pending = None;
        self.stalled = None;
        self.seen.clear();
    }

    /// The last position readable now ([`Position::START`] for an empty log).
    // `&mut self`: the reader is `Send` but not `Sync` (its wake-up stream).
    pub(crate) async fn head(&mut self) -> Result<Position, Error> {
        let mut conn = self.store.pool().acquire().await?;
        let rows = B::fetch_all(&mut conn, &self.sql.head, &[], &[LogicalType::I64, LogicalType::I64])
            .await
            .map_err(|e| self.store.failure(e, None))?;
        Ok(rows.into_iter().next().map_or(Position::START, |row| match row.as_slice() {
            [Value::I64(tx), Value::I64(id)] => Position::new(*tx, *id),
            _ => Position::START,
        }))
    }

    /// How many events follow `after`, up to the present end of the log.
    pub(crate) async fn count_after(&mut self, after: Position) -> Result<u64, Error> {
        let mut conn = self.store.pool().acquire().await?;
        let (tx, id) = (Value::I64(after.tx()), Value::I64(after.id()));
        let binds = position_binds::<B>(&tx, &id);
        let rows = B::fetch_all(&mut conn, &self.sql.count_after, &binds, &[LogicalType::I64])
            .await
            .map_err(|e| self.store.failure(e, None))?;
        Ok(match rows.first().and_then(|row| row.first()) {
            Some(Value::I64(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        })
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
        self.wake.mark_seen();
        let rows = self.read().await?;
        let mut events = Vec::with_capacity(rows.len());
        for values in rows {
            match self.envelope(values) {
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
        match (events.is_empty(), self.stalled) {
            (false, Some(since)) if !self.retry_soon => {
                metrics::gap_waited(M::DEF.events_table, since.elapsed());
                self.stalled = None;
            }
            _ => {}
        }
        Ok(events)
    }

    /// Waits for a reason to look again: a commit in this process, a
    /// notification from another, the gap retry when events are held back,
    /// or the poll interval; at most `max`.
    pub(crate) async fn wait(&mut self, max: Duration) {
        let pause = if self.retry_soon { self.options.gap_retry } else { self.options.poll_interval };
        self.wake.wait(pause.min(max)).await;
    }

    async fn read(&mut self) -> Result<Vec<Vec<Value>>, Error> {
        self.retry_soon = false;
        let mut conn = self.store.pool().acquire().await?;
        let limit = Value::I64(i64::from(self.options.batch_size));
        let (tx, id) = (Value::I64(self.cursor.tx()), Value::I64(self.cursor.id()));
        let mut binds = position_binds::<B>(&tx, &id);
        binds.push((&limit, LogicalType::I64));
        let rows = B::fetch_all(&mut conn, &self.sql.read, &binds, &self.sql.types).await.map_err(|e| self.fail(e))?;
        match B::GAP_SAFETY {
            GapSafety::SingleWriter => Ok(rows),
            GapSafety::XidFence => {
                if rows.is_empty() {
                    let fenced = B::fetch_all(&mut conn, &self.sql.fenced, &binds[..2], &[LogicalType::Bool])
                        .await
                        .map_err(|e| self.fail(e))?;
                    if matches!(fenced.first().and_then(|r| r.first()), Some(Value::Bool(true))) {
                        self.stall();
                    }
                }
                Ok(rows)
            }
            GapSafety::LockProbe => self.fill_holes(&mut conn, rows).await,
        }
    }

    /// MySQL: keeps the events that follow the cursor without a hole. A hole
    /// is probed with a locking read, which waits for a transaction still
    /// inserting there and returns what it committed; ids that the probe
    /// does not find once the grace period has passed since they were first
    /// known to be handed out will never exist (rolled back), and are passed.
    async fn fill_holes(&mut self, conn: &mut Conn<B>, rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>, Error> {
        let Some(last) = rows.last().map(|row| row_id(row)) else { return Ok(rows) };
        if self.seen.back().is_none_or(|(max, _)| *max < last) {
            self.seen.push_back((last, Instant::now()));
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut expected = self.cursor.id() + 1;
        let mut rows = rows.into_iter().peekable();
        while let Some(next) = rows.peek().map(|row| row_id(row)) {
            if next == expected {
                out.extend(rows.next());
                expected += 1;
                continue;
            }
            // A hole: ids `expected..next` are missing, `next` is visible.
            self.stall();
            // A probe that timed out proves nothing: stop at the hole and look again.
            let Some(found) = self.probe(conn, expected, next).await? else {
                return Ok(self.held_back(out));
            };
            let passed = self.passed_before();
            let mut found = found.into_iter().peekable();
            while expected < next {
                if found.peek().map(|row| row_id(row)) == Some(expected) {
                    out.extend(found.next());
                } else if expected >= passed {
                    return Ok(self.held_back(out));
                }
                expected += 1;
            }
        }
        self.prune_seen();
        Ok(out)
    }

    /// The rows of ids `from..until` that exist, once their writers are done;
    /// `None` when a writer outlasted the lock wait timeout.
    async fn probe(&mut self, conn: &mut Conn<B>, from: i64, until: i64) -> Result<Option<Vec<Vec<Value>>>, Error> {
        // READ COMMITTED: a locking read of a missing id takes no gap lock,
        // so it never blocks writers appending events.
        B::execute(conn, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await.map_err(|e| self.fail(e))?;
        // Wait on a writer a second at a time: a timed-out probe is simply
        // retried, and a short wait lets the stream notice shutdown.
        B::execute(conn, "SET SESSION innodb_lock_wait_timeout = 1").await.map_err(|e| self.fail(e))?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(|e| self.fail(e))?;
        let (from, until) = (Value::I64(from), Value::I64(until));
        let binds = [(&from, LogicalType::I64), (&until, LogicalType::I64)];
        let rows = B::fetch_all(&mut tx, &self.sql.probe, &binds, &self.sql.types).await;
        let rows = match rows {
            Ok(rows) => Some(rows),
            // A writer slower than the lock wait timeout: look again later.
            Err(e) if B::classify(&e) == Failure::LockTimeout => None,
            Err(e) => return Err(self.fail(e)),
        };
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(rows)
    }

    /// Ids below this one were handed out at least the grace period ago.
    fn passed_before(&self) -> i64 {
        let now = Instant::now();
        self.seen
            .iter()
            .take_while(|(_, at)| now.duration_since(*at) >= self.options.gap_grace)
            .last()
            .map_or(i64::MIN, |(max, _)| *max)
    }

    /// Forgets seen ids at or below the cursor, except the last entry.
    fn prune_seen(&mut self) {
        let cursor = self.cursor.id();
        while self.seen.len() > 1 && self.seen.get(1).is_some_and(|(max, _)| *max <= cursor) {
            self.seen.pop_front();
        }
    }

    fn held_back(&mut self, out: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
        self.retry_soon = true;
        self.prune_seen();
        out
    }

    fn stall(&mut self) {
        self.retry_soon = true;
        self.stalled.get_or_insert_with(Instant::now);
    }

    fn envelope(&self, mut values: Vec<Value>) -> Result<Envelope<M>, Error> {
        let tx = match B::GAP_SAFETY {
            GapSafety::XidFence => match values.pop() {
                Some(Value::I64(tx)) => tx,
                _ => 0,
            },
            GapSafety::SingleWriter | GapSafety::LockProbe => 0,
        };
        let StoredEvent { position, record_id, event, from, to, version, metadata, created_at } =
            self.store.event(values)?;
        Ok(Envelope {
            position: Position::new(tx, position),
            record_id,
            event,
            from,
            to,
            version,
            created_at,
            metadata,
        })
    }

    fn fail(&self, error: sqlx::Error) -> Error {
        self.store.failure(error, None)
    }
}

/// The binds naming a position: `tx, id` on PostgreSQL, `id` elsewhere.
fn position_binds<'a, B: Backend>(tx: &'a Value, id: &'a Value) -> Vec<Bind<'a>> {
    match B::GAP_SAFETY {
        GapSafety::XidFence => vec![(tx, LogicalType::I64), (id, LogicalType::I64)],
        GapSafety::SingleWriter | GapSafety::LockProbe => vec![(id, LogicalType::I64)],
    }
}

fn row_id(row: &[Value]) -> i64 {
    match row.first() {
        Some(Value::I64(id)) => *id,
        _ => i64::MAX,
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
        other => Error::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// Why a waiting reader looks again.
struct Wake {
    commits: Option<watch::Receiver<u64>>,
    remote: Option<WakeUps>,
}

impl Wake {
    async fn new<M: Machine, B: Backend>(store: &Store<M, B>, options: &StreamOptions) -> Result<Self, Error> {
        let remote = if options.listen {
            B::listen(store.pool(), store.channel()).await.map_err(|e| store.failure(e, None))?
        } else {
            None
        };
        Ok(Self { commits: Some(store.commits()), remote })
    }

    /// Commits before this call need no wake-up: the read after it sees them.
    fn mark_seen(&mut self) {
        if let Some(commits) = &mut self.commits {
            commits.borrow_and_update();
        }
    }

    async fn wait(&mut self, pause: Duration) {
        let Self { commits, remote } = self;
        let local = async {
            match commits {
                Some(receiver) => {
                    // The store is gone: only polling is left.
                    if receiver.changed().await.is_err() {
                        *commits = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
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
            () = local => {}
            () = remote => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
